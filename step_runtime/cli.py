"""The `alertops` command.

Each subcommand lives in the module that owns it; this file only wires them up. A subcommand's
module exposes `add_arguments(parser)` and `main(args) -> int`; it keeps heavy imports (numpy,
kopf, confluent-kafka) inside `main`, so `alertops --help` stays fast.

Errors are one line on stderr. A subcommand reports what a user can fix with exit status 2; an
exception nobody expected ends here as one line with exit status 1, and only with
ALERTOPS_DEBUG=1 as a traceback.
"""
from __future__ import annotations

import argparse
import gc
import importlib
import importlib.util
import os
import sys
from typing import NoReturn, Sequence

from step_runtime import __version__

# name -> (module, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "build": ("step_runtime.trainingset.command", "build a training set from a TrainingSetBuild manifest"),
    "run": ("step_runtime.step.command", "run a PipelineStep manifest (Kafka or files in, sinks out)"),
    "fetch": ("step_runtime.storage.command", "fetch a PipelineStep's models and catalogs given by a uri (init container)"),
    "operator": ("pipeline_operator.command", "run the Kubernetes operator (kopf)"),
    "crds": ("pipeline_operator.crds_command", "print or write the CRDs generated from the spec models"),
}


EXIT_STATUS = """\
exit status:
  0  success (run: input exhausted, idle, or stopped by SIGTERM with nothing partial committed)
  1  the environment failed, or a bug: a service down, a full disk, a database refusing a
     batch, an interruption, CRDs out of date (crds --check); one line on stderr
     (ALERTOPS_DEBUG=1 adds the traceback of an unexpected error)
  2  a mistake to fix: arguments, the manifest (file, YAML, spec), a missing input, an output
     path that cannot be written or is shared, a Parquet field changing type; one line naming
     it, before anything is consumed whenever it can be known then
"""


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: `alertops run: argument --http-port: ... (see --help)`."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def debug_enabled() -> bool:
    """True when env ALERTOPS_DEBUG asks for tracebacks (set, and not 0/false/no)."""
    return os.environ.get("ALERTOPS_DEBUG", "").strip().lower() not in ("", "0", "false", "no")


def port_number(text: str) -> int:
    """argparse type of a TCP port to listen on: an integer 0-65535 (0: off)."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number 0-65535, got {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port number 0-65535, got {port}")
    return port


def _available(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def build_parser() -> argparse.ArgumentParser:
    """The argument parser, with one subparser per subcommand whose module is installed."""
    parser = _Parser(
        prog="alertops",
        description="Declarative pipelines for astronomical alert brokers.",
        epilog=EXIT_STATUS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"alertops {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in SUBCOMMANDS.items():
        if not _available(module):
            continue
        sp = sub.add_parser(name, help=help_text, description=help_text, epilog=EXIT_STATUS,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
        sp.set_defaults(_module=module)
        importlib.import_module(module).add_arguments(sp)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `alertops` console script."""
    # Before numpy loads OpenBLAS. alertops spreads its own work over the cores (decode workers,
    # threads reading tables and matching); OpenBLAS's threads would compete for them, and they
    # spin-wait after every call: 170 ms of CPU in a 0.7-second training-set build. A user's
    # setting wins.
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_module", None):
        parser.print_help()
        return 2
    try:
        return int(importlib.import_module(args._module).main(args) or 0)
    except KeyboardInterrupt:
        print(f"alertops {args.command}: interrupted", file=sys.stderr)
        return 1
    except Exception as exc:
        if debug_enabled():
            raise
        text = " ".join(str(exc).split()) or "(no message)"
        print(f"alertops {args.command}: failed: {type(exc).__name__}: {text} "
              "(set ALERTOPS_DEBUG=1 for a traceback)", file=sys.stderr)
        return 1


def run() -> NoReturn:
    """The `alertops` console script: `main()`, then exit with its status."""
    status = main()
    # The process ends here. Python's shutdown would first look for reference cycles among every
    # object still alive (modules, pydantic's and numpy's internals): 50 ms of a 1-second build,
    # to free memory the OS takes back anyway. Frozen objects are skipped. atexit handlers still
    # run, and files are closed by the `with` blocks that opened them, not by this collection.
    gc.freeze()
    sys.exit(status)


if __name__ == "__main__":
    run()
