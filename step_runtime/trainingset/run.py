"""Running a build in one of three modes: everything locally, one partition, or the merge.

- all: read inputs once, match every partition (a process pool when there are several), merge,
  write. This is `alertops build FILE`.
- partition k: match sky partition k and write it under `<output>.parts/` (an Indexed Job pod).
- merge: read every partition's result, combine, write the final output (the Job after them).
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from step_runtime.spec.trainingset import TrainingSetBuildSpec
from step_runtime.termination import write_termination_message
from step_runtime.trainingset.build import (
    Inputs,
    Merged,
    load_inputs,
    match_partition,
    merge_parts,
    part_file_name,
    release_unused_memory,
    spec_digest,
)
from step_runtime.trainingset.errors import BuildError
from step_runtime.trainingset.file_bytes import resolve_path
from step_runtime.trainingset.progress import Progress
from step_runtime.trainingset.report import compact_summary, summary_document, write_report_png
from step_runtime.trainingset.tables import secret_value
from step_runtime.trainingset.writers import output_format, upsert_postgres, write_frame, write_json


@dataclass(frozen=True)
class BuildPaths:
    """Where a build reads and writes."""

    base_dir: Path      # relative input paths are resolved here (the manifest's directory)
    output: Path        # the training set file
    parts_dir: Path     # partition results
    summary: Path
    report: Path

    @staticmethod
    def plan(spec: TrainingSetBuildSpec, manifest: Path, output_dir: Path | None) -> "BuildPaths":
        """Resolve the spec's paths: inputs against the manifest, outputs against --output-dir if given."""
        base = manifest.resolve().parent
        output = resolve_path(spec.output.path, output_dir.resolve() if output_dir else base)
        return BuildPaths(base, output, output.with_name(output.name + ".parts"),
                          output.with_name(output.name + ".summary.json"),
                          output.with_name(output.name + ".report.png"))


# The inputs, for forked pool workers (fork shares them without pickling).
_POOL_INPUTS: Inputs | None = None


def _match_in_worker(k: int, n: int) -> pa.Table:
    assert _POOL_INPUTS is not None
    return match_partition(_POOL_INPUTS, k, n)


def _match_all(inputs: Inputs, n: int, workers: int, progress: Progress) -> list[pa.Table]:
    global _POOL_INPUTS
    if n == 1 or workers <= 1:
        parts = []
        for k in range(n):
            parts.append(match_partition(inputs, k, n))
            progress.step(f"partition {k + 1}/{n} done: {len(parts[-1])} sources")
        return parts
    _POOL_INPUTS = inputs
    try:
        import multiprocessing  # only here: a build of one partition need not pay for importing it
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(max_workers=min(workers, n), mp_context=multiprocessing.get_context("fork")) as pool:
            futures = [pool.submit(_match_in_worker, k, n) for k in range(n)]
            parts = []
            for k, future in enumerate(futures):
                parts.append(future.result())
                progress.step(f"partition {k + 1}/{n} done: {len(parts[-1])} sources")
            return parts
    finally:
        _POOL_INPUTS = None


def _input_stats(inputs: Inputs) -> dict:
    return {
        "source": {"origin": inputs.source.origin, "rows_read": inputs.source.rows_read,
                   "bad_rows": inputs.source.bad_rows},
        "catalogs": {c.spec.name: {"origin": c.origin, **c.stats} for c in inputs.catalogs},
    }


def _finish(spec: TrainingSetBuildSpec, name: str, paths: BuildPaths, merged: Merged, input_stats: dict,
            started: float, progress: Progress) -> dict:
    """Write the training set, the PostgreSQL table, the summary and the report."""
    fmt = output_format(paths.output, spec.output.format)
    write_frame(merged.frame, paths.output, fmt)
    progress.step(f"wrote {len(merged.frame)} rows to {paths.output}")
    output: dict[str, object] = {"path": str(paths.output), "format": fmt}
    if spec.output.postgres is not None:
        pg = spec.output.postgres
        upsert_postgres(merged.frame, pg, secret_value(pg.dsn))
        output["postgres"] = f"{pg.schema_name}.{pg.table}"
        progress.step(f"upserted {len(merged.frame)} rows into {output['postgres']}")
    catalogs = {}
    for cat_name, load_stats in input_stats["catalogs"].items():
        catalogs[cat_name] = {**load_stats, **merged.stats["catalogs"][cat_name]}
    summary = {
        "name": name,
        "phase": "Succeeded",
        "rows_in": input_stats["source"]["rows_read"],
        "rows_bad_skipped": input_stats["source"]["bad_rows"],
        **{k: v for k, v in merged.stats.items() if k != "catalogs"},
        "source": input_stats["source"]["origin"],
        "catalogs": catalogs,
        "partitions": spec.parallelism,
        "output": output,
        "summary_path": str(paths.summary),
        "report_path": str(paths.report) if spec.output.report else None,
    }
    if spec.output.report:
        write_report_png(summary, merged.separations, paths.report)
        progress.step(f"report {paths.report}")
    summary["duration_seconds"] = round(time.monotonic() - started, 3)
    write_json(summary_document(summary), paths.summary)
    progress.step(f"summary {paths.summary}")
    write_termination_message(compact_summary(summary))
    return summary


