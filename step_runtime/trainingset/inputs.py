"""Turning read tables into clean arrays: positions in degrees, ids, labels, carried columns.

Bad rows (missing, non-numeric or out-of-range coordinates) either stop the build with a message
naming the file, column and row, or are skipped and counted (spec.badRows).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from step_runtime.spec.trainingset import CatalogSpec, SourceSpec, TableSpec
from step_runtime.trainingset.errors import BuildError
from step_runtime.trainingset.labels import labels_as_text, map_labels
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
    frame: pd.DataFrame  # columns: _row, id, ra, dec, <carry...>
    rows_read: int
    bad_rows: int


@dataclass
class CatalogData:
    """A catalog ready for matching: positions in degrees and final (mapped) labels."""

    spec: CatalogSpec
    origin: str
    ra_deg: np.ndarray
    dec_deg: np.ndarray
    extra: pd.DataFrame  # columns: id, label, <carry...>, one row per kept catalog row
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


def _numeric(values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Floats from a column, and a mask of present values that are not numbers."""
    numbers = pd.to_numeric(values, errors="coerce")
    out = numbers.to_numpy(dtype=np.float64, na_value=np.nan)
    not_number = (numbers.isna() & values.notna()).to_numpy()
    if values.dtype == object:
        blank = values.astype("string").str.strip().eq("").fillna(False).to_numpy(dtype=bool)
        not_number &= ~blank
    return out, not_number


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


def positions_deg(frame: pd.DataFrame, spec: TableSpec, origin: str, bad_rows: str, row_word: str = "data row",
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
    bad = np.zeros(len(frame), dtype=bool)
    for _, mask, _ in problems:
        bad |= mask
    if bad.any() and bad_rows == "fail":
        first = int(np.flatnonzero(bad)[0])
        for column, mask, reason in problems:
            if mask[first]:
                value = frame[column].iloc[first]
                raise BuildError(
                    f"{origin}: column {column!r} {row_word} {first + 1}: {reason} (value {value!r}); "
                    f"{int(bad.sum())} bad row(s) in all. Fix them, or set spec.badRows: skip-and-count"
                )
    good = ~bad
    return np.mod(np.where(good, ra, 0.0), 360.0), np.where(good, dec, 0.0), good


def _ids(frame: pd.DataFrame, spec: TableSpec) -> pd.Series:
    if spec.id_column:
        return frame[spec.id_column]
    return pd.Series(np.arange(len(frame), dtype=np.int64), index=frame.index)


def load_source(spec: SourceSpec, base_dir: Path, bad_rows: str, warn: Warn | None = None) -> SourceData:
    """Read and clean the source table (`warn` receives warnings about values read)."""
    clash = sorted(set(spec.carry) & RESERVED)
    if clash:
        raise BuildError(f"spec.source.carry: column(s) {clash} clash with output columns; carry other columns")
    frame, origin = read_table(spec, base_dir, _needed_columns(spec, "source"))
    if len(frame) == 0:
        raise BuildError(f"{origin}: the source has no rows")
    row_word = "query row" if spec.query is not None else "data row"
    ra, dec, good = positions_deg(frame, spec, origin, bad_rows, row_word, "source", warn)
    ids = _ids(frame, spec)
    missing_id = (ids.isna().to_numpy() & good)
    if missing_id.any():
        if bad_rows == "fail":
            first = int(np.flatnonzero(missing_id)[0])
            raise BuildError(f"{origin}: column {spec.id_column!r} {row_word} {first + 1}: missing id; "
                             f"{int(missing_id.sum())} row(s) in all. Fix them, or set spec.badRows: skip-and-count")
        good &= ~missing_id
    duplicated = ids.duplicated(keep="first").to_numpy() & good
    dup_of_good = duplicated & ids.duplicated(keep=False).to_numpy()
    if dup_of_good.any():
        first = int(np.flatnonzero(dup_of_good)[0])
        if bad_rows == "fail":
            raise BuildError(f"{origin}: column {spec.id_column!r} {row_word} {first + 1}: id {ids.iloc[first]!r} "
                             f"repeats an earlier row; ids must be unique ({int(dup_of_good.sum())} repeat(s)). "
                             f"Fix them, or set spec.badRows: skip-and-count to keep the first")
        good &= ~dup_of_good
    rows = np.flatnonzero(good)
    out = pd.DataFrame({"_row": rows.astype(np.int64), "id": ids.to_numpy()[rows], "ra": ra[rows], "dec": dec[rows]})
    for col in spec.carry:
        out[col] = frame[col].to_numpy()[rows]
    return SourceData(origin, out, rows_read=len(frame), bad_rows=int(len(frame) - rows.size))


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
    if len(frame) == 0:
        raise BuildError(f"{where}: the catalog is empty")
    row_word = "query row" if spec.query is not None else "data row"
    ra, dec, good = positions_deg(frame, spec, where, bad_rows, row_word, prefix, warn)
    if spec.label is not None:
        raw_labels = pd.Series([spec.label] * len(frame), index=frame.index, dtype=object)
    else:
        raw_labels = labels_as_text(frame[spec.label_column])
    mapped = map_labels(raw_labels.where(pd.Series(good, index=frame.index), None), spec.label_map,
                        spec.unmapped_labels, where)
    labeled = good & mapped.labels.notna().to_numpy()
    n_bad = int((~good).sum())
    if not labeled.any():
        raise BuildError(f"{where}: no usable rows: {len(frame)} read, {n_bad} with bad coordinates, "
                         f"{mapped.unlabeled - n_bad} without a label, {mapped.unmapped} not in labelMap")
    rows = np.flatnonzero(labeled if spec.label_from == "nearest-labeled" else good)
    state = np.full(len(frame), LABEL_NONE, dtype=np.int8)
    state[labeled] = LABEL_OK
    state[mapped.unmapped_rows & good] = LABEL_UNMAPPED
    ids = _ids(frame, spec)
    labels = mapped.labels.to_numpy(dtype=object)[rows]
    labels[state[rows] != LABEL_OK] = None
    extra = pd.DataFrame({"id": ids.to_numpy()[rows], "label": labels})
    for col in spec.carry:
        extra[col] = frame[col].to_numpy()[rows]
    stats = {
        "rows_read": len(frame),
        "bad_rows": n_bad,
        "rows_without_label": int(mapped.unlabeled - n_bad),
        "rows_unmapped": mapped.unmapped,
        "unmapped_examples": mapped.unmapped_values,
        "rows_used": int(rows.size),
    }
    return CatalogData(spec, origin, ra[rows], dec[rows], extra.reset_index(drop=True), state[rows], stats)
