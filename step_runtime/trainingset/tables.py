"""Reading a table (file or PostgreSQL query) into a pandas DataFrame, with clear errors.

Files: CSV, TSV, whitespace tables with `#` header lines, Parquet, FITS and VOTable; gzip, bz2
and xz compression are recognised by their magic bytes, so a gzip file named `.dat` reads fine.
Only the columns a build needs are kept (catalog files can carry huge light-curve cells).
"""
from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import re
from pathlib import Path

import pandas as pd

from step_runtime.spec.common import SecretKeyRef
from step_runtime.spec.trainingset import PostgresQuery, TableSpec
from step_runtime.trainingset.errors import BuildError, BuildFailure

_COMPRESSIONS = ((b"\x1f\x8b", "gzip", gzip.decompress),
                 (b"BZh", "bz2", bz2.decompress),
                 (b"\xfd7zXZ\x00", "xz", lzma.decompress))
_SUFFIX_FORMATS = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".parquet": "parquet", ".pq": "parquet",
                   ".fits": "fits", ".fit": "fits", ".fts": "fits", ".vot": "votable", ".votable": "votable",
                   ".xml": "votable"}
_COMPRESSED_SUFFIXES = (".gz", ".bz2", ".xz")


def resolve_path(path: str, base_dir: Path) -> Path:
    """A spec path as a filesystem path: file:// URIs unwrapped, relative paths joined to base_dir."""
    if path.startswith("file://"):
        path = path[len("file://"):]
    elif re.match(r"^[a-z][a-z0-9+.-]*://", path):
        raise BuildError(f"{path}: only local paths and file:// URIs are supported")
    p = Path(os.path.expanduser(path))
    return p if p.is_absolute() else base_dir / p


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
    from step_runtime.spec.pipelinestep import FetchSpec
    from step_runtime.storage.fetch import FetchError, FetchPolicy, ensure_local, verify_in_place

    if spec.uri is None and spec.sha256 is None:
        return resolve_path(spec.path or "", base_dir)
    try:
        path = (ensure_local(field, spec, base_dir, FetchPolicy.from_spec(FetchSpec())) if spec.uri is not None
                else resolve_path(spec.path or "", base_dir))
        verify_in_place(field, spec, path)
    except FetchError as exc:
        raise BuildError(str(exc)) from None
    return path


def read_table(spec: TableSpec, base_dir: Path, needed: dict[str, str],
               field: str = "spec.source") -> tuple[pd.DataFrame, str]:
    """Read the table `spec` describes, keeping the `needed` columns (column -> spec field, for errors).

    Returns the frame (rows in file order, index 0..n-1) and a description of its origin
    (the file path, or "query <dsn secret>") for messages.
    """
    if spec.query is not None:
        origin = f"PostgreSQL query (secret {spec.query.dsn.name}/{spec.query.dsn.key})"
        frame = _read_query(spec.query, origin)
    else:
        path = _local_file(spec, base_dir, field)
        origin = spec.uri or str(path)
        frame, columns = _read_file(path, spec.format, spec.column_names, set(needed))
    missing = [(col, field) for col, field in needed.items() if col not in frame.columns]
    if missing:
        col, field = missing[0]
        shown = ", ".join(repr(c) for c in list(columns if spec.query is None else frame.columns)[:40])
        raise BuildError(f"{origin}: no column {col!r} (from spec.{field}); columns are: {shown}")
    return frame[list(dict.fromkeys(needed))].reset_index(drop=True), origin


