"""Read an Avro object-container file held in memory, caching each writer schema once parsed.

`fastavro.reader` parses the writer schema of every container it opens; a ZTF alert schema
takes milliseconds to parse, which alone would cap a step at a few hundred alerts per second.
Every message of a topic carries the same few schemas, so we read the container header here
(the layout is fixed by the Avro specification), parse each distinct schema once, and decode
the records with `fastavro.schemaless_reader`.
"""
from __future__ import annotations

import hashlib
import io
import json
import zlib
from typing import Any

import fastavro

MAGIC = b"Obj\x01"
_META_SCHEMA = fastavro.parse_schema({"type": "map", "values": "bytes"})
_SCHEMAS: dict[bytes, Any] = {}
_MAX_CACHED = 256


class AvroContainerError(ValueError):
    """The bytes are not a readable Avro object-container file."""


def _read_long(buf: io.BytesIO) -> int:
    """Avro zig-zag varint."""
    shift = 0
    result = 0
    while True:
        raw = buf.read(1)
        if not raw:
            raise AvroContainerError("truncated varint")
        b = raw[0]
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            break
        shift += 7
        if shift > 63:
            raise AvroContainerError("varint too long")
    return (result >> 1) ^ -(result & 1)


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


def read_container(data: bytes) -> list[dict[str, Any]]:
    """Every record of an in-memory Avro container, decoded with its own writer schema."""
    if data[:4] != MAGIC:
        raise AvroContainerError("not an Avro container (bad magic bytes)")
    buf = io.BytesIO(data)
    buf.seek(4)
    meta: dict[str, bytes] = fastavro.schemaless_reader(buf, _META_SCHEMA)  # type: ignore[assignment]
    schema_json = meta.get("avro.schema")
    if not schema_json:
        raise AvroContainerError("container header has no avro.schema")
    codec = meta.get("avro.codec", b"null").decode()
    schema = parsed_schema(schema_json)
    sync = buf.read(16)
    if len(sync) != 16:
        raise AvroContainerError("truncated header (no sync marker)")
    records: list[dict[str, Any]] = []
    while buf.tell() < len(data):
        count = _read_long(buf)
        size = _read_long(buf)
        block = buf.read(size)
        if len(block) != size:
            raise AvroContainerError("truncated data block")
        if codec == "deflate":
            block = zlib.decompress(block, -15)
        elif codec != "null":
            raise AvroContainerError(f"unsupported codec {codec!r} (expected null or deflate)")
        bbuf = io.BytesIO(block)
        for _ in range(count):
            records.append(fastavro.schemaless_reader(bbuf, schema))  # type: ignore[arg-type]
        if buf.read(16) != sync:
            raise AvroContainerError("sync marker mismatch")
    return records
