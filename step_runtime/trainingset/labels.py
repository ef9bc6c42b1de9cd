"""Catalog labels as text, and label maps (pure functions on Arrow arrays)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from step_runtime.trainingset.arrays import arrow_of, mask_of, null_where
from step_runtime.trainingset.errors import BuildError


def as_array(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    """One contiguous Arrow array (chunks combined, dictionaries decoded)."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks() if values.num_chunks != 1 else values.chunk(0)
    if pa.types.is_dictionary(values.type):
        values = values.cast(values.type.value_type)
    return values


def labels_as_text(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Labels as stripped strings, null where missing or blank.

    Integral numbers become their integer text (1 and 1.0 -> "1"), so a label map written
    `1: RRL` matches a float column read from a file with blanks in it; booleans read True/False.
    """
    values = as_array(values)
    kind = values.type
    if pa.types.is_boolean(kind):
        return pc.if_else(values, "True", "False")
    if pa.types.is_integer(kind):
        return values.cast(pa.string())
    if pa.types.is_floating(kind) or pa.types.is_decimal(kind):
        numbers = values.cast(pa.float64()).to_numpy(zero_copy_only=False)
        finite = np.isfinite(numbers)
        integral = finite & (numbers == np.floor(numbers))
        text = np.full(numbers.size, None, dtype=object)
        text[integral] = numbers[integral].astype(np.int64).astype(str)
        other = finite & ~integral
        text[other] = numbers[other].astype(str)
        return arrow_of(text)
    if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
        values = values.cast(pa.string())
    text = pc.utf8_trim_whitespace(values)
    return null_where(pc.equal(pc.utf8_length(text), 0), text)


@dataclass(frozen=True)
class MappedLabels:
    """Labels after the map: `labels` (null where a row has no final label) and why rows have none."""

    labels: pa.Array
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


def map_labels(labels: pa.Array, label_map: dict[str, str], unmapped: str, where: str) -> MappedLabels:
    """Apply `label_map` to text labels; `unmapped` is "drop" or "keep".

    A non-empty map that matches none of the labels is an error (`where` names the catalog):
    it almost always means the wrong column or a typo in the keys.
    """
    labels = as_array(labels)
    present = mask_of(labels.is_valid())
    missing = ~present
    none_dropped = np.zeros(len(labels), dtype=bool)
    if not label_map:
        return MappedLabels(labels, missing, none_dropped, [])
    keys = pa.array([str(k) for k in label_map], labels.type)
    targets = pa.array([str(v) for v in label_map.values()], pa.string())
    position = pc.index_in(labels, value_set=keys)
    in_map = mask_of(position.is_valid())
    if present.any() and not in_map.any():
        found = sorted(pc.unique(labels.filter(arrow_of(present))).to_pylist())
        raise BuildError(
            f"{where}: labelMap maps nothing: its keys {sorted(label_map)[:10]} match none of the labels "
            f"found {found[:10]}{' ...' if len(found) > 10 else ''}"
        )
    missed = present & ~in_map
    missed_values = sorted(pc.unique(labels.filter(arrow_of(missed))).to_pylist())[:10]
    mapped = pc.take(targets, position)
    if unmapped == "keep":
        return MappedLabels(pc.coalesce(mapped, labels.cast(pa.string())), missing, none_dropped, missed_values)
    return MappedLabels(mapped, missing, missed, missed_values)