def check_secrets(spec: TrainingSetBuildSpec, inputs: bool = True, output: bool = True) -> None:
    """Fail before any work when a secret this mode needs is not in the environment."""
    refs = [t.query.dsn for t in [spec.source, *spec.catalogs] if t.query is not None] if inputs else []
    if output and spec.output.postgres is not None:
        refs.append(spec.output.postgres.dsn)
    for ref in refs:
        secret_value(ref)


def build_all(spec: TrainingSetBuildSpec, name: str, paths: BuildPaths, workers: int,
              tty: bool | None = None) -> dict:
    """The whole build in this process (and a pool of forked workers for partitions)."""
    started = time.monotonic()
    check_secrets(spec)
    n = spec.parallelism
    total = 1 + len(spec.catalogs) + n + 3 + (spec.output.postgres is not None) + spec.output.report
    with Progress(total, tty) as progress:
        inputs = load_inputs(spec, paths.base_dir, progress.step, progress.warn)
        parts = _match_all(inputs, n, workers, progress)
        input_stats = _input_stats(inputs)
        del inputs  # the partition results hold what the merge needs
        release_unused_memory()
        merged = merge_parts(parts, spec)
        progress.step(f"merged: {len(merged.frame)} rows, {merged.stats['conflicts']} conflicts")
        return _finish(spec, name, paths, merged, input_stats, started, progress)


def build_partition(spec: TrainingSetBuildSpec, name: str, paths: BuildPaths, k: int,
                    tty: bool | None = None) -> dict:
    """Match partition k and write its result (and a small JSON of counts) under the parts dir."""
    n = spec.parallelism
    if not 0 <= k < n:
        raise BuildError(f"--partition {k}: expected 0 <= K < spec.parallelism ({n})")
    check_secrets(spec, output=False)
    with Progress(2 + len(spec.catalogs), tty) as progress:
        inputs = load_inputs(spec, paths.base_dir, progress.step, progress.warn)
        part = match_partition(inputs, k, n)
        target = paths.parts_dir / part_file_name(k, n)
        write_frame(part, target, "parquet")
        meta = {"partition": k, "partitions": n, "spec_digest": spec_digest(spec), "rows": len(part),
                **_input_stats(inputs)}
        write_json(meta, target.with_suffix(".json"))
        progress.step(f"partition {k + 1}/{n}: {len(part)} sources, written to {target}")
    summary = {"name": name, "phase": "Succeeded", "partition": k, "partitions": n, "rows": len(part),
               "output": str(target)}
    write_termination_message(compact_summary(summary))
    return summary


def _read_part(path: Path) -> pa.Table:
    import pyarrow.parquet as pq

    return pq.ParquetFile(path).read()


def build_merge(spec: TrainingSetBuildSpec, name: str, paths: BuildPaths, tty: bool | None = None) -> dict:
    """Merge every partition's result into the final output."""
    started = time.monotonic()
    check_secrets(spec, inputs=False)
    n = spec.parallelism
    digest = spec_digest(spec)
    parts, metas = [], []
    for k in range(n):
        target = paths.parts_dir / part_file_name(k, n)
        meta_path = target.with_suffix(".json")
        if not target.exists() or not meta_path.exists():
            raise BuildError(f"{target}: partition {k} of {n} is missing; run `alertops build FILE --partition {k}` "
                             f"first (with the same --output-dir)")
        meta = json.loads(meta_path.read_text())
        if meta.get("spec_digest") != digest:
            raise BuildError(f"{target}: partition {k} was computed from a different manifest; rerun the partitions")
        metas.append(meta)
        parts.append(_read_part(target))
    total = 3 + (spec.output.postgres is not None) + 1 + spec.output.report
    with Progress(total, tty) as progress:
        progress.step(f"read {n} partition(s) from {paths.parts_dir}")
        merged = merge_parts(parts, spec)
        progress.step(f"merged: {len(merged.frame)} rows, {merged.stats['conflicts']} conflicts")
        input_stats = {"source": metas[0]["source"], "catalogs": metas[0]["catalogs"]}
        return _finish(spec, name, paths, merged, input_stats, started, progress)
