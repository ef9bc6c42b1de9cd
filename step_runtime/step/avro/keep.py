"""What a projected decode keeps: a tree of fields to keep, renamed and converted, and its meaning.

A `Projection` says, for one record, which of its fields to keep, under which output key, with
which conversion, and, for a field holding records (a record, an array or map of records, or a
union of those with null), what to keep inside them. The generated decoders (codegen) build
exactly `project_value(fastavro_value, projection)` without ever building the rest; this module's
`project_value` is that meaning written plainly, used where no decoder was generated and in tests.

Conversions are Python expression templates over one value `{v}` (None in, None out), so that the
generated code can inline them and this module can evaluate the very same text.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable


@dataclass(frozen=True)
class Keep:
    """How one field is kept: its output key, an optional conversion, and what to keep inside it."""

    out: str
    convert: str | None = None          # expression template over "{v}", e.g. "None if {v} is None else {v} - 1"
    inner: "Projection | None" = None   # for a field holding records: the fields kept in each record


@dataclass(frozen=True)
class Projection:
    """The fields kept of a record: writer field name -> Keep, in output order, then constant keys.

    A kept field that the writer schema lacks comes out as None, so every output has every key.
    """

    keep: tuple[tuple[str, Keep], ...]
    constants: tuple[tuple[str, Any], ...] = ()

    def __post_init__(self) -> None:
        keys = [k.out for _, k in self.keep] + [name for name, _ in self.constants]
        if len(set(keys)) != len(keys):
            raise ValueError(f"projection: repeated output keys in {keys}")
        names = [name for name, _ in self.keep]
        if len(set(names)) != len(names):
            raise ValueError(f"projection: a field kept twice in {names}")


# What conversion templates may call (the generated code sees the same names as builtins).
_BUILTINS = {"str": str, "float": float, "int": int, "abs": abs}


@lru_cache(maxsize=256)
def converter(template: str) -> Callable[[Any], Any]:
    """The function a conversion template stands for (the generated code inlines the same text)."""
    code = compile("lambda v: " + template.format(v="v"), "<conversion>", "eval")
    return eval(code, {"__builtins__": _BUILTINS})  # noqa: S307 - templates are constants of this package


def project_value(value: Any, projection: Projection) -> Any:
    """`value` as a projected decode gives it: a dict (a record, or an Avro map, which fastavro also
    gives as a dict) projected as a record, a list item by item, anything else unchanged."""
    if isinstance(value, list):
        return [project_value(v, projection) for v in value]
    if isinstance(value, dict):
        return project_record(value, projection)
    return value


def project_record(record: dict[str, Any], projection: Projection) -> dict[str, Any]:
    """One record projected: kept fields renamed, converted and projected inside; constants added."""
    out: dict[str, Any] = {}
    for name, k in projection.keep:
        v = record.get(name)
        if k.inner is not None:
            v = project_value(v, k.inner)
        if k.convert is not None:
            v = converter(k.convert)(v)
        out[k.out] = v
    for name, value in projection.constants:
        out[name] = value
    return out
