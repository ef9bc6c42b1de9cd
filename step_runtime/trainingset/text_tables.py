"""Text tables (CSV, TSV, whitespace with `#` headers) into Arrow tables, only the wanted columns.

The fast path is pyarrow's CSV reader (multithreaded C++, no pandas import): a whitespace table is
first turned into single-space separated text with a few vectorised passes over its bytes. Files
it does not take as they are (a row with more or fewer fields than the header, a whitespace-only
line, quotes in a whitespace table, a header with blank or repeated names) are read by pandas as
before, and rows longer than the header are refused there, naming the row.
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from step_runtime.trainingset.errors import BuildError


@dataclass(frozen=True)
class _Layout:
    """Where a text table's rows start and what its columns are called."""

    skip: int                 # leading comment/blank lines
    start: int                # byte offset of the first line after them
    names: list[str] | None   # column names, or None when the header line names them
    has_header: bool          # the first line after the comments is a header line


class _NotForArrow(Exception):
    """The fast reader cannot take this file as it is; pandas reads it."""


def read_text(data: bytes, fmt: str, column_names: list[str] | None, path: Path, wanted: set[str]
              ) -> tuple[pa.Table, list[str]]:
    """The wanted columns that exist, as an Arrow table in file order, and every column name."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]  # a UTF-8 byte-order mark is not part of the first name
    layout = _layout(data, fmt, column_names, path)
    try:
        return _read_arrow(data, fmt, layout, wanted)
    except (_NotForArrow, pa.ArrowInvalid):
        return _read_pandas(data, fmt, layout, path, wanted)


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


def _whitespace_header(comments: list[str], first_row: list[str]) -> list[str] | None:
    """The last `#` line whose words are as many as the first data row's: the column names."""
    for line in reversed(comments):
        words = line.strip().lstrip("#").split()
        if len(words) == len(first_row) and not all(_looks_numeric(w) for w in words):
            return words
    return None


def _layout(data: bytes, fmt: str, column_names: list[str] | None, path: Path) -> _Layout:
    head = data[:1 << 20].decode("utf-8", "replace").split("\n")
    skip = _leading_comments(head)
    if skip >= len(head) and len(data) <= 1 << 20:
        raise BuildError(f"{path}: no data rows (only comments or blank lines)")
    start = 0
    for _ in range(skip):
        start = data.index(b"\n", start) + 1
    if fmt != "whitespace":
        return _Layout(skip, start, column_names, column_names is None)
    first = head[skip].split()
    names = column_names or _whitespace_header(head[:skip], first)
    has_header = False
    if names is None:
        if any(_looks_numeric(t) for t in first):
            raise BuildError(f"{path}: whitespace table with no header line naming its {len(first)} columns: "
                             f"set columnNames in the spec")
        has_header = True  # a plain header line without '#'
    elif len(names) != len(first):
        raise BuildError(f"{path}: {len(names)} column names for rows of {len(first)} values "
                         f"(columnNames or the '#' header line)")
    return _Layout(skip, start, names, has_header)


# --- the fast path: pyarrow ---------------------------------------------------------------------

