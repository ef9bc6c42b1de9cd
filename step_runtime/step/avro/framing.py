"""The Confluent wire format, which Rubin's alert stream uses: byte 0 is a magic 0, bytes 1-4 a
big-endian schema id, then the Avro value without its schema (schemaless). Rubin numbers its
schemas major*100+minor: lsst.v11_1.alert is id 1101."""
from __future__ import annotations

import struct
from typing import Iterable

from step_runtime.step.errors import DecodeError

CONFLUENT_MAGIC = 0
HEADER_SIZE = 5
CONTAINER_MAGIC = b"Obj\x01"  # an Avro object-container file carries its own schema instead
_ID = struct.Struct(">I")


def is_confluent(value: bytes) -> bool:
    """True when `value` is framed by the Confluent wire format (it may still be too short)."""
    return value[:1] == b"\x00"


def confluent_header(value: bytes) -> int:
    """The schema id of a Confluent-framed message; DecodeError when the frame is not there."""
    if len(value) < HEADER_SIZE:
        raise DecodeError(f"Confluent framing: {len(value)} bytes, shorter than the 5-byte header "
                          "(magic byte 0 and a 4-byte schema id)")
    if value[0] != CONFLUENT_MAGIC:
        raise DecodeError(f"Confluent framing: magic byte is {value[0]:#04x}, expected 0x00")
    return int(_ID.unpack_from(value, 1)[0])


def confluent_frame(schema_id: int, payload: bytes) -> bytes:
    """`payload` (schemaless Avro) framed with `schema_id`."""
    if not 0 <= schema_id < 2 ** 32:
        raise ValueError(f"schema id {schema_id} does not fit the 4-byte Confluent header")
    return bytes([CONFLUENT_MAGIC]) + _ID.pack(schema_id) + payload


def schema_ids(values: Iterable[bytes]) -> set[int]:
    """The schema ids of the well-framed Confluent messages among `values` (others are left to
    the decoder, which dead-letters them with the reason)."""
    ids = set()
    for v in values:
        if len(v) >= HEADER_SIZE and v[0] == CONFLUENT_MAGIC:
            ids.add(int(_ID.unpack_from(v, 1)[0]))
    return ids
