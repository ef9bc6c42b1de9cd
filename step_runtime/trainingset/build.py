"""The build: load inputs, match each sky partition, merge partitions into the training set.

`match_partition` is the expensive part (one SkyIndex per catalog, whole-array queries); its
result holds everything the merge needs (source columns plus each catalog's match), so a merge
never re-reads inputs. One-to-one matching and label combination need every partition and
happen in `merge_parts`; partitioned and unpartitioned builds therefore give the same rows.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from step_runtime.crossmatch import SkyIndex, one_to_one
from step_runtime.spec.trainingset import TrainingSetBuildSpec
from step_runtime.trainingset.combine import combine_labels, trust_order
from step_runtime.trainingset.inputs import (LABEL_NONE, LABEL_UNMAPPED, LABEL_UNMATCHED, CatalogData, SourceData,
                                             load_catalog, load_source)
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
    for each warning about the values read)."""
    source = load_source(spec.source, base_dir, spec.bad_rows, warn)
    if on_table:
        on_table(f"source: {len(source.frame)} rows from {source.origin}")
    catalogs = []
    for i, cat_spec in enumerate(spec.catalogs):
        catalog = load_catalog(cat_spec, i, base_dir, spec.bad_rows, warn)
        catalogs.append(catalog)
        if on_table:
            on_table(f"catalog {cat_spec.name}: {catalog.stats['rows_used']} rows from {catalog.origin}")
    return Inputs(source, catalogs)


def match_partition(inputs: Inputs, k: int, n_partitions: int) -> pd.DataFrame:
    """Source rows of sky partition k with, per catalog, their nearest match within the radius.

    Columns: the source's (_row, id, ra, dec, carry...) then, per catalog `c`: c_row (catalog row
    used, -1 if none), c_label_state (LABEL_*: why c_label is None), c_id, c_label, c_sep_arcsec,
    c_n_within, c_second_sep_arcsec, c_<carry>. The nearest catalog object is the match whether
    or not it has a label; c_label is None when it has none.
    """
    src = inputs.source.frame
    in_band = source_partition(src["dec"].to_numpy(), n_partitions) == k
    part = src[in_band].reset_index(drop=True)
    ra, dec = part["ra"].to_numpy(), part["dec"].to_numpy()
    columns: dict[str, object] = {}
    for catalog in inputs.catalogs:
        name = catalog.spec.name
        radius = catalog.spec.radius_arcsec
        near = catalog_rows_for(catalog.dec_deg, k, n_partitions, margin_for_radius_deg(radius))
        rows = np.flatnonzero(near)
        match = SkyIndex(catalog.ra_deg[rows], catalog.dec_deg[rows]).nearest(ra, dec, radius)
        matched = match.index >= 0
        cat_row = np.full(matched.size, -1, dtype=np.int64)
        cat_row[matched] = rows[match.index[matched]]  # back to the catalog's own row numbers
        columns[f"{name}_row"] = cat_row
        state = np.full(matched.size, LABEL_UNMATCHED, dtype=np.int8)
        state[matched] = catalog.label_state[cat_row[matched]]
        columns[f"{name}_label_state"] = state
        taken = _take(catalog.extra, cat_row)
        columns[f"{name}_id"] = taken["id"]
        columns[f"{name}_label"] = taken["label"]
        columns[f"{name}_sep_arcsec"] = match.separation_arcsec
        columns[f"{name}_n_within"] = match.n_within
        columns[f"{name}_second_sep_arcsec"] = match.second_separation_arcsec
        for col in catalog.spec.carry:
            columns[f"{name}_{col}"] = taken[col]
    extra = pd.DataFrame(columns, index=part.index)
    return pd.concat([part, extra], axis=1)


def _take(frame: pd.DataFrame, rows: np.ndarray) -> dict[str, pd.Series]:
    """Rows of `frame` by position, missing (None/NA) where rows is -1, keeping integer types."""
    matched = rows >= 0
    out = {}
    picked = frame.iloc[np.where(matched, rows, 0)].reset_index(drop=True)  # catalogs are never empty
    for col in frame.columns:
        series = picked[col]
        if pd.api.types.is_integer_dtype(series.dtype) or pd.api.types.is_bool_dtype(series.dtype):
            series = series.astype("Int64" if pd.api.types.is_integer_dtype(series.dtype) else "boolean")
        elif series.dtype != object and not pd.api.types.is_float_dtype(series.dtype):
            series = series.astype(object)
        out[col] = series.where(pd.Series(matched), None if series.dtype == object else pd.NA)
    return out


