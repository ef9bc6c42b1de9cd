"""Writer schemas by id: Rubin's schema folders, a schema registry, and the cache in front of them.

A Confluent-framed message names its writer schema by id. `SchemaCache.resolve(ids)` answers, for
each id of a batch, the schema's self-contained JSON (named types written out where first used)
or the reason it has none (an unknown id, a schema that does not parse): such messages become
dead letters naming the id. A registry that cannot be reached raises `SchemaUnavailable`, which
the step retries without committing, as it does for a sink outage.
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any, Mapping, Protocol

from step_runtime.step.avro.container import AvroContainerError, parsed_schema

log = logging.getLogger("alertops.step")

PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})
NAMED = ("record", "error", "enum", "fixed")


# ---- named types in a parsed schema ----------------------------------------------------------

def named_types(schema: Any) -> dict[str, Any]:
    """Every named type (record, enum, fixed) of a fastavro-parsed schema, by its full name."""
    names: dict[str, Any] = {}

    def walk(t: Any) -> None:
        if isinstance(t, list):
            for b in t:
                walk(b)
        elif isinstance(t, dict):
            kind = t.get("type")
            if kind in NAMED and isinstance(t.get("name"), str):
                if t["name"] in names:
                    return
                names[t["name"]] = t
            if kind in ("record", "error"):
                for f in t.get("fields", []):
                    walk(f.get("type"))
            elif kind == "array":
                walk(t.get("items"))
            elif kind == "map":
                walk(t.get("values"))
            elif isinstance(kind, (dict, list)):
                walk(kind)

    walk(schema)
    return names


def resolve_record(schema: Any, t: Any) -> dict[str, Any] | None:
    """The record type `t` holds, seen through named references, unions (its first record
    branch) and arrays or maps of records; None when it holds no record."""
    names = named_types(schema)
    for _ in range(100):
        if isinstance(t, str):
            if t in PRIMITIVES or t not in names:
                return None
            t = names[t]
        elif isinstance(t, list):
            found = [resolve_record(schema, b) for b in t]
            return next((r for r in found if r is not None), None)
        elif isinstance(t, dict):
            kind = t.get("type")
            if kind in ("record", "error"):
                return t
            if kind == "array":
                t = t.get("items")
            elif kind == "map":
                t = t.get("values")
            elif isinstance(kind, (dict, list)) or (isinstance(kind, str) and kind not in PRIMITIVES
                                                     and kind not in NAMED):
                t = kind
            else:
                return None
        else:
            return None
    return None


def record_fields(schema: Any, t: Any) -> list[str] | None:
    """The field names of the record `t` holds (see resolve_record), or None."""
    record = resolve_record(schema, t)
    return None if record is None else [f["name"] for f in record.get("fields", [])]


# ---- named schemas written out ---------------------------------------------------------------

def _full_name(name: str, namespace: str | None) -> str:
    return name if "." in name or not namespace else f"{namespace}.{name}"


def expand_references(top: Any, named: Mapping[str, Any]) -> Any:
    """`top` with every reference to a schema of `named` (full name -> schema JSON value) replaced
    by its definition where first used, as fastavro and every Avro reader need it; later uses
    stay references. ValueError names a reference that nothing defines."""
    defined: set[str] = set()

    def walk(t: Any, namespace: str | None) -> Any:
        if isinstance(t, str):
            if t in PRIMITIVES:
                return t
            candidates = (_full_name(t, namespace), t)
            for name in candidates:
                if name in defined:
                    return name
            for name in candidates:
                if name in named:
                    return walk(named[name], namespace)
            raise ValueError(f"the schema refers to {candidates[0]!r}, which no schema file defines")
        if isinstance(t, list):
            return [walk(b, namespace) for b in t]
        if not isinstance(t, dict):
            return t
        kind = t.get("type")
        out = dict(t)
        if kind in NAMED and isinstance(t.get("name"), str):
            ns = t.get("namespace", namespace)
            full = _full_name(t["name"], ns)
            defined.add(full)
            if kind in ("record", "error") and isinstance(t.get("fields"), list):
                # a record without a fields list stays without one: parsing refuses it (container.py)
                out["fields"] = [dict(f, type=walk(f.get("type"), ns)) if isinstance(f, dict) else f
                                 for f in t["fields"]]
            return out
        if kind == "array":
            out["items"] = walk(t.get("items"), namespace)
        elif kind == "map":
            out["values"] = walk(t.get("values"), namespace)
        elif isinstance(kind, (dict, list)) or (isinstance(kind, str) and kind not in PRIMITIVES):
            out["type"] = walk(kind, namespace)
        return out

    return walk(top, None)


def schema_full_name(schema: Any) -> str | None:
    """The full name a named schema JSON value defines (None for unnamed ones)."""
    if isinstance(schema, dict) and isinstance(schema.get("name"), str):
        return _full_name(schema["name"], schema.get("namespace"))
    return None


# ---- where schemas come from -----------------------------------------------------------------

class SchemaSource(Protocol):
    """A place schemas are looked up by id."""

    description: str

    def check(self) -> None:
        """Raise SchemaUnavailable unless the source can answer lookups now."""
        ...

    def fetch(self, schema_id: int) -> bytes | None:
        """The self-contained schema JSON of `schema_id`; None when the id is unknown there.
        Raises SchemaUnavailable when the answer cannot be had now (retry later)."""
        ...


class SchemaDirectory:
    """Rubin's schema folders, for air-gapped clusters: `<root>/<M>/<m>/` holds `lsst.vM_m.alert.avsc`
    and the named schemas it references (`lsst.vM_m.diaSource.avsc` ...), the layout of the
    `lsst-alert-packet` package's `schema/` folder; schema id M*100+m (lsst.v11_1 -> 1101)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.description = f"schemaDir {root}"

    def check(self) -> None:
        return None  # a folder: nothing to connect to (its existence is checked at start)

    def folder(self, schema_id: int) -> Path:
        major, minor = divmod(schema_id, 100)
        return self.root / str(major) / str(minor)

    def fetch(self, schema_id: int) -> bytes | None:
        folder = self.folder(schema_id)
        tops = sorted(folder.glob("*.alert.avsc")) if folder.is_dir() else []
        if not tops:
            return None
        if len(tops) > 1:
            raise ValueError(f"{folder} holds {len(tops)} *.alert.avsc files, expected one")
        named: dict[str, Any] = {}
        for path in sorted(folder.glob("*.avsc")):
            try:
                value = json.loads(path.read_text())
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise ValueError(f"{path}: not a JSON schema: {exc}") from None
            name = schema_full_name(value)
            if name is not None:
                named[name] = value
        top = json.loads(tops[0].read_text())
        return json.dumps(expand_references(top, named), separators=(",", ":")).encode()


