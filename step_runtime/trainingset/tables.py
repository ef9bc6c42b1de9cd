"""Reading a table (file or PostgreSQL query) into an Arrow table, with clear errors.

Files: CSV, TSV, whitespace tables with `#` header lines, Parquet, FITS and VOTable; gzip, bz2
and xz compression are recognised by their magic bytes, so a gzip file named `.dat` reads fine.
Only the columns a build needs are kept (catalog files can carry huge light-curve cells).
"""
from __future__ import annotations

import io
import os
from pathlib import Path

import pyarrow as pa

from step_runtime.spec.common import SecretKeyRef
from step_runtime.spec.trainingset import PostgresQuery, TableSpec
from step_runtime.trainingset.errors import BuildError, BuildFailure
from step_runtime.trainingset.file_bytes import load_bytes, read_bytes, resolve_path
from step_runtime.trainingset.text_tables import frame_to_arrow, read_text

_SUFFIX_FORMATS = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".parquet": "parquet", ".pq": "parquet",
                   ".fits": "fits", ".fit": "fits", ".fts": "fits", ".vot": "votable", ".votable": "votable",
                   ".xml": "votable"}
_COMPRESSED_SUFFIXES = (".gz", ".bz2", ".xz")


def secret_value(ref: SecretKeyRef) -> str:
    """The value of a referenced secret, from the env var the operator renders for it."""
    env = ref.env_var_name()
    value = os.environ.get(env)
    if not value:
        raise BuildError(
            f"secret {ref.name}/{ref.key} is not available: env var {env} is unset "
            f"(in a cluster the operator sets it from the Secret; locally, export it)"
        )
    return value


def _local_file(spec: TableSpec, base_dir: Path, field: str) -> Path:
    """The file of a table given by path or uri (fetched first, once), checked against its pin."""
    if spec.uri is None and spec.sha256 is None:
        return resolve_path(spec.path or "", base_dir)
    # Only a uri or a pin needs these: importing urllib (ssl, http) would cost every build 20 ms.
    from step_runtime.spec.files import FetchSpec
    from step_runtime.storage.fetch import FetchError, FetchPolicy, ensure_local, verify_in_place

    try:
        if spec.uri is not None:
            path = ensure_local(field, spec, base_dir, FetchPolicy.from_spec(FetchSpec()), verify=True)
        else:
            path = resolve_path(spec.path or "", base_dir)
            verify_in_place(field, spec, path)
    except FetchError as exc:
        raise BuildError(str(exc)) from None
    return path


def read_table(spec: TableSpec, base_dir: Path, needed: dict[str, str],
               field: str = "spec.source") -> tuple[pa.Table, str]:
    """Read the table `spec` describes, keeping the `needed` columns (column -> spec field, for errors).

    Returns an Arrow table (rows in file order, only the needed columns, dictionary columns
    decoded) and a description of its origin (the file path, or "query <dsn secret>") for messages.
    """
    if spec.query is not None:
        origin = f"PostgreSQL query (secret {spec.query.dsn.name}/{spec.query.dsn.key})"
        table = _read_query(spec.query, origin)
        columns = table.column_names
    else:
        path = _local_file(spec, base_dir, field)
        origin = spec.uri or str(path)
        table, columns = _read_file(path, spec.format, spec.column_names, set(needed))
    missing = [(col, spec_field) for col, spec_field in needed.items() if col not in table.column_names]
    if missing:
        col, spec_field = missing[0]
        shown = ", ".join(repr(c) for c in list(columns)[:40])
        raise BuildError(f"{origin}: no column {col!r} (from spec.{spec_field}); columns are: {shown}")
    table = table.select(list(dict.fromkeys(needed)))
    for i, column in enumerate(table.columns):
        if pa.types.is_dictionary(column.type):
            table = table.set_column(i, table.field(i).name, column.cast(column.type.value_type))
    return table, origin


