"""Keep pyarrow from importing pandas when a build does not need it.

pyarrow looks for pandas the first time any array or scalar is made from Python values, and
imports it when installed: 0.3-0.5 s of CPU, a third of a small build. A build reads Parquet and
most text tables with pyarrow alone, so `defer_pandas_for_pyarrow` lets pyarrow's one look fail:
pyarrow then works without its pandas integration until something asks for it
(`Table.from_pandas`, `to_pandas`), which imports pandas then and turns the integration on.
The parts of a build that use pandas (the careful text reader, FITS/VOTable) go through
`Table.from_pandas`; tests run both kinds of build in fresh processes.
"""
from __future__ import annotations

import importlib.abc
import sys


class _NotYet(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "pandas":
            raise ImportError("pandas is imported when a build needs it, not before")
        return None


def defer_pandas_for_pyarrow() -> None:
    """Make pyarrow's one look for pandas come back empty, unless pandas is already imported."""
    if "pandas" in sys.modules:
        return
    import pyarrow as pa

    finder = _NotYet()
    sys.meta_path.insert(0, finder)
    try:
        pa.array([0])  # pyarrow looks for pandas here, once
    finally:
        sys.meta_path.remove(finder)
