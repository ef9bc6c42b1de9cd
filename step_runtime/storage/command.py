"""`alertops fetch FILE`: put a PipelineStep's models and catalogs in place before it starts.

In a pod it is the init container `fetch`: it downloads every file the manifest names by an
`s3://` or `http(s)://` uri into $ALERTOPS_FETCH_DIR (an emptyDir), checks the pvc:// files and
the pins, and only then lets the step container start. Its one-line error is also written to
$ALERTOPS_TERMINATION_MESSAGE_PATH, where the operator reads it into the step's status.
Locally it pre-fetches what `alertops run` would fetch at start.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `alertops fetch`."""
    parser.add_argument("manifest", metavar="FILE", help="PipelineStep manifest (YAML)")
    parser.add_argument("--log-level", default=os.environ.get("ALERTOPS_LOG_LEVEL", "INFO"),
                        choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="log level (default INFO)")


def _fail(message: str, status: int) -> int:
    from step_runtime.termination import write_termination_message

    print(f"alertops fetch: {message}", file=sys.stderr)
    write_termination_message(message)
    return status


def main(args: argparse.Namespace) -> int:
    """0 when every file is in place and matches its pin; 2 for what a person must fix (a wrong
    sha256, a missing object, refused credentials, a file over the size limit, the manifest);
    1 when the store stayed unreachable through every attempt."""
    from step_runtime.spec.common import SpecError, parse_spec, read_manifest
    from step_runtime.spec.pipelinestep import KIND, PipelineStepSpec
    from step_runtime.step.observe import setup_logging
    from step_runtime.storage.fetch import FetchError, FetchPolicy, ensure_local

    setup_logging(args.log_level)
    manifest = Path(args.manifest)
    try:
        doc = read_manifest(manifest, KIND)
        spec = parse_spec(PipelineStepSpec, doc["spec"], str(manifest))
    except SpecError as exc:
        return _fail(str(exc), 2)
    policy = FetchPolicy.from_spec(spec.fetch)
    base_dir = manifest.resolve().parent
    try:
        for field, settings in spec.file_sources():
            ensure_local(field, settings, base_dir, policy, verify=True)
    except FetchError as exc:
        return _fail(str(exc), 1 if exc.kind == "unavailable" else 2)
    return 0
