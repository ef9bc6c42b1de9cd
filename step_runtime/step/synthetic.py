"""ZTF-shaped alerts synthesised from real packets, for integration tests and benchmarks.

Each synthetic alert is a real packet (its writer schema, history and cutouts kept) with a new
objectId, candid, and its positions moved by a small offset, re-encoded as an Avro container.
"""
from __future__ import annotations

import copy
import io
from pathlib import Path
from typing import Any, Iterator

import fastavro

from step_runtime.step.avro.codegen import zigzag


def synthetic_oid(i: int) -> str:
    """A ZTF-shaped object id (ZTF + year 99 + 7 letters), unique for i < 26**7."""
    letters = []
    for _ in range(7):
        i, r = divmod(i, 26)
        letters.append(chr(ord("a") + r))
    return "ZTF99" + "".join(reversed(letters))


class PacketTemplate:
    """One real packet: its decoded record and a container header to re-encode variants quickly."""

    def __init__(self, path: Path) -> None:
        data = path.read_bytes()
        reader = fastavro.reader(io.BytesIO(data))
        self.schema = fastavro.parse_schema(reader.writer_schema)
        self.record: dict[str, Any] = next(reader)
        head = io.BytesIO()
        fastavro.writer(head, self.schema, [])  # header only: magic, metadata, sync marker
        self.header = head.getvalue()
        self.sync = self.header[-16:]

    def encode(self, record: dict[str, Any]) -> bytes:
        """An Avro container holding `record` with this packet's writer schema."""
        body = io.BytesIO()
        fastavro.schemaless_writer(body, self.schema, record)
        data = body.getvalue()
        return self.header + zigzag(1) + zigzag(len(data)) + data + self.sync

    def variant(self, i: int, candid_base: int = 3_000_000_000_000_000_000) -> tuple[str, int, bytes]:
        """(objectId, candid, packet) of synthetic alert number i."""
        rec = copy.copy(self.record)
        cand = dict(rec["candidate"])
        oid = synthetic_oid(i)
        candid = candid_base + i
        dra, ddec = ((i % 997) - 498) * 1e-4, ((i % 991) - 495) * 1e-4  # <0.05 deg
        cand["ra"] = (cand["ra"] + dra) % 360.0
        cand["dec"] = max(-90.0, min(90.0, cand["dec"] + ddec))
        cand["candid"] = candid
        rec["candidate"] = cand
        rec["objectId"] = oid
        rec["candid"] = candid
        return oid, candid, self.encode(rec)


def templates(folder: Path) -> list[PacketTemplate]:
    """Templates of every valid real packet in `folder` (the prototype and corrupt ones left out)."""
    return [PacketTemplate(p) for p in sorted(folder.glob("[0-9]*.avro")) if "proto" not in p.name]


def synthetic_alerts(folder: Path, n: int, start: int = 0) -> Iterator[tuple[str, int, bytes]]:
    """n synthetic alerts cycling over the real packets: (objectId, candid, packet bytes)."""
    temps = templates(folder)
    for i in range(start, start + n):
        yield temps[i % len(temps)].variant(i)