def load_bytes(path: Path) -> bytes:
    """File contents, decompressed when they start with gzip, bz2 or xz magic bytes."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise BuildError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise BuildError(f"{path}: is a directory, expected a table file") from None
    except PermissionError:
        raise BuildError(f"{path}: permission denied") from None
    for magic, name, decompress in _COMPRESSIONS:
        if raw.startswith(magic):
            try:
                return decompress(raw)
            except (OSError, EOFError, ValueError, lzma.LZMAError) as exc:
                raise BuildError(f"{path}: looks {name}-compressed but cannot be decompressed: {exc}") from None
    return raw


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
               ) -> tuple[pd.DataFrame, list[str]]:
    """The wanted columns that exist (only those are parsed where the format allows) and all column names."""
    data = load_bytes(path)
    if fmt == "auto":
        fmt = detect_format(path.name, data)
    try:
        if fmt == "parquet":
            import pyarrow.parquet as pq

            names = pq.read_schema(io.BytesIO(data)).names
            keep = [c for c in names if c in wanted]
            return pq.read_table(io.BytesIO(data), columns=keep).to_pandas(), names
        if fmt in ("fits", "votable"):
            frame = _read_astropy(data, fmt)
            return frame, list(frame.columns)
        return _read_text(data, fmt, column_names, path, wanted)
    except BuildError:
        raise
    except Exception as exc:  # every parser has its own exception types; name the file and format
        raise BuildError(f"{path}: cannot read as {fmt}: {exc}") from None


def _read_astropy(data: bytes, fmt: str) -> pd.DataFrame:
    from astropy.table import Table

    table = Table.read(io.BytesIO(data), format=fmt)
    # Multidimensional columns (spectra, light curves) cannot become pandas columns; skip them.
    flat = [name for name in table.colnames if len(table[name].shape) <= 1]
    return table[flat].to_pandas()


def _leading_comments(lines: list[str]) -> int:
    n = 0
    for line in lines:
        if line.strip() and not line.lstrip().startswith("#"):
            break
        n += 1
    return n


def _looks_numeric(token: str) -> bool:
    try:
        float(token)
        return True
    except ValueError:
        return False


def _read_text(data: bytes, fmt: str, column_names: list[str] | None, path: Path, wanted: set[str]
               ) -> tuple[pd.DataFrame, list[str]]:
    text_head = data[:1 << 20].decode("utf-8", "replace").splitlines()
    skip = _leading_comments(text_head)
    if skip >= len(text_head) and len(data) <= 1 << 20:
        raise BuildError(f"{path}: no data rows (only comments or blank lines)")
    sep = {"csv": ",", "tsv": "\t", "whitespace": r"\s+"}[fmt]
    if fmt != "whitespace":
        names = column_names
        header = None if column_names else 0
    else:
        first = text_head[skip].split()
        names = column_names or _whitespace_header(text_head[:skip], first)
        header = None
        if names is None:
            if not any(_looks_numeric(t) for t in first):
                header = 0  # a plain header line without '#'
            else:
                raise BuildError(
                    f"{path}: whitespace table with no header line naming its {len(first)} columns: "
                    f"set columnNames in the spec"
                )
    options = dict(sep=sep, skiprows=skip, header=header, names=names, skip_blank_lines=True)
    if names is not None and fmt == "whitespace" and len(names) != len(text_head[skip].split()):
        raise BuildError(f"{path}: {len(names)} column names for rows of {len(text_head[skip].split())} values "
                         f"(columnNames or the '#' header line)")
    probe = pd.read_csv(io.BytesIO(data), nrows=1, **options)
    if not isinstance(probe.index, pd.RangeIndex):
        # pandas would silently turn the extra leading values into an index.
        raise BuildError(f"{path}: rows have more values than there are column names; check columnNames")
    # Parse only the columns the build needs: catalog files can hold huge array cells.
    frame = pd.read_csv(io.BytesIO(data), usecols=lambda c: str(c) in wanted, low_memory=False, **options)
    return frame, [str(c) for c in probe.columns]


def _whitespace_header(comments: list[str], first_row: list[str]) -> list[str] | None:
    """The last `#` line whose words are as many as the first data row's: the column names."""
    for line in reversed(comments):
        words = line.strip().lstrip("#").split()
        if len(words) == len(first_row) and not all(_looks_numeric(w) for w in words):
            return words
    return None


def _read_query(query: PostgresQuery, origin: str) -> pd.DataFrame:
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
    return pd.DataFrame.from_records(rows, columns=columns)
