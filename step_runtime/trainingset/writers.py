"""Writing results: files atomically (temp name + rename), PostgreSQL by upsert.

A failed build never leaves a partial file at the final path: everything is written to a
temporary name in the same directory, flushed, then renamed over the target in one step.
"""
from __future__ import annotations

import io
import json
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import pyarrow as pa

from step_runtime.file_outputs import NamedPath, StagedFile, absolute, describe_os_error, path_problems
from step_runtime.spec.trainingset import PostgresOutput, TrainingSetBuildSpec
from step_runtime.trainingset.errors import BuildError, BuildFailure


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path next to `path`; on success rename it to `path`, else delete it.

    An OSError while writing (a full disk) becomes a BuildFailure naming the file (exit 1).
    """
    try:
        staged = StagedFile(path)
    except OSError as exc:
        raise BuildError(f"{path.parent}: cannot create output directory: {describe_os_error(exc)}") from None
    try:
        yield staged.tmp
        staged.commit()
    except OSError as exc:
        raise BuildFailure(f"{path}: cannot write: {describe_os_error(exc)}") from None
    finally:
        staged.discard()


def check_output_paths(spec: TrainingSetBuildSpec, paths: Any, mode: str) -> None:
    """Before any work: refuse outputs that cannot be written, share a path or overlap an input.

    `paths` is the build's BuildPaths; `mode` is "all", "partition" or "merge" (whose inputs
    include the partitions). Outputs must be regular files (a device would get a temporary file
    renamed over it). The problems, one per line, name the field each path comes from.
    """
    from step_runtime.trainingset.file_bytes import resolve_path

    parts = "spec.output.path (partitions, <path>.parts/)"
    if mode == "partition":
        outputs = [NamedPath(parts, paths.parts_dir)]
    else:
        outputs = [NamedPath("spec.output.path", paths.output),
                   NamedPath("spec.output.path (summary, <path>.summary.json)", paths.summary),
                   NamedPath("spec.output.path (report, <path>.report.png)", paths.report)]
    inputs = [NamedPath(field, resolve_path(table.path, paths.base_dir))
              for field, table in [("spec.source.path", spec.source),
                                   *((f"spec.catalogs[{i}].path", c) for i, c in enumerate(spec.catalogs))]
              if table.path is not None]
    if mode == "merge":
        inputs.append(NamedPath(parts, paths.parts_dir))
    problems = path_problems([NamedPath(p.field, absolute(p.path)) for p in outputs],
                             [NamedPath(p.field, absolute(p.path)) for p in inputs],
                             folders=frozenset([parts]), special_ok=False)
    if problems:
        raise BuildError("\n".join(problems))


def output_format(path: Path, fmt: str) -> str:
    """parquet or csv: as given, or csv for a .csv name and parquet otherwise."""
    if fmt != "auto":
        return fmt
    return "csv" if path.name.lower().endswith(".csv") else "parquet"


def write_frame(frame: pa.Table, path: Path, fmt: str) -> None:
    """Write `frame` as Parquet or CSV at `path`, atomically."""
    with atomic_path(path) as tmp:
        if fmt == "csv":
            import pyarrow.csv as pcsv

            pcsv.write_csv(frame, tmp)
        else:
            import pyarrow.parquet as pq

            # Dictionary pages only where values repeat (labels, catalog names): on ids and
            # positions they cost twice the write time and save nothing.
            repeated = [name for name in frame.column_names
                        if name in ("label", "label_catalog", "candidates") or name.endswith("_label")]
            pq.write_table(_one_string_type(frame), tmp, use_dictionary=repeated)


def _one_string_type(table: pa.Table) -> pa.Table:
    """`table` with every text column `string`: a partition read back from Parquet may hold
    large_string, and a partitioned build must write the same schema as a build in one process."""
    fields = [f.with_type(pa.string()) if pa.types.is_large_string(f.type) else f for f in table.schema]
    return table.cast(pa.schema(fields, metadata=table.schema.metadata))


def write_json(data: object, path: Path) -> None:
    """Write JSON (indented, for people) at `path`, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")


def _pg_type(kind: pa.DataType) -> str:
    if pa.types.is_boolean(kind):
        return "boolean"
    if pa.types.is_integer(kind):
        return "bigint"
    if pa.types.is_floating(kind):
        return "double precision"
    return "text"


def _csv_for_copy(frame: pa.Table) -> io.BytesIO:
    """The table as CSV for COPY: missing values as unquoted empty fields (NULL), floats round-trip."""
    import pyarrow.csv as pcsv

    buffer = io.BytesIO()
    pcsv.write_csv(frame, buffer, pcsv.WriteOptions(include_header=False, quoting_style="needed"))
    buffer.seek(0)
    return buffer


def upsert_postgres(frame: pa.Table, target: PostgresOutput, dsn: str, key: str = "id") -> int:
    """Create the table if missing and upsert `frame` on `key`, in one transaction.

    Identifiers are validated by the spec and quoted with psycopg2.sql, never formatted in.
    Returns the number of rows written.
    """
    import psycopg2
    from psycopg2 import sql

    table = sql.Identifier(target.schema_name, target.table)
    where = f"PostgreSQL table {target.schema_name}.{target.table}"
    try:
        conn = psycopg2.connect(dsn, connect_timeout=max(1, min(30, int(target.timeout_seconds))),
                                options=f"-c statement_timeout={int(target.timeout_seconds * 1000)}")
    except psycopg2.OperationalError as exc:
        raise BuildFailure(f"{where}: cannot connect: {str(exc).strip()}") from None
    try:
        with conn, conn.cursor() as cur:
            cur.execute("SELECT column_name FROM information_schema.columns "
                        "WHERE table_schema = %s AND table_name = %s", (target.schema_name, target.table))
            existing = {r[0] for r in cur.fetchall()}
            if not existing:
                cur.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(target.schema_name)))
                defs = [sql.SQL("{} {}").format(sql.Identifier(f.name), sql.SQL(_pg_type(f.type)))
                        for f in frame.schema]
                defs.append(sql.SQL("PRIMARY KEY ({})").format(sql.Identifier(key)))
                cur.execute(sql.SQL("CREATE TABLE IF NOT EXISTS {} ({})").format(table, sql.SQL(", ").join(defs)))
            else:
                missing = [c for c in frame.column_names if c not in existing]
                if missing:
                    raise BuildError(f"{where}: exists without column(s) {missing}; drop the table or "
                                     f"write to a new one (spec.output.postgres.table)")
            # COPY into a temporary table, then one INSERT ... ON CONFLICT: fast, and no per-row Python.
            cur.execute(sql.SQL("CREATE TEMPORARY TABLE alertops_upsert (LIKE {} INCLUDING DEFAULTS) "
                                "ON COMMIT DROP").format(table))
            cols = sql.SQL(", ").join(sql.Identifier(c) for c in frame.column_names)
            cur.copy_expert(sql.SQL("COPY alertops_upsert ({}) FROM STDIN WITH (FORMAT csv)").format(cols)
                            .as_string(cur), _csv_for_copy(frame))
            updates = sql.SQL(", ").join(
                sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(c)) for c in frame.column_names if c != key)
            cur.execute(sql.SQL("INSERT INTO {} ({}) SELECT {} FROM alertops_upsert ON CONFLICT ({}) "
                                "DO UPDATE SET {}").format(table, cols, cols, sql.Identifier(key), updates))
    except psycopg2.Error as exc:
        raise BuildFailure(f"{where}: write failed: {str(exc).strip()}") from None
    finally:
        conn.close()
    return frame.num_rows
