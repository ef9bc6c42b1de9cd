"""Turning read tables into clean arrays: positions in degrees, ids, labels, carried columns.

Bad rows (missing, non-numeric or out-of-range coordinates) either stop the build with a message
naming the file, column and row, or are skipped and counted (spec.badRows).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from step_runtime.spec.trainingset import CatalogSpec, SourceSpec, TableSpec
from step_runtime.trainingset.errors import BuildError
from step_runtime.trainingset.labels import labels_as_text, map_labels
from step_runtime.trainingset.tables import read_table

# Output columns a source carry column must not shadow.
RESERVED = {"id", "ra", "dec", "label", "label_catalog", "label_catalog_id", "separation_arcsec",
            "conflict", "n_catalogs", "candidates", "_row"}


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


def _sexagesimal_deg(values: pd.Series, hours: bool) -> tuple[np.ndarray, np.ndarray]:
    """Degrees from sexagesimal strings, and a mask of values that did not parse."""
    from astropy import units as u
    from astropy.coordinates import Angle

    unit = u.hourangle if hours else u.deg
    text = values.astype("string").str.strip()
    present = text.notna() & (text != "")
    out = np.full(len(values), np.nan)
    bad = np.zeros(len(values), dtype=bool)
    strings = text[present].to_numpy(dtype=object)
    try:
        out[present.to_numpy()] = Angle(strings.astype(str), unit=unit).degree
    except Exception:
        # Only on the error path: find which values astropy refuses, one by one.
        positions = np.flatnonzero(present.to_numpy())
        for pos, value in zip(positions, strings):
            try:
                out[pos] = Angle(str(value), unit=unit).degree
            except Exception:
                bad[pos] = True
    return out, bad


def _numeric(values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Floats from a column, and a mask of present values that are not numbers."""
    numbers = pd.to_numeric(values, errors="coerce")
    out = numbers.to_numpy(dtype=np.float64, na_value=np.nan)
    not_number = (numbers.isna() & values.notna()).to_numpy()
    if values.dtype == object:
        blank = values.astype("string").str.strip().eq("").fillna(False).to_numpy(dtype=bool)
        not_number &= ~blank
    return out, not_number


def positions_deg(frame: pd.DataFrame, spec: TableSpec, origin: str, bad_rows: str, row_word: str = "data row"
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ra_deg in [0, 360), dec_deg, good-row mask) from the spec's columns and units.

    A bad row under policy "fail" raises BuildError naming the file, column and row (1-based).
    """
    ra_raw, dec_raw = frame[spec.ra_column], frame[spec.dec_column]
    if spec.coord_units == "sexagesimal":
        ra, ra_unparsed = _sexagesimal_deg(ra_raw, hours=True)
        dec, dec_unparsed = _sexagesimal_deg(dec_raw, hours=False)
        what = "not a sexagesimal angle"
    else:
        ra, ra_unparsed = _numeric(ra_raw)
        dec, dec_unparsed = _numeric(dec_raw)
        what = "not a number"
        if spec.coord_units == "rad":
            ra, dec = np.degrees(ra), np.degrees(dec)
    unit_note = {"deg": "degrees", "rad": "radians", "sexagesimal": "sexagesimal"}[spec.coord_units]
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


def load_source(spec: SourceSpec, base_dir: Path, bad_rows: str) -> SourceData:
    """Read and clean the source table."""
    clash = sorted(set(spec.carry) & RESERVED)
    if clash:
        raise BuildError(f"spec.source.carry: column(s) {clash} clash with output columns; carry other columns")
    frame, origin = read_table(spec, base_dir, _needed_columns(spec, "source"))
    if len(frame) == 0:
        raise BuildError(f"{origin}: the source has no rows")
    row_word = "query row" if spec.query is not None else "data row"
    ra, dec, good = positions_deg(frame, spec, origin, bad_rows, row_word)
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


def load_catalog(spec: CatalogSpec, index: int, base_dir: Path, bad_rows: str) -> CatalogData:
    """Read a catalog, clean its positions, map its labels; rows without a final label are dropped."""
    prefix = f"catalogs[{index}]"
    frame, origin = read_table(spec, base_dir, _needed_columns(spec, prefix), f"spec.{prefix}")
    where = f"{origin} (catalog {spec.name!r})"
    if len(frame) == 0:
        raise BuildError(f"{where}: the catalog is empty")
    row_word = "query row" if spec.query is not None else "data row"
    ra, dec, good = positions_deg(frame, spec, where, bad_rows, row_word)
    if spec.label is not None:
        raw_labels = pd.Series([spec.label] * len(frame), index=frame.index, dtype=object)
    else:
        raw_labels = labels_as_text(frame[spec.label_column])
    mapped = map_labels(raw_labels.where(pd.Series(good, index=frame.index), None), spec.label_map,
                        spec.unmapped_labels, where)
    keep = good & mapped.labels.notna().to_numpy()
    rows = np.flatnonzero(keep)
    if rows.size == 0:
        raise BuildError(f"{where}: no usable rows: {len(frame)} read, {int((~good).sum())} with bad coordinates, "
                         f"{mapped.unlabeled - int((~good).sum())} without a label, {mapped.unmapped} not in labelMap")
    ids = _ids(frame, spec)
    extra = pd.DataFrame({"id": ids.to_numpy()[rows], "label": mapped.labels.to_numpy()[rows]})
    for col in spec.carry:
        extra[col] = frame[col].to_numpy()[rows]
    stats = {
        "rows_read": len(frame),
        "bad_rows": int((~good).sum()),
        "rows_without_label": int(mapped.unlabeled - int((~good).sum())),
        "rows_unmapped": mapped.unmapped,
        "unmapped_examples": mapped.unmapped_values,
        "rows_used": int(rows.size),
    }
    return CatalogData(spec, origin, ra[rows], dec[rows], extra.reset_index(drop=True), stats)
