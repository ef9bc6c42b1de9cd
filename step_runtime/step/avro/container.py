"""Writer schemas of Avro object-container files, checked and parsed once each.

`fastavro.reader` parses the writer schema of every container it opens; a ZTF alert schema
takes milliseconds to parse, which alone would cap a step at a few hundred alerts per second.
Every message of a topic carries the same few schemas, so each distinct schema is parsed once
here; the containers themselves are walked by `decoders.FramedDecoder`.
"""
from __future__ import annotations

import hashlib
import json
from typing import Any

import fastavro

_SCHEMAS: dict[bytes, Any] = {}
_MAX_CACHED = 256


class AvroContainerError(ValueError):
    """The bytes are not a readable Avro object-container file."""


def _check_records(node: Any, depth: int = 0) -> None:
    """Every record of the schema declares its fields (the Avro specification requires it).

    fastavro accepts a record without "fields" and decodes it as an empty record: one corrupted
    byte in a packet's schema ("fields" -> "fieldr") then turns the history into an array of
    empty records whose block counts are read from arbitrary bytes, and fastavro builds lists
    of millions of dicts until the process runs out of memory.
    """
    if depth > 100:
        raise AvroContainerError("invalid writer schema: nested more than 100 levels deep")
    if isinstance(node, list):
        for item in node:
            _check_records(item, depth + 1)
    elif isinstance(node, dict):
        kind = node.get("type")
        if kind in ("record", "error"):
            fields = node.get("fields")
            if not isinstance(fields, list):
                raise AvroContainerError(f"invalid writer schema: record {node.get('name')!r} has no fields list")
            for f in fields:
                _check_records(f.get("type") if isinstance(f, dict) else f, depth + 1)
        elif kind == "array":
            _check_records(node.get("items"), depth + 1)
        elif kind == "map":
            _check_records(node.get("values"), depth + 1)
        elif isinstance(kind, (dict, list)):
            _check_records(kind, depth + 1)


def parsed_schema(schema_json: bytes) -> Any:
    """The fastavro-parsed form of a writer schema, parsed at most once per distinct schema."""
    key = hashlib.sha1(schema_json).digest()
    cached = _SCHEMAS.get(key)
    if cached is None:
        try:
            raw = json.loads(schema_json)
        except Exception as exc:  # noqa: BLE001 - any schema problem is a bad message
            raise AvroContainerError(f"invalid writer schema: {exc}") from None
        _check_records(raw)
        try:
            cached = fastavro.parse_schema(raw)
        except Exception as exc:  # noqa: BLE001 - any schema problem is a bad message
            raise AvroContainerError(f"invalid writer schema: {exc}") from None
        if len(_SCHEMAS) >= _MAX_CACHED:
            _SCHEMAS.clear()
        _SCHEMAS[key] = cached
    return cached