def _read_arrow(data: bytes, fmt: str, layout: _Layout, wanted: set[str]) -> tuple[pa.Table, list[str]]:
    import pyarrow.csv as pcsv

    start = layout.start  # the rows are read in place: no copy of a big text
    quoted = data.find(b'"', start) >= 0
    names = layout.names
    if layout.has_header:
        end = data.find(b"\n", start)
        line = data[start:end if end >= 0 else len(data)].decode("utf-8").rstrip("\r")
        names = line.split() if fmt == "whitespace" else next(csv.reader([line], delimiter="\t" if fmt == "tsv" else ","))
        start = len(data) if end < 0 else end + 1
    assert names is not None
    if any(not n for n in names) or len(set(names)) != len(names):
        raise _NotForArrow("blank or repeated column names: pandas names them")
    if fmt == "whitespace":
        if quoted:
            raise _NotForArrow("quotes in a whitespace table")
        data, start = collapse_whitespace(data, start), 0
    body = pa.py_buffer(data).slice(start)
    keep = [n for n in dict.fromkeys(names) if n in wanted]
    parse = pcsv.ParseOptions(delimiter={"csv": ",", "tsv": "\t", "whitespace": " "}[fmt],
                              quote_char='"' if quoted else False, newlines_in_values=quoted)
    read = pcsv.ReadOptions(column_names=names)
    convert = pcsv.ConvertOptions(include_columns=keep, strings_can_be_null=True, quoted_strings_can_be_null=True)
    table = pcsv.read_csv(pa.BufferReader(body), read_options=read, parse_options=parse, convert_options=convert)
    # pandas keeps dates and times as the text they are written as; so do we (a second read of
    # those columns as strings, only when there are any).
    temporal = [f.name for f in table.schema if pa.types.is_temporal(f.type)]
    if temporal:
        convert = pcsv.ConvertOptions(include_columns=keep, strings_can_be_null=True, quoted_strings_can_be_null=True,
                                      column_types={n: pa.string() for n in temporal})
        table = pcsv.read_csv(pa.BufferReader(body), read_options=read, parse_options=parse, convert_options=convert)
    return table, list(names)


def collapse_whitespace(text: bytes, start: int = 0, block: int = 1 << 18) -> bytes:
    """Whitespace-separated text (from byte `start`) as single-space separated lines, vectorised.

    Runs of blanks between two fields become one space; blanks at the start or end of a line
    go (a line of blanks becomes an empty line, which the reader skips). Works through blocks
    of whole lines (256 kB by default): its temporaries stay in the CPU's cache, which makes it
    about 1.5 times faster than whole-text passes, and small next to the text.
    """
    parts = []
    while start < len(text):
        stop = text.find(b"\n", min(start + block, len(text)) - 1)
        stop = len(text) if stop < 0 else stop + 1
        parts.append(_collapse_block(np.frombuffer(text, dtype=np.uint8, count=stop - start, offset=start)))
        start = stop
    return b"".join(parts)


def _collapse_block(buf: np.ndarray) -> bytes:
    # A byte above 32 belongs to a value; 10 ends a line; every other byte is a blank.
    value = buf > 32
    newline = buf == 10
    # Keep values, newlines and the last blank before each value: one boolean compaction, the
    # costly step (a blank run followed by a newline, or by the end, goes whole).
    keep = value | newline
    keep[:-1] |= value[1:]
    text = buf[keep]
    if np.count_nonzero(buf < 32) != np.count_nonzero(newline):  # tabs, carriage returns...
        text[(text < 32) & (text != 10)] = 32
    # The blank kept before a line's first value goes too: few bytes, a cheap second pass.
    starts = np.flatnonzero(text == 10)
    starts += 1
    if starts.size and starts[-1] == text.size:
        starts = starts[:-1]
    leading = starts[text[starts] == 32]
    if text.size and text[0] == 32:
        leading = np.concatenate(([0], leading))
    if leading.size:
        kept = np.ones(text.size, dtype=bool)
        kept[leading] = False
        text = text[kept]
    return text.tobytes()


def _blanks(buf: np.ndarray) -> np.ndarray:
    """Space, tab or carriage return."""
    return (buf == 32) | (buf == 9) | (buf == 13)


# --- the careful path: pandas ------------------------------------------------------------------

