"""Pure parts of the MongoDB sink: documents without NaN, chunked writes."""
from __future__ import annotations

import math

from step_runtime.step.sinks.mongodb import chunks, mongo_document


def test_non_finite_floats_become_null_at_any_depth() -> None:
    doc = mongo_document({"a": math.nan, "b": [1.5, math.inf, {"c": -math.inf}], "d": "x", "e": 3, "f": b"\x00"})
    assert doc == {"a": None, "b": [1.5, None, {"c": None}], "d": "x", "e": 3, "f": b"\x00"}


def test_chunks_cover_everything_in_order_and_respect_the_size() -> None:
    parts = list(chunks(list(range(120)), 50))
    assert [len(p) for p in parts] == [50, 50, 20]
    assert [x for p in parts for x in p] == list(range(120))
    assert list(chunks([], 50)) == []
