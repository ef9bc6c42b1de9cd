"""Combining the labels of several catalogs into one label per object (pure, vectorised)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

POLICIES = ("priority", "agree", "drop")


def trust_order(names: list[str], priorities: list[int]) -> list[str]:
    """Catalog names, most trusted first: smaller priority first, then list order."""
    return [name for _, _, name in sorted(zip(priorities, range(len(names)), names))]


@dataclass(frozen=True)
class Combined:
    """The combined frame and the counts the summary reports."""

    frame: pd.DataFrame
    conflicts: int                    # matched objects whose catalogs disagree
    conflicts_by_catalog: dict[str, int]  # ... in which this catalog's label differs from the winner
    dropped_conflicts: int            # conflicting objects removed (policy drop)
    unlabeled: int                    # objects no catalog matched


def combine_labels(frame: pd.DataFrame, order: list[str], policy: str, keep_unlabeled: bool) -> Combined:
    """Resolve `<name>_label` columns (None where unmatched) into one label per row.

    Adds: label, label_catalog, label_catalog_id, separation_arcsec (of the winning match),
    conflict (matching catalogs disagree), n_catalogs (how many matched), candidates
    ("name:label;..." in trust order). `order` is the trust order (see `trust_order`).
    policy: priority (the most trusted label wins), agree (conflicting rows keep no label),
    drop (conflicting rows are removed). Rows no catalog matched are removed unless keep_unlabeled.
    """
    if policy not in POLICIES:
        raise ValueError(f"policy must be one of {POLICIES}, got {policy!r}")
    n = len(frame)
    label = pd.Series([None] * n, index=frame.index, dtype=object)
    label_catalog = pd.Series([None] * n, index=frame.index, dtype=object)
    label_id = pd.Series([None] * n, index=frame.index, dtype=object)
    separation = pd.Series(np.nan, index=frame.index, dtype=np.float64)
    for name in order:
        candidate = frame[f"{name}_label"]
        take = label.isna() & candidate.notna()
        label[take] = candidate[take]
        label_catalog[take] = name
        label_id[take] = frame.loc[take, f"{name}_id"].astype(str)
        separation[take] = frame.loc[take, f"{name}_sep_arcsec"].astype(np.float64)

    conflict = pd.Series(False, index=frame.index)
    n_catalogs = pd.Series(0, index=frame.index, dtype=np.int64)
    candidates = pd.Series("", index=frame.index, dtype=object)
    by_catalog: dict[str, int] = {}
    for name in order:
        candidate = frame[f"{name}_label"]
        present = candidate.notna()
        differs = present & (candidate != label)
        by_catalog[name] = int(differs.sum())
        conflict |= differs
        n_catalogs += present.astype(np.int64)
        candidates = candidates + (";" + name + ":" + candidate.astype(str)).where(present, "")
    candidates = candidates.str.slice(1).where(n_catalogs > 0, None)

    n_conflicts = int(conflict.sum())
    if policy == "agree":
        for series in (label, label_catalog, label_id):
            series[conflict] = None
        separation[conflict] = np.nan
    combined = pd.DataFrame({
        "label": label, "label_catalog": label_catalog, "label_catalog_id": label_id,
        "separation_arcsec": separation, "conflict": conflict, "n_catalogs": n_catalogs,
        "candidates": candidates,
    })
    out = pd.concat([frame, combined], axis=1)
    keep = pd.Series(True, index=frame.index)
    dropped = 0
    if policy == "drop":
        keep &= ~conflict
        dropped = n_conflicts
    unlabeled = int((n_catalogs == 0).sum())
    if not keep_unlabeled:
        keep &= n_catalogs > 0
    return Combined(out[keep].reset_index(drop=True), n_conflicts, by_catalog, dropped, unlabeled)