def _read_pandas(data: bytes, fmt: str, layout: _Layout, path: Path, wanted: set[str]) -> tuple[pa.Table, list[str]]:
    import pandas as pd

    sep = {"csv": ",", "tsv": "\t", "whitespace": r"\s+"}[fmt]
    header = 0 if layout.has_header else None
    options = dict(sep=sep, skiprows=layout.skip, header=header, names=layout.names, skip_blank_lines=True)
    probe = pd.read_csv(io.BytesIO(data), nrows=1, **options)
    if not isinstance(probe.index, pd.RangeIndex):
        # pandas would silently turn the extra leading values into an index.
        raise BuildError(f"{path}: rows have more values than there are column names; check columnNames")
    # Parse only the columns the build needs: catalog files can hold huge array cells.
    frame = pd.read_csv(io.BytesIO(data), usecols=lambda c: str(c) in wanted, low_memory=False, **options)
    # ... but then pandas drops the values of a row beyond the header's columns without a word.
    _refuse_long_rows(data, fmt, layout, len(probe.columns), len(frame), path, options)
    return frame_to_arrow(frame), [str(c) for c in probe.columns]


def frame_to_arrow(frame) -> pa.Table:
    """A pandas DataFrame as an Arrow table (NaN as null); mixed object columns become text."""
    frame.columns = [str(c) for c in frame.columns]
    try:
        # Table.from_pandas also turns pyarrow's pandas integration on (see lazy_pandas).
        return pa.Table.from_pandas(frame, preserve_index=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        pass
    columns = {}
    for name in frame.columns:
        series = frame[name]
        try:
            columns[str(name)] = pa.array(series, from_pandas=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            columns[str(name)] = pa.array([None if v is None or v != v else str(v) for v in series], pa.string())
    return pa.table(columns)


def _refuse_long_rows(data: bytes, fmt: str, layout: _Layout, n_columns: int, n_rows: int, path: Path,
                      options: dict) -> None:
    """Raise BuildError naming the first data row with more fields than there are columns."""
    import pandas as pd

    counts = fields_per_row(data[layout.start:], fmt)
    if counts is not None and layout.has_header:
        counts = counts[1:]
    if counts is None or counts.size != n_rows:
        # Quotes the count cannot follow (a lone " inside a field): let pandas check every row,
        # parsing every column. Slower, and only for such files.
        try:
            pd.read_csv(io.BytesIO(data), low_memory=False, **options)
        except pd.errors.ParserError as exc:
            raise BuildError(f"{path}: {str(exc).strip()}: a row has more fields than the header has columns") \
                from None
        return
    long_rows = np.flatnonzero(counts > n_columns)
    if long_rows.size:
        first = int(long_rows[0])
        raise BuildError(f"{path}: data row {first + 1} has {int(counts[first])} fields but the header names "
                         f"{n_columns} columns ({long_rows.size} such row(s)); their extra values would be lost. "
                         f"Fix the file (or name every column with columnNames)")


def fields_per_row(text: bytes, fmt: str) -> np.ndarray | None:
    """Fields in each non-blank record of delimited text (the header line included), vectorised.

    CSV/TSV records end at newlines outside double quotes (quoted cells may span lines); a
    whitespace table's fields are runs of non-blank characters. None when quotes are unbalanced.
    """
    buf = np.frombuffer(text, dtype=np.uint8)
    if buf.size == 0:
        return np.zeros(0, dtype=np.int64)
    newline = buf == 10
    blank = _blanks(buf) | newline
    quoted = None
    if fmt != "whitespace" and 34 in buf:
        # Inside quotes after an odd number of quote characters (a doubled "" toggles twice);
        # uint8 wraps around, and only the parity matters.
        quoted = (np.cumsum(buf == 34, dtype=np.uint8) & 1).astype(bool)
        if quoted[-1]:
            return None
        newline &= ~quoted
    ends = np.flatnonzero(newline)
    starts = np.concatenate(([0], ends + 1))
    starts = starts[starts < buf.size]
    visible = np.add.reduceat(~blank, starts, dtype=np.int64)
    if fmt == "whitespace":
        token_start = ~blank
        token_start[1:] &= blank[:-1]
        fields = np.add.reduceat(token_start, starts, dtype=np.int64)
    else:
        delimiter = buf == (9 if fmt == "tsv" else 44)
        if quoted is not None:
            delimiter &= ~quoted
        fields = np.add.reduceat(delimiter, starts, dtype=np.int64) + 1
    return fields[visible > 0]
