"""numpy arrays as Arrow arrays, wrapping their memory.

`pa.array(ndarray)` first asks whether the array is a numpy masked array, which imports
numpy.ma: 0.15 s of a build's CPU, for nothing. Building the Arrow array from the ndarray's
buffer says the same thing in pyarrow's public API, without the question (and without a copy).
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

_TYPES = {np.dtype(t): a for t, a in ((np.float64, pa.float64()), (np.float32, pa.float32()),
                                      (np.int64, pa.int64()), (np.int32, pa.int32()), (np.int16, pa.int16()),
                                      (np.int8, pa.int8()), (np.uint64, pa.uint64()), (np.uint32, pa.uint32()),
                                      (np.uint16, pa.uint16()), (np.uint8, pa.uint8()))}


def _bits(mask: np.ndarray) -> pa.Buffer:
    return pa.py_buffer(np.packbits(mask, bitorder="little"))


def arrow_of(values: np.ndarray, null: np.ndarray | None = None, nan_as_null: bool = False) -> pa.Array:
    """An Arrow array of a 1-d numeric, boolean or object (text) ndarray.

    `null` marks missing entries; `nan_as_null` makes float NaN missing (as pandas wrote them).
    """
    values = np.ascontiguousarray(values)
    if values.dtype.kind in "OUS":
        listed = values.tolist()
        if null is not None:
            listed = [None if missing else v for v, missing in zip(listed, null)]
        return pa.array(listed, pa.string())
    if null is None and nan_as_null and values.dtype.kind == "f":
        null = np.isnan(values)
    validity, nulls = None, 0
    if null is not None and null.any():
        validity, nulls = _bits(~null), int(null.sum())
    if values.dtype == np.bool_:
        return pa.Array.from_buffers(pa.bool_(), values.size, [validity, _bits(values)], null_count=nulls)
    return pa.Array.from_buffers(_TYPES[values.dtype], values.size, [validity, pa.py_buffer(values)],
                                 null_count=nulls)


def mask_of(values: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A boolean Arrow array as a numpy mask."""
    return values.to_numpy(zero_copy_only=False).astype(bool)


def null_where(mask: np.ndarray | pa.Array | pa.ChunkedArray, values: pa.Array | pa.ChunkedArray) -> pa.Array:
    """`values` with nulls where `mask` is true (a numpy or an Arrow mask)."""
    if isinstance(mask, np.ndarray):
        mask = arrow_of(mask)
    return pc.if_else(mask, pa.scalar(None, values.type), values)