@dataclass
class Merged:
    """The final training set and the numbers the summary reports."""

    frame: pd.DataFrame
    stats: dict[str, object]
    separations: dict[str, np.ndarray]  # per catalog, separations of kept matches (for the report)


def merge_parts(parts: list[pd.DataFrame], spec: TrainingSetBuildSpec) -> Merged:
    """Concatenate partition results in source order, apply one-to-one and combine labels."""
    frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    frame = frame.sort_values("_row", kind="stable").reset_index(drop=True)
    per_catalog: dict[str, dict[str, object]] = {}
    separations: dict[str, np.ndarray] = {}
    for cat in spec.catalogs:
        name = cat.name
        rows = frame[f"{name}_row"].to_numpy()
        sep = frame[f"{name}_sep_arcsec"].to_numpy()
        lost = 0
        if spec.combine.matching == "one-to-one":
            kept = one_to_one(rows, sep)
            losers = (rows >= 0) & (kept < 0)
            lost = int(losers.sum())
            if lost:
                _unmatch(frame, cat, losers)
        matched = frame[f"{name}_row"].to_numpy() >= 0
        state = frame[f"{name}_label_state"].to_numpy()
        separations[name] = frame.loc[matched, f"{name}_sep_arcsec"].to_numpy()
        labels = frame.loc[matched, f"{name}_label"]
        per_catalog[name] = {
            "matches": int(matched.sum()),
            # sources whose nearest object gives no label (none, or one the labelMap drops) ...
            "matched_unlabeled": int(((state == LABEL_NONE) | (state == LABEL_UNMAPPED)).sum()),
            # ... of which the labelMap dropped
            "matched_unmapped": int((state == LABEL_UNMAPPED).sum()),
            "ambiguous": int((frame[f"{name}_n_within"].to_numpy()[matched] > 1).sum()),
            "lost_one_to_one": lost,
            "radius_arcsec": cat.radius_arcsec,
            "labels": {str(k): int(v) for k, v in labels.value_counts().items()},
        }
    order = trust_order([c.name for c in spec.catalogs], [c.priority for c in spec.catalogs])
    combined = combine_labels(frame, order, spec.combine.policy, spec.combine.keep_unlabeled)
    for name, count in combined.conflicts_by_catalog.items():
        per_catalog[name]["conflicts"] = count
    out = combined.frame.drop(columns=["_row"] + [f"{c.name}_{k}" for c in spec.catalogs for k in ("row", "label_state")])
    classes = out["label"].value_counts()
    stats = {
        "rows_matched_any": int(len(frame) - combined.unlabeled),
        "rows_out": int(len(out)),
        "conflicts": combined.conflicts,
        "conflicts_dropped": combined.dropped_conflicts,
        "policy": spec.combine.policy,
        "matching": spec.combine.matching,
        "catalogs": per_catalog,
        "classes": {str(k): int(v) for k, v in classes.items()},
        "trust_order": order,
    }
    return Merged(_column_order(out, spec), stats, separations)


def _unmatch(frame: pd.DataFrame, cat, losers: np.ndarray) -> None:
    """Clear a catalog's match columns on rows that lost their match to a nearer object."""
    name = cat.name
    frame.loc[losers, f"{name}_row"] = -1
    frame.loc[losers, f"{name}_label_state"] = LABEL_UNMATCHED
    for col in [f"{name}_sep_arcsec", f"{name}_second_sep_arcsec"]:
        frame.loc[losers, col] = np.nan
    frame.loc[losers, f"{name}_n_within"] = 0
    for col in [f"{name}_id", f"{name}_label"] + [f"{name}_{c}" for c in cat.carry]:
        series = frame[col]
        frame[col] = series.where(~pd.Series(losers, index=frame.index), None if series.dtype == object else pd.NA)


def _column_order(frame: pd.DataFrame, spec: TrainingSetBuildSpec) -> pd.DataFrame:
    head = ["id", "ra", "dec", *spec.source.carry, "label", "label_catalog", "label_catalog_id",
            "separation_arcsec", "conflict", "n_catalogs", "candidates"]
    rest = [c for c in frame.columns if c not in head]
    return frame[head + rest]


def part_file_name(k: int, n: int) -> str:
    """File name of partition k's result inside the parts directory."""
    return f"part-{k:05d}-of-{n:05d}.parquet"
