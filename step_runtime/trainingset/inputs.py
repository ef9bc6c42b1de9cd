"""Turning read tables into clean inputs: positions in degrees, ids, labels, carried columns.

Bad rows (bad coordinates, see positions.py; missing or repeated source ids) either stop the
build with a message naming the file, column and row, or are skipped and counted (spec.badRows).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from step_runtime.spec.trainingset import CatalogSpec, SourceSpec, TableSpec
from step_runtime.trainingset.arrays import arrow_of, mask_of, null_where
from step_runtime.trainingset.errors import BuildError
from step_runtime.trainingset.labels import as_array, labels_as_text, map_labels
from step_runtime.trainingset.positions import Warn, positions_deg
from step_runtime.trainingset.tables import read_table

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
    missing_id = mask_of(pc.is_null(ids, nan_is_null=True)) & good
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
    frame, origin = read_table(spec, base_dir, _needed_columns(spec, prefix), f"spec.{prefix}")
    where = f"{origin} (catalog {spec.name!r})"
    if frame.num_rows == 0:
        raise BuildError(f"{where}: the catalog is empty")
    row_word = "query row" if spec.query is not None else "data row"
    ra, dec, good = positions_deg(frame, spec, where, bad_rows, row_word, prefix, warn)
    if spec.label is not None:
        raw_labels = pa.array([spec.label] * frame.num_rows, pa.string())
    else:
        raw_labels = labels_as_text(frame[spec.label_column])
    raw_labels = null_where(~good, raw_labels)
    mapped = map_labels(raw_labels, spec.label_map, spec.unmapped_labels, where)
    labeled = good & mask_of(mapped.labels.is_valid())
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
