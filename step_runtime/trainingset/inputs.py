"""Turning read tables into clean arrays: positions in degrees, ids, labels, carried columns.

Bad rows (missing, non-numeric or out-of-range coordinates) either stop the build with a message
naming the file, column and row, or are skipped and counted (spec.badRows).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from step_runtime.spec.trainingset import CatalogSpec, SourceSpec, TableSpec
from step_runtime.trainingset.arrays import arrow_of
from step_runtime.trainingset.errors import BuildError
from step_runtime.trainingset.labels import as_array, labels_as_text, map_labels
from step_runtime.trainingset.sexagesimal import Quirk, parse_sexagesimal
from step_runtime.trainingset.tables import read_table

Warn = Callable[[str], None]

# Output columns a source carry column must not shadow.
RESERVED = {"id", "ra", "dec", "label", "label_catalog", "label_catalog_id", "separation_arcsec",
            "conflict", "n_catalogs", "candidates", "_row"}


# Label state of a catalog row (and of a source's nearest match; LABEL_UNMATCHED when there is none).
LABEL_UNMATCHED, LABEL_OK, LABEL_NONE, LABEL_UNMAPPED = -1, 0, 1, 2


@dataclass
class SourceData:
    """The objects to label: one row per object, in source order (`_row` is the row read)."""

    origin: str
    frame: pa.Table  # columns: _row, id, ra, dec, <carry...>
    rows_read: int
    bad_rows: int


@dataclass
class CatalogData:
    """A catalog ready for matching: positions in degrees and final (mapped) labels."""

    spec: CatalogSpec
    origin: str
    ra_deg: np.ndarray
    dec_deg: np.ndarray
    extra: pa.Table  # columns: id, label, <carry...>, one row per kept catalog row
    label_state: np.ndarray  # int8 per kept row: LABEL_OK, LABEL_NONE (missing/blank) or LABEL_UNMAPPED
    stats: dict[str, object] = field(default_factory=dict)


def _field(prefix: str, name: str) -> str:
    return f"{prefix}.{name}"


def _needed_columns(spec: TableSpec, prefix: str) -> dict[str, str]:
    needed: dict[str, str] = {}
    if spec.id_column:
        needed[spec.id_column] = _field(prefix, "idColumn")
    needed[spec.ra_column] = _field(prefix, "raColumn")
    needed[spec.dec_column] = _field(prefix, "decColumn")
    if isinstance(spec, CatalogSpec) and spec.label_column:
        needed.setdefault(spec.label_column, _field(prefix, "labelColumn"))
    for col in spec.carry:
        needed.setdefault(col, _field(prefix, "carry"))
    return needed


# What pandas.to_numeric reads as a number, for text columns (spaces around are stripped first).
_NUMBER = r"^[+-]?((\d+\.?\d*|\.\d+)([eE][+-]?\d+)?|inf(inity)?|nan)$"


def _mask(values: pa.Array) -> np.ndarray:
    return values.to_numpy(zero_copy_only=False).astype(bool)


def _numeric(values: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Floats from a column (NaN where missing), and a mask of present values that are not numbers."""
    values = as_array(values)
    kind = values.type
    if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind) \
            or pa.types.is_boolean(kind) or pa.types.is_null(kind):
        numbers = pc.fill_null(values.cast(pa.float64()), np.nan).to_numpy(zero_copy_only=False)
        return numbers, np.zeros(len(values), dtype=bool)
    if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
        return np.full(len(values), np.nan), _mask(values.is_valid())  # dates, lists...: not numbers
    text = pc.utf8_trim_whitespace(values)
    present = pc.fill_null(pc.greater(pc.utf8_length(text), 0), False)
    number = pc.fill_null(pc.match_substring_regex(text, _NUMBER, ignore_case=True), False)
    numbers = pc.fill_null(pc.if_else(number, text, pa.scalar(None, text.type)).cast(pa.float64()), np.nan)
    return numbers.to_numpy(zero_copy_only=False), _mask(present) & ~_mask(number)


# Positions read as degrees that all fit in radian ranges, over at least this many rows, are
# almost surely radians (a real table in degrees would have to sit within 6.3 deg of RA 0).
RADIANS_MIN_ROWS = 100


def _refuse_radians(ra: np.ndarray, dec: np.ndarray, spec: TableSpec, origin: str, spec_path: str) -> None:
    """Refuse degrees that look like radians, unless coordUnits was set explicitly."""
    finite = np.isfinite(ra) & np.isfinite(dec)
    n = int(finite.sum())
    if n < RADIANS_MIN_ROWS:
        return
    if np.all(np.abs(ra[finite]) <= 2.0 * np.pi) and np.all(np.abs(dec[finite]) <= np.pi / 2.0):
        field = f"spec.{spec_path}.coordUnits" if spec_path else "coordUnits"
        raise BuildError(
            f"{origin}: columns {spec.ra_column!r}/{spec.dec_column!r}: all {n} positions have |ra| <= 2 pi and "
            f"|dec| <= pi/2, so they look like radians, and {field} is unset (degrees). Set {field}: rad "
            f"(or {field}: deg if they really are degrees)"
        )