class SchemaCache:
    """Schemas by id for the step process: each id is looked up once per process; an unknown id
    is asked again after `unknown_ttl_s` (a schema registered later is then found, without a
    restart), so a stream of bad ids does not hammer the registry."""

    def __init__(self, source: SchemaSource | None, unknown_ttl_s: float = 60.0, max_cached: int = 1024) -> None:
        self.source = source
        self.unknown_ttl_s = unknown_ttl_s
        self.max_cached = max_cached
        self.known: dict[int, bytes | str] = {}
        self.unknown_since: dict[int, float] = {}

    name = "schemas"

    def open(self) -> None:
        """Check the source can answer (SchemaUnavailable while the registry cannot be reached)."""
        if self.source is not None:
            self.source.check()

    def resolve(self, ids: set[int]) -> dict[int, bytes | str]:
        """For each id, its schema JSON, or the reason it has none (a dead letter's error)."""
        out: dict[int, bytes | str] = {}
        now = time.monotonic()
        for i in sorted(ids):
            if i in self.known:
                out[i] = self.known[i]
            elif i in self.unknown_since and now - self.unknown_since[i] < self.unknown_ttl_s:
                out[i] = self._unknown(i)
            else:
                out[i] = self._lookup(i, now)
        return out

    def _unknown(self, schema_id: int) -> str:
        if self.source is None:
            return (f"schema id {schema_id}: the message is Confluent-framed but the source has no "
                    "schemaRegistry or schemaDir to resolve its schema")
        return f"schema id {schema_id} is unknown to {self.source.description}"

    def _lookup(self, schema_id: int, now: float) -> bytes | str:
        if self.source is None:
            return self._unknown(schema_id)
        try:
            schema = self.source.fetch(schema_id)
        except (ValueError, OSError) as exc:
            result: bytes | str = f"schema id {schema_id} from {self.source.description}: {exc}"
        else:
            if schema is None:
                self.unknown_since[schema_id] = now
                log.warning("unknown schema id", extra={"fields": {"schema_id": schema_id,
                                                                   "source": self.source.description}})
                return self._unknown(schema_id)
            try:
                parsed_schema(schema)
                result = schema
            except AvroContainerError as exc:
                result = f"schema id {schema_id} from {self.source.description}: {exc}"
        self.unknown_since.pop(schema_id, None)
        if len(self.known) >= self.max_cached:
            self.known.clear()
        self.known[schema_id] = result
        log.info("schema resolved", extra={"fields": {"schema_id": schema_id, "source": self.source.description,
                                                      "ok": isinstance(result, bytes)}})
        return result