def detect_format(name: str, data: bytes) -> str:
    """Format from the content's magic bytes, then the name's suffix, then a look at the text."""
    head = data[:512].lstrip()
    if data[:4] == b"PAR1":
        return "parquet"
    if data[:9] == b"SIMPLE  =":
        return "fits"
    if head.startswith(b"<?xml") or head[:200].upper().find(b"<VOTABLE") >= 0:
        return "votable"
    lower = name.lower()
    for suffix in _COMPRESSED_SUFFIXES:
        if lower.endswith(suffix):
            lower = lower[: -len(suffix)]
    fmt = _SUFFIX_FORMATS.get(Path(lower).suffix)
    if fmt in ("csv", "tsv"):
        return fmt
    for line in data[:65536].decode("utf-8", "replace").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            if "\t" in line:
                return "tsv"
            return "csv" if "," in line else "whitespace"
    return "csv"


def _read_file(path: Path, fmt: str, column_names: list[str] | None, wanted: set[str]
               ) -> tuple[pa.Table, list[str]]:
    """The wanted columns that exist (only those are parsed where the format allows) and all column names."""
    plain_parquet = read_bytes(path, 4) == b"PAR1"
    # An uncompressed Parquet file is read in place: only the wanted columns' pages.
    data = path if plain_parquet else load_bytes(path)
    if fmt == "auto":
        fmt = "parquet" if isinstance(data, Path) else detect_format(path.name, data)
    try:
        if fmt == "parquet":
            import pyarrow.parquet as pq

            # ParquetFile, not read_table: the same read without importing pyarrow.dataset.
            parquet = pq.ParquetFile(data if isinstance(data, Path) else io.BytesIO(data))
            names = parquet.schema_arrow.names
            return parquet.read(columns=[c for c in names if c in wanted]), names
        if isinstance(data, Path):
            data = load_bytes(path)
        if fmt in ("fits", "votable"):
            table = _read_astropy(data, fmt)
            return table, table.column_names
        return read_text(data, fmt, column_names, path, wanted)
    except BuildError:
        raise
    except Exception as exc:  # noqa: BLE001 - every parser has its own exception types; name the file and format
        raise BuildError(f"{path}: cannot read as {fmt}: {exc}") from None


def _read_astropy(data: bytes, fmt: str) -> pa.Table:
    from astropy.table import Table

    table = Table.read(io.BytesIO(data), format=fmt)
    # Multidimensional columns (spectra, light curves) cannot become table columns; skip them.
    flat = [name for name in table.colnames if len(table[name].shape) <= 1]
    return frame_to_arrow(table[flat].to_pandas())


def _read_query(query: PostgresQuery, origin: str) -> pa.Table:
    import psycopg2

    dsn = secret_value(query.dsn)
    timeout_ms = int(query.timeout_seconds * 1000)
    try:
        conn = psycopg2.connect(dsn, connect_timeout=max(1, min(30, int(query.timeout_seconds))),
                                options=f"-c statement_timeout={timeout_ms}")
    except psycopg2.OperationalError as exc:
        raise BuildFailure(f"{origin}: cannot connect: {str(exc).strip()}") from None
    try:
        conn.set_session(readonly=True)
        with conn.cursor() as cur:
            try:
                cur.execute(query.sql)
            except psycopg2.Error as exc:
                raise BuildError(f"{origin}: query failed: {str(exc).strip()}") from None
            if cur.description is None:
                raise BuildError(f"{origin}: the query returns no rows (is it a SELECT?)")
            columns = [d.name for d in cur.description]
            rows = cur.fetchall()
    finally:
        conn.close()
    return pa.table({name: _column_of(rows, i) for i, name in enumerate(columns)})


def _column_of(rows: list[tuple], i: int) -> pa.Array:
    """Column i of query rows as an Arrow array (numeric(...) as float64, odd values as text)."""
    values = [row[i] for row in rows]
    try:
        array = pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pa.array([None if v is None else str(v) for v in values], pa.string())
    if pa.types.is_decimal(array.type):
        array = array.cast(pa.float64())
    return array