def _report_quirks(quirks: list[Quirk], column: str, origin: str, row_word: str, warn: Warn) -> None:
    """One warning per kind of quirk (astropy's Illegal*Warning), naming the first row and the count."""
    by_field: dict[str, list[Quirk]] = {}
    for quirk in quirks:
        by_field.setdefault(quirk.field, []).append(quirk)
    meaning = {"second": "60 s read as 0 s of the next minute", "minute": "60 min read as 0 min of the next "
               "hour/degree", "hour": "24 h read as 24 h (RA 360 = 0)"}
    for name, found in by_field.items():
        first = found[0]
        warn(f"{origin}: column {column!r} {row_word} {first.position + 1}: {name} of "
             f"{'24' if name == 'hour' else '60'} in {first.value!r} is out of range; {meaning[name]}, as astropy "
             f"does (IllegalSecondWarning and kin); {len(found)} such value(s) in this column")


def positions_deg(frame: pa.Table, spec: TableSpec, origin: str, bad_rows: str, row_word: str = "data row",
                  spec_path: str = "", warn: Warn | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ra_deg in [0, 360), dec_deg, good-row mask) from the spec's columns and units.

    A bad row under policy "fail" raises BuildError naming the file, column and row (1-based).
    With coordUnits unset, positions that look like radians are refused (`spec_path`, e.g.
    "source", names the field to set). Values read with a warning (a sexagesimal second of 60)
    are reported through `warn`, with file, column and row.
    """
    ra_raw, dec_raw = frame[spec.ra_column], frame[spec.dec_column]
    if spec.coord_units == "sexagesimal":
        parsed_ra = parse_sexagesimal(ra_raw, hours=True)
        parsed_dec = parse_sexagesimal(dec_raw, hours=False)
        ra, ra_unparsed = parsed_ra.degrees, parsed_ra.refused
        dec, dec_unparsed = parsed_dec.degrees, parsed_dec.refused
        what = "not a sexagesimal angle"
        if warn is not None:
            for column, parsed in ((spec.ra_column, parsed_ra), (spec.dec_column, parsed_dec)):
                _report_quirks(parsed.quirks, column, origin, row_word, warn)
    else:
        ra, ra_unparsed = _numeric(ra_raw)
        dec, dec_unparsed = _numeric(dec_raw)
        what = "not a number"
        if spec.coord_units is None:
            _refuse_radians(ra, dec, spec, origin, spec_path)
        if spec.coord_units == "rad":
            ra, dec = np.degrees(ra), np.degrees(dec)
    unit_note = {"deg": "degrees", "rad": "radians", "sexagesimal": "sexagesimal"}[spec.coord_units or "deg"]
    problems = [
        (spec.ra_column, ra_unparsed, what),
        (spec.dec_column, dec_unparsed, what),
        (spec.ra_column, ~ra_unparsed & ~np.isfinite(ra), "missing or not finite"),
        (spec.dec_column, ~dec_unparsed & ~np.isfinite(dec), "missing or not finite"),
        (spec.dec_column, np.isfinite(dec) & (np.abs(dec) > 90.0), f"declination out of range (|dec| > 90 deg; units {unit_note})"),
    ]
    bad = np.zeros(frame.num_rows, dtype=bool)
    for _, mask, _ in problems:
        bad |= mask
    if bad.any() and bad_rows == "fail":
        first = int(np.flatnonzero(bad)[0])
        for column, mask, reason in problems:
            if mask[first]:
                value = frame[column][first].as_py()
                raise BuildError(
                    f"{origin}: column {column!r} {row_word} {first + 1}: {reason} (value {value!r}); "
                    f"{int(bad.sum())} bad row(s) in all. Fix them, or set spec.badRows: skip-and-count"
                )
    good = ~bad
    return np.mod(np.where(good, ra, 0.0), 360.0), np.where(good, dec, 0.0), good


def _ids(frame: pa.Table, spec: TableSpec) -> pa.Array:
    if spec.id_column:
        return as_array(frame[spec.id_column])
    return arrow_of(np.arange(frame.num_rows, dtype=np.int64))


def _repeats(ids: pa.Array) -> np.ndarray:
    """Rows whose id an earlier row already has (null ids are left to the missing-id check)."""
    codes = pc.fill_null(pc.dictionary_encode(ids).indices, -1).to_numpy(zero_copy_only=False).astype(np.int64)
    repeated = np.zeros(codes.size, dtype=bool)
    if codes.size and np.bincount(codes + 1)[1:].max(initial=0) > 1:
        _, first = np.unique(codes, return_index=True)
        repeated[:] = True
        repeated[first] = False
        repeated &= codes >= 0
    return repeated


def load_source(spec: SourceSpec, base_dir: Path, bad_rows: str, warn: Warn | None = None) -> SourceData:
    """Read and clean the source table (`warn` receives warnings about values read)."""
    clash = sorted(set(spec.carry) & RESERVED)
    if clash:
        raise BuildError(f"spec.source.carry: column(s) {clash} clash with output columns; carry other columns")
    frame, origin = read_table(spec, base_dir, _needed_columns(spec, "source"))
    if frame.num_rows == 0:
        raise BuildError(f"{origin}: the source has no rows")
    row_word = "query row" if spec.query is not None else "data row"
    ra, dec, good = positions_deg(frame, spec, origin, bad_rows, row_word, "source", warn)
    ids = _ids(frame, spec)
    missing_id = _mask(pc.is_null(ids, nan_is_null=True)) & good
    if missing_id.any():
        if bad_rows == "fail":
            first = int(np.flatnonzero(missing_id)[0])
            raise BuildError(f"{origin}: column {spec.id_column!r} {row_word} {first + 1}: missing id; "
                             f"{int(missing_id.sum())} row(s) in all. Fix them, or set spec.badRows: skip-and-count")
        good &= ~missing_id
    dup_of_good = _repeats(ids) & good
    if dup_of_good.any():
        first = int(np.flatnonzero(dup_of_good)[0])
        if bad_rows == "fail":
            raise BuildError(f"{origin}: column {spec.id_column!r} {row_word} {first + 1}: id {ids[first].as_py()!r} "
                             f"repeats an earlier row; ids must be unique ({int(dup_of_good.sum())} repeat(s)). "
                             f"Fix them, or set spec.badRows: skip-and-count to keep the first")
        good &= ~dup_of_good
    rows = np.flatnonzero(good)
    table = pa.table({"id": ids, **{col: as_array(frame[col]) for col in spec.carry}})
    if rows.size < frame.num_rows:
        table = table.take(arrow_of(rows))
        ra, dec = ra[rows], dec[rows]
    table = table.add_column(0, "_row", arrow_of(rows)).add_column(2, "ra", arrow_of(ra))
    table = table.add_column(3, "dec", arrow_of(dec))
    return SourceData(origin, table, rows_read=frame.num_rows, bad_rows=int(frame.num_rows - rows.size))


def load_catalog(spec: CatalogSpec, index: int, base_dir: Path, bad_rows: str, warn: Warn | None = None
                 ) -> CatalogData:
    """Read a catalog, clean its positions and map its labels.

    Every row with good coordinates is kept for matching (labelFrom: nearest), with its label
    state, so a source whose nearest object has no label gets none. labelFrom: nearest-labeled
    keeps only the rows with a final label, as builds did before.
    """
    prefix = f"catalogs[{index}]"
    frame, origin = read_table(spec, base_dir, _needed_columns(spec, prefix))
    where = f"{origin} (catalog {spec.name!r})"
    if frame.num_rows == 0:
        raise BuildError(f"{where}: the catalog is empty")
    row_word = "query row" if spec.query is not None else "data row"
    ra, dec, good = positions_deg(frame, spec, where, bad_rows, row_word, prefix, warn)
    if spec.label is not None:
        raw_labels = pa.array([spec.label] * frame.num_rows, pa.string())
    else:
        raw_labels = labels_as_text(frame[spec.label_column])
    raw_labels = pc.if_else(arrow_of(good), raw_labels, pa.scalar(None, raw_labels.type))
    mapped = map_labels(raw_labels, spec.label_map, spec.unmapped_labels, where)
    labeled = good & _mask(mapped.labels.is_valid())
    n_bad = int((~good).sum())
    if not labeled.any():
        raise BuildError(f"{where}: no usable rows: {frame.num_rows} read, {n_bad} with bad coordinates, "
                         f"{mapped.unlabeled - n_bad} without a label, {mapped.unmapped} not in labelMap")
    rows = np.flatnonzero(labeled if spec.label_from == "nearest-labeled" else good)
    state = np.full(frame.num_rows, LABEL_NONE, dtype=np.int8)
    state[labeled] = LABEL_OK
    state[mapped.unmapped_rows & good] = LABEL_UNMAPPED
    columns = {"id": _ids(frame, spec), "label": mapped.labels}
    for col in spec.carry:
        columns[col] = as_array(frame[col])
    extra = pa.table(columns)
    if rows.size < frame.num_rows:
        extra = extra.take(arrow_of(rows))
    stats = {
        "rows_read": frame.num_rows,
        "bad_rows": n_bad,
        "rows_without_label": int(mapped.unlabeled - n_bad),
        "rows_unmapped": mapped.unmapped,
        "unmapped_examples": mapped.unmapped_values,
        "rows_used": int(rows.size),
    }
    whole = rows.size == frame.num_rows
    return CatalogData(spec, origin, ra if whole else ra[rows], dec if whole else dec[rows], extra,
                       state if whole else state[rows], stats)
