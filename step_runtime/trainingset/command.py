"""`alertops build FILE`: build a training set from a TrainingSetBuild manifest.

Exit status: 0 on success; 2 on input the user must fix (one clear line on stderr, no
traceback); 1 when the environment fails (a database down, a disk full).
"""
from __future__ import annotations

import argparse
import os
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `alertops build`."""
    parser.add_argument("file", metavar="FILE", help="TrainingSetBuild manifest (YAML)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--partition", type=int, metavar="K",
                      help="compute only sky partition K (0-based) of spec.parallelism, into <output>.parts/")
    mode.add_argument("--partition-from-env", action="store_true",
                      help="like --partition, with K from env JOB_COMPLETION_INDEX (an Indexed Job)")
    mode.add_argument("--merge", action="store_true",
                      help="merge the partitions in <output>.parts/ into the final output")
    parser.add_argument("--output-dir", metavar="DIR",
                        help="base for relative output paths (default: the manifest's directory)")
    parser.add_argument("--workers", type=int, metavar="N",
                        help="processes for partitions in a local build (default: min(parallelism, CPUs))")


def _partition_from_env() -> int:
    from step_runtime.trainingset.errors import BuildError

    value = os.environ.get("JOB_COMPLETION_INDEX")
    if value is None or not value.strip().isdigit():
        raise BuildError(f"--partition-from-env: env JOB_COMPLETION_INDEX must be a non-negative integer, "
                         f"got {value!r}")
    return int(value)


def _print_summary(summary: dict) -> None:
    lines = [f"training set {summary.get('name', '')}: {summary['rows_in']} sources in "
             f"({summary.get('rows_bad_skipped', 0)} bad rows skipped), {summary['rows_out']} rows out, "
             f"{summary['conflicts']} conflicts (policy {summary['policy']}, {summary['matching']})"]
    for name, cat in summary["catalogs"].items():
        lines.append(f"  {name:<16} {cat['rows_used']:>8} rows  {cat['matches']:>7} matches  "
                     f"{cat.get('matched_unlabeled', 0):>5} unlabeled  "
                     f"{cat['ambiguous']:>5} ambiguous  {cat.get('conflicts', 0):>5} conflicts  "
                     f"radius {cat['radius_arcsec']:g}\"")
    classes = ", ".join(f"{k}: {v}" for k, v in list(summary["classes"].items())[:15])
    lines.append(f"  classes: {classes or '(none)'}")
    out = summary["output"]
    lines.append(f"  output: {out['path']} ({out['format']})" + (f" and PostgreSQL {out['postgres']}"
                                                                  if out.get("postgres") else ""))
    report = f"  report: {summary['report_path']}" if summary.get("report_path") else ""
    lines.append(f"  summary: {summary['summary_path']}{report}")
    lines.append(f"  took {summary['duration_seconds']:.2f}s")
    print("\n".join(lines))


def main(args: argparse.Namespace) -> int:
    """Run the build the arguments ask for; return the exit status."""
    from step_runtime.trainingset.file_bytes import reading_ahead

    # First: decompressing the inputs overlaps the imports of `_build`.
    with reading_ahead(None if args.merge else args.file):
        return _build(args)


def _build(args: argparse.Namespace) -> int:
    from pathlib import Path

    from step_runtime.cli import debug_enabled
    from step_runtime.spec.common import SpecError, parse_spec, read_manifest
    from step_runtime.spec.trainingset import KIND, TrainingSetBuildSpec
    from step_runtime.termination import write_termination_message
    from step_runtime.trainingset.errors import BuildError, BuildFailure
    from step_runtime.trainingset.lazy_pandas import defer_pandas_for_pyarrow
    from step_runtime.trainingset.report import failure_message
    from step_runtime.trainingset.run import BuildPaths, build_all, build_merge, build_partition
    from step_runtime.trainingset.writers import check_output_paths

    defer_pandas_for_pyarrow()

    def fail(message: str, status: int) -> int:
        print(f"alertops build: {message}", file=sys.stderr)
        write_termination_message(failure_message(message))
        return status

    try:
        manifest = read_manifest(args.file, KIND)
        spec = parse_spec(TrainingSetBuildSpec, manifest["spec"], args.file)
        name = str((manifest.get("metadata") or {}).get("name", Path(args.file).stem))
        paths = BuildPaths.plan(spec, Path(args.file), Path(args.output_dir) if args.output_dir else None)
        partition = args.partition is not None or args.partition_from_env
        check_output_paths(spec, paths, "partition" if partition else "merge" if args.merge else "all")
        if args.workers is not None and args.workers < 1:
            raise BuildError(f"--workers must be >= 1, got {args.workers}")
        if partition:
            k = args.partition if args.partition is not None else _partition_from_env()
            summary = build_partition(spec, name, paths, k)
            print(f"partition {k} of {spec.parallelism}: {summary['rows']} sources -> {summary['output']}")
            return 0
        if args.merge:
            summary = build_merge(spec, name, paths)
        else:
            workers = args.workers or min(spec.parallelism, os.cpu_count() or 1)
            summary = build_all(spec, name, paths, workers)
        _print_summary(summary)
        return 0
    except (SpecError, BuildError) as exc:
        return fail(str(exc), 2)
    except BuildFailure as exc:
        return fail(str(exc), 1)
    except KeyboardInterrupt:
        return fail("interrupted", 1)
    except Exception as exc:  # a bug or an environment failure: one line, and the type for a report
        if debug_enabled():
            raise
        return fail(f"failed: {type(exc).__name__}: {exc} (set ALERTOPS_DEBUG=1 for a traceback)", 1)
