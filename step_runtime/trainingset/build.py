"""The build: load inputs, match each sky partition, merge partitions into the training set.

`match_partition` is the expensive part (one SkyIndex per catalog, whole-array queries); its
result holds everything the merge needs (source columns plus each catalog's match), so a merge
never re-reads inputs. One-to-one matching and label combination need every partition and
happen in `merge_parts`; partitioned and unpartitioned builds therefore give the same rows.
"""
from __future__ import annotations

import hashlib
import json
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from step_runtime.crossmatch import SkyIndex, one_to_one
from step_runtime.spec.trainingset import TrainingSetBuildSpec
from step_runtime.trainingset.arrays import arrow_of, null_where
from step_runtime.trainingset.combine import combine_labels, trust_order
from step_runtime.trainingset.inputs import (
    LABEL_NONE,
    LABEL_UNMAPPED,
    LABEL_UNMATCHED,
    CatalogData,
    SourceData,
    load_catalog,
    load_source,
)
from step_runtime.trainingset.partition import catalog_rows_for, margin_for_radius_deg, source_partition


@dataclass
class Inputs:
    """Everything read from the spec's tables."""

    source: SourceData
    catalogs: list[CatalogData]


def spec_digest(spec: TrainingSetBuildSpec) -> str:
    """Short hash of the spec: partitions of one build must come from the same spec."""
    text = json.dumps(spec.model_dump(mode="json", by_alias=True), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def load_inputs(spec: TrainingSetBuildSpec, base_dir: Path, on_table=None, warn=None) -> Inputs:
    """Read the source and every catalog (`on_table(description)` is called after each, `warn(text)`
    for each warning about the values read).

    Tables are read two at a time: decompressing, parsing and cleaning release the GIL for the
    most part, so a second core overlaps them. Results, warnings and the first error come in
    spec order, as if read one by one.
    """
    notes: list[list[str]] = [[] for _ in range(1 + len(spec.catalogs))]
    loaded: list[SourceData | CatalogData] = []
    with ThreadPoolExecutor(max_workers=min(2, len(notes))) as pool:
        futures: list[Future[SourceData | CatalogData]] = [
            pool.submit(load_source, spec.source, base_dir, spec.bad_rows, notes[0].append)]
        futures += [pool.submit(load_catalog, cat, i, base_dir, spec.bad_rows, notes[i + 1].append)
                    for i, cat in enumerate(spec.catalogs)]
        try:
            for i, future in enumerate(futures):
                loaded.append(future.result())
                for text in notes[i]:
                    if warn:
                        warn(text)
                if on_table:
                    on_table(_describe(loaded[-1], spec.catalogs[i - 1].name if i else None))
        finally:
            for future in futures:
                future.cancel()
    release_unused_memory()
    source, *catalogs = loaded
    return Inputs(source, catalogs)  # type: ignore[arg-type]  # spec order: the source, then the catalogs


def release_unused_memory() -> None:
    """Give the memory Arrow freed back to the system (its allocator keeps freed pages for reuse).

    Reading a table leaves decompression and parsing buffers behind: returning them lowers the
    build's peak, which comes later, while matching.
    """
    pa.default_memory_pool().release_unused()


def _describe(table: SourceData | CatalogData, catalog: str | None) -> str:
    if isinstance(table, SourceData):
        return f"source: {table.frame.num_rows} rows from {table.origin}"
    return f"catalog {catalog}: {table.stats['rows_used']} rows from {table.origin}"


def match_partition(inputs: Inputs, k: int, n_partitions: int) -> pa.Table:
    """Source rows of sky partition k with, per catalog, their nearest match within the radius.

    Columns: the source's (_row, id, ra, dec, carry...) then, per catalog `c`: c_row (catalog row
    used, -1 if none), c_label_state (LABEL_*: why c_label is null), c_id, c_label, c_sep_arcsec,
    c_n_within, c_second_sep_arcsec, c_<carry>. The nearest catalog object is the match whether
    or not it has a label; c_label is null when it has none.
    """
    src = inputs.source.frame
    dec_all = src["dec"].to_numpy()
    if n_partitions == 1:
        part = src
    else:
        part = src.filter(arrow_of(source_partition(dec_all, n_partitions) == k))
    ra, dec = part["ra"].to_numpy(), part["dec"].to_numpy()
    columns: dict[str, object] = {name: part[name] for name in part.column_names}
    for catalog in inputs.catalogs:
        name = catalog.spec.name
        radius = catalog.spec.radius_arcsec
        if n_partitions == 1:
            rows = None
            index = SkyIndex(catalog.ra_deg, catalog.dec_deg)
        else:
            rows = np.flatnonzero(catalog_rows_for(catalog.dec_deg, k, n_partitions, margin_for_radius_deg(radius)))
            index = SkyIndex(catalog.ra_deg[rows], catalog.dec_deg[rows])
        match = index.nearest(ra, dec, radius)
        matched = match.index >= 0
        cat_row = match.index
        if rows is not None:  # back to the catalog's own row numbers
            cat_row = np.full(matched.size, -1, dtype=np.int64)
            cat_row[matched] = rows[match.index[matched]]
        columns[f"{name}_row"] = arrow_of(cat_row)
        state = np.full(matched.size, LABEL_UNMATCHED, dtype=np.int8)
        state[matched] = catalog.label_state[cat_row[matched]]
        columns[f"{name}_label_state"] = arrow_of(state)
        taken = catalog.extra.take(arrow_of(cat_row, null=~matched))  # nulls where unmatched
        columns[f"{name}_id"] = taken["id"]
        columns[f"{name}_label"] = taken["label"]
        columns[f"{name}_sep_arcsec"] = _floats(match.separation_arcsec)
        columns[f"{name}_n_within"] = arrow_of(match.n_within)
        columns[f"{name}_second_sep_arcsec"] = _floats(match.second_separation_arcsec)
        for col in catalog.spec.carry:
            columns[f"{name}_{col}"] = taken[col]
    return pa.table(columns)


def _floats(values: np.ndarray) -> pa.Array:
    """float64 with NaN as null, as the output files had it when pandas wrote them."""
    return arrow_of(values, nan_as_null=True)


@dataclass
class Merged:
    """The final training set and the numbers the summary reports."""

    frame: pa.Table
    stats: dict[str, Any]
    separations: dict[str, np.ndarray]  # per catalog, separations of kept matches (for the report)


def merge_parts(parts: list[pa.Table], spec: TrainingSetBuildSpec) -> Merged:
    """Concatenate partition results in source order, apply one-to-one and combine labels."""
    frame = pa.concat_tables(parts, promote_options="default") if len(parts) > 1 else parts[0]
    if len(parts) > 1:
        frame = frame.take(pc.sort_indices(frame["_row"]))
    per_catalog: dict[str, dict[str, object]] = {}
    separations: dict[str, np.ndarray] = {}
    for cat in spec.catalogs:
        name = cat.name
        rows = frame[f"{name}_row"].to_numpy()
        lost = 0
        if spec.combine.matching == "one-to-one":
            sep = frame[f"{name}_sep_arcsec"].to_numpy()
            kept = one_to_one(rows, sep)
            losers = (rows >= 0) & (kept < 0)
            lost = int(losers.sum())
            if lost:
                frame = _unmatch(frame, cat, losers)
                rows = frame[f"{name}_row"].to_numpy()
        matched = rows >= 0
        state = frame[f"{name}_label_state"].to_numpy()
        separations[name] = frame[f"{name}_sep_arcsec"].to_numpy()[matched]
        labels = frame[f"{name}_label"].filter(arrow_of(matched)).drop_null()
        per_catalog[name] = {
            "matches": int(matched.sum()),
            # sources whose nearest object gives no label (none, or one the labelMap drops) ...
            "matched_unlabeled": int(((state == LABEL_NONE) | (state == LABEL_UNMAPPED)).sum()),
            # ... of which the labelMap dropped
            "matched_unmapped": int((state == LABEL_UNMAPPED).sum()),
            "ambiguous": int((frame[f"{name}_n_within"].to_numpy()[matched] > 1).sum()),
            "lost_one_to_one": lost,
            "radius_arcsec": cat.radius_arcsec,
            "labels": _counts(labels),
        }
    order = trust_order([c.name for c in spec.catalogs], [c.priority for c in spec.catalogs])
    combined = combine_labels(frame, order, spec.combine.policy, spec.combine.keep_unlabeled)
    for name, count in combined.conflicts_by_catalog.items():
        per_catalog[name]["conflicts"] = count
    out = combined.frame.drop_columns(["_row"] + [f"{c.name}_{k}" for c in spec.catalogs
                                                  for k in ("row", "label_state")])
    stats: dict[str, Any] = {
        "rows_matched_any": int(frame.num_rows - combined.unlabeled),
        "rows_out": int(out.num_rows),
        "conflicts": combined.conflicts,
        "conflicts_dropped": combined.dropped_conflicts,
        "policy": spec.combine.policy,
        "matching": spec.combine.matching,
        "catalogs": per_catalog,
        "classes": _counts(out["label"].drop_null()),
        "trust_order": order,
    }
    return Merged(_column_order(out, spec), stats, separations)


def _counts(values: pa.ChunkedArray) -> dict[str, int]:
    """Value -> count, most frequent first (ties in order of first appearance)."""
    counted = pc.value_counts(values).to_pylist() if len(values) else []
    counted.sort(key=lambda item: -item["counts"])
    return {str(item["values"]): int(item["counts"]) for item in counted}


def _unmatch(frame: pa.Table, cat, losers: np.ndarray) -> pa.Table:
    """Clear a catalog's match columns on rows that lost their match to a nearer object."""
    name = cat.name
    lost = arrow_of(losers)
    numbers = {f"{name}_row": -1, f"{name}_label_state": LABEL_UNMATCHED, f"{name}_n_within": 0}
    for col, value in numbers.items():
        values = frame[col].to_numpy().copy()
        values[losers] = value
        frame = frame.set_column(frame.schema.get_field_index(col), col, arrow_of(values))
    for col in [f"{name}_sep_arcsec", f"{name}_second_sep_arcsec", f"{name}_id", f"{name}_label"] + \
               [f"{name}_{c}" for c in cat.carry]:
        column = frame[col]
        cleared = null_where(lost, column)
        frame = frame.set_column(frame.schema.get_field_index(col), col, cleared)
    return frame


def _column_order(frame: pa.Table, spec: TrainingSetBuildSpec) -> pa.Table:
    head = ["id", "ra", "dec", *spec.source.carry, "label", "label_catalog", "label_catalog_id",
            "separation_arcsec", "conflict", "n_catalogs", "candidates"]
    rest = [c for c in frame.column_names if c not in head]
    return frame.select(head + rest)


def part_file_name(k: int, n: int) -> str:
    """File name of partition k's result inside the parts directory."""
    return f"part-{k:05d}-of-{n:05d}.parquet"
