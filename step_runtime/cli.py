"""The `alertops` command.

Each subcommand lives in the module that owns it; this file only wires them up. A subcommand's
module exposes `add_arguments(parser)` and `main(args) -> int`; it keeps heavy imports (numpy,
kopf, confluent-kafka) inside `main`, so `alertops --help` stays fast.
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
from typing import Sequence

from step_runtime import __version__

# name -> (module, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "build": ("step_runtime.trainingset.command", "build a training set from a TrainingSetBuild manifest"),
    "run": ("step_runtime.step.command", "run a PipelineStep manifest (Kafka or files in, sinks out)"),
    "operator": ("pipeline_operator.command", "run the Kubernetes operator (kopf)"),
    "crds": ("pipeline_operator.crds_command", "print or write the CRDs generated from the spec models"),
}


def _available(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def build_parser() -> argparse.ArgumentParser:
    """The argument parser, with one subparser per subcommand whose module is installed."""
    parser = argparse.ArgumentParser(
        prog="alertops",
        description="Declarative pipelines for astronomical alert brokers.",
    )
    parser.add_argument("--version", action="version", version=f"alertops {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in SUBCOMMANDS.items():
        if not _available(module):
            continue
        sp = sub.add_parser(name, help=help_text, description=help_text)
        sp.set_defaults(_module=module)
        importlib.import_module(module).add_arguments(sp)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `alertops` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_module", None):
        parser.print_help()
        return 2
    return int(importlib.import_module(args._module).main(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
