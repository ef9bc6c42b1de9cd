"""Catalog labels as text, and label maps (pure functions on pandas Series)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from step_runtime.trainingset.errors import BuildError


def labels_as_text(values: pd.Series) -> pd.Series:
    """Labels as stripped strings (object dtype), None where missing or blank.

    Integral numbers become their integer text (1 and 1.0 -> "1"), so a label map written
    `1: RRL` matches a float column read from a file with blanks in it.
    """
    if pd.api.types.is_bool_dtype(values.dtype):
        out = values.astype(object).map(lambda v: None if pd.isna(v) else str(v))
        return out
    if pd.api.types.is_numeric_dtype(values.dtype):
        numbers = values.to_numpy(dtype=np.float64, na_value=np.nan)
        finite = np.isfinite(numbers)
        integral = finite & (numbers == np.floor(numbers))
        text = np.full(numbers.size, None, dtype=object)
        text[integral] = numbers[integral].astype(np.int64).astype(str)
        other = finite & ~integral
        text[other] = numbers[other].astype(str)
        return pd.Series(text, index=values.index, dtype=object)
    text = values.astype("string").str.strip()
    text = text.where(text.notna() & (text != ""), None)
    return text.astype(object).where(text.notna(), None)


@dataclass(frozen=True)
class MappedLabels:
    """Labels after the map: `labels` (None where a row has no final label) and why rows have none."""

    labels: pd.Series
    missing: np.ndarray     # rows with no label at all (missing or blank)
    unmapped_rows: np.ndarray  # rows whose label is not in the map and was dropped
    unmapped_values: list[str]  # a few of those labels, for the summary

    @property
    def unlabeled(self) -> int:
        """Rows with no label at all."""
        return int(self.missing.sum())

    @property
    def unmapped(self) -> int:
        """Rows whose label the map dropped."""
        return int(self.unmapped_rows.sum())


def map_labels(labels: pd.Series, label_map: dict[str, str], unmapped: str, where: str) -> MappedLabels:
    """Apply `label_map` to text labels; `unmapped` is "drop" or "keep".

    A non-empty map that matches none of the labels is an error (`where` names the catalog):
    it almost always means the wrong column or a typo in the keys.
    """
    present = labels.notna()
    missing = ~present.to_numpy(dtype=bool)
    if not label_map:
        return MappedLabels(labels, missing, np.zeros(len(labels), dtype=bool), [])
    mapped = labels.map(label_map)
    in_map = mapped.notna() & present
    if present.any() and not in_map.any():
        found = sorted(labels[present].unique().tolist())
        raise BuildError(
            f"{where}: labelMap maps nothing: its keys {sorted(label_map)[:10]} match none of the labels "
            f"found {found[:10]}{' ...' if len(found) > 10 else ''}"
        )
    missed = present & ~in_map
    missed_values = sorted(labels[missed].unique().tolist())[:10]
    if unmapped == "keep":
        out = mapped.where(in_map, labels)
        return MappedLabels(out.astype(object).where(present, None), missing, np.zeros(len(labels), dtype=bool),
                            missed_values)
    out = mapped.astype(object).where(in_map, None)
    return MappedLabels(out, missing, missed.to_numpy(dtype=bool), missed_values)
