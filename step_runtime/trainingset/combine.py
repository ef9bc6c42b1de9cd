"""Combining the labels of several catalogs into one label per object (pure, vectorised)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from step_runtime.trainingset.arrays import arrow_of, null_where

POLICIES = ("priority", "agree", "drop")


def trust_order(names: list[str], priorities: list[int]) -> list[str]:
    """Catalog names, most trusted first: smaller priority first, then list order."""
    return [name for _, _, name in sorted(zip(priorities, range(len(names)), names))]


@dataclass(frozen=True)
class Combined:
    """The combined table and the counts the summary reports."""

    frame: pa.Table
    conflicts: int                    # matched objects whose catalogs disagree
    conflicts_by_catalog: dict[str, int]  # ... in which this catalog's label differs from the winner
    dropped_conflicts: int            # conflicting objects removed (policy drop)
    unlabeled: int                    # objects no catalog labeled


def _text(values: pa.ChunkedArray | pa.Array) -> pa.Array:
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    return values if pa.types.is_string(values.type) else values.cast(pa.string())


def combine_labels(frame: pa.Table, order: list[str], policy: str, keep_unlabeled: bool) -> Combined:
    """Resolve `<name>_label` columns (null where a catalog gives no label) into one label per row.

    Adds: label, label_catalog, label_catalog_id, separation_arcsec (of the winning match),
    conflict (labeling catalogs disagree), n_catalogs (how many labeled it), candidates
    ("name:label;..." in trust order). `order` is the trust order (see `trust_order`).
    policy: priority (the most trusted label wins), agree (conflicting rows keep no label),
    drop (conflicting rows are removed). Rows no catalog labeled are removed unless keep_unlabeled.
    """
    if policy not in POLICIES:
        raise ValueError(f"policy must be one of {POLICIES}, got {policy!r}")
    present = {name: frame[f"{name}_label"].is_valid().to_numpy() for name in order}
    n_catalogs = np.zeros(frame.num_rows, dtype=np.int64)
    for name in order:
        n_catalogs += present[name]
    unlabeled = int((n_catalogs == 0).sum())
    if not keep_unlabeled and unlabeled:
        # Most sources of a big build match nothing: leave them out before any text is built.
        kept = n_catalogs > 0
        frame, n_catalogs = frame.filter(arrow_of(kept)), n_catalogs[kept]
        present = {name: mask[kept] for name, mask in present.items()}
    n = frame.num_rows
    labels = {name: _text(frame[f"{name}_label"]) for name in order}
    winner = np.full(n, -1, dtype=np.int64)  # position in `order` of the catalog whose label wins
    for i, name in enumerate(order):
        winner[(winner < 0) & present[name]] = i
    label = pc.coalesce(*labels.values()) if order else pa.nulls(n, pa.string())
    label_catalog = pc.take(pa.array(order, pa.string()), arrow_of(winner, null=winner < 0))
    label_id = pc.coalesce(*[null_where(~present[name], _text(frame[f"{name}_id"])) for name in order])
    separation = np.full(n, np.nan)
    for i, name in enumerate(order):
        won = winner == i
        separation[won] = frame[f"{name}_sep_arcsec"].to_numpy()[won]

    conflict = np.zeros(n, dtype=bool)
    by_catalog: dict[str, int] = {}
    pieces = []
    for name in order:
        differs = pc.fill_null(pc.not_equal(labels[name], label), False).to_numpy(zero_copy_only=False)
        by_catalog[name] = int(differs.sum())
        conflict |= differs
        pieces.append(pc.fill_null(pc.binary_join_element_wise(";" + name, labels[name], ":"), ""))
    # ";a:RRL;b:EW" less its first ";" (pyarrow's null_handling="skip" drops all-null rows: not used)
    joined = pc.binary_join_element_wise(*pieces, "") if order else pa.nulls(n, pa.string())
    candidates = null_where(n_catalogs == 0, pc.utf8_slice_codeunits(joined, 1))

    n_conflicts = int(conflict.sum())
    if policy == "agree" and n_conflicts:
        label, label_catalog, label_id = (null_where(conflict, v) for v in (label, label_catalog, label_id))
        separation[conflict] = np.nan
    combined = {
        "label": label, "label_catalog": label_catalog, "label_catalog_id": label_id,
        "separation_arcsec": arrow_of(separation, nan_as_null=True), "conflict": arrow_of(conflict),
        "n_catalogs": arrow_of(n_catalogs), "candidates": candidates,
    }
    out = frame
    for column, values in combined.items():
        out = out.append_column(column, values)
    dropped = 0
    if policy == "drop" and n_conflicts:
        out = out.filter(arrow_of(~conflict))
        dropped = n_conflicts
    return Combined(out, n_conflicts, by_catalog, dropped, unlabeled)
