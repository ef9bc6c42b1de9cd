"""Alerts synthesised for integration tests and benchmarks.

ZTF: each synthetic alert is a real packet (its writer schema, history and cutouts kept) with a
new objectId, candid, and its positions moved by a small offset, re-encoded as an Avro container.
Rubin/LSST: alerts made from a writer schema with every field filled (`LsstAlerts`), as real
LSSTCam alerts are, with a light curve over ugrizy and cutouts of real size.
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
        self.record: dict[str, Any] = next(reader)  # type: ignore[arg-type]
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


# ---- Rubin/LSST -------------------------------------------------------------------------------

LSST_BANDS = "ugrizy"
# Share of visits per band in the light curves made up here (g and r dominate, as in Rubin's
# wide-fast-deep survey, so the demo model's g/r features are defined).
_BAND_WEIGHTS = (0.05, 0.3, 0.3, 0.15, 0.1, 0.1)


def _example(t: Any, names: dict[str, Any], field: str, i: int) -> Any:
    """A plausible non-null value of type `t` (every nullable field filled, as in real alerts)."""
    if isinstance(t, str):
        if t in names:
            return _example(names[t], names, field, i)
        return {"null": None, "boolean": False, "int": 7 + i % 5, "long": 1_000_000 + i,
                "float": 0.25 + (i % 7) * 0.125, "double": 1.5 + (i % 11) * 0.25, "string": "x1",
                "bytes": b""}[t]
    if isinstance(t, list):
        branches = [b for b in t if b != "null"]
        return _example(branches[0], names, field, i) if branches else None
    kind = t.get("type")
    if kind in ("record", "error"):
        return {f["name"]: _example(f["type"], names, f["name"], i + k) for k, f in enumerate(t["fields"])}
    if kind == "array":
        return []
    if kind == "map":
        return {}
    if kind == "enum":
        return t["symbols"][0]
    if kind == "fixed":
        return bytes(t["size"])
    return _example(kind, names, field, i)


def real_cutouts(packet: Path, schema_dir: Path) -> list[bytes]:
    """The three FITS cutouts (difference, science, template) of a real Rubin packet."""
    from step_runtime.step.avro.decoders import RawDecoder
    from step_runtime.step.avro.framing import schema_ids
    from step_runtime.step.avro.schemas import SchemaCache, SchemaDirectory

    value = packet.read_bytes()
    record = RawDecoder()(value, SchemaCache(SchemaDirectory(schema_dir)).resolve(schema_ids([value])))[0]
    return [record[k] for k in ("cutoutDifference", "cutoutScience", "cutoutTemplate")]


class LsstAlerts:
    """Realistic Rubin alerts made from a writer schema (default 11.1): every field filled, a light
    curve of `n_previous` diaSources and `n_forced` forced sources over ugrizy, and three cutouts
    (by default random bytes of a real stamp's size, 34,560 bytes: 12 FITS blocks), each packet
    in the Confluent wire format with the schema's id."""

    TEMPLATES = 64

    def __init__(self, schema_dir: Path, schema_id: int = 1101, n_previous: int = 30, n_forced: int = 30,
                 cutouts: list[bytes] | None = None) -> None:
        import json

        import numpy as np

        from step_runtime.step.avro.schemas import SchemaCache, SchemaDirectory, named_types

        found = SchemaCache(SchemaDirectory(schema_dir)).resolve({schema_id})[schema_id]
        if isinstance(found, str):
            raise ValueError(found)
        self.schema_id = schema_id
        self.schema = fastavro.parse_schema(json.loads(found))
        names = named_types(self.schema)
        short = {n.rsplit(".", 1)[-1]: n for n in names}
        self.source = _example(short["diaSource"], names, "diaSource", 0)
        self.forced = _example(short["diaForcedSource"], names, "diaForcedSource", 0)
        self.object = _example(short["diaObject"], names, "diaObject", 0)
        self.n_previous = n_previous
        self.n_forced = n_forced
        self._encoded: dict[int, bytes] = {}
        noise = np.random.default_rng(20261130)
        self.cutouts = cutouts or [bytes(noise.integers(0, 256, 34_560, dtype="uint8")) for _ in range(3)]

    def record(self, i: int) -> dict[str, Any]:
        """Alert number i: diaObjectId 1e15 + i, diaSourceIds from 2e15 + 100 i."""
        import numpy as np

        rng = np.random.default_rng(i)  # the same alert every time
        oid = 1_000_000_000_000_000 + i
        ra = (150.0 + (i % 997) * 1e-3) % 360.0
        dec = 2.0 + ((i % 991) - 495) * 1e-3
        period = 0.3 + (i % 17) * 0.11
        n = self.n_previous + 1
        times = 61000.0 + np.cumsum(rng.uniform(0.3, 1.7, n))
        bands = rng.choice(list(LSST_BANDS), size=n, p=_BAND_WEIGHTS)
        flux = 6000.0 + 2500.0 * np.sin(2 * np.pi * times / period)
        sources = []
        for k in range(n):
            src = dict(self.source)
            src.update(diaSourceId=2_000_000_000_000_000 + 100 * i + k, diaObjectId=oid, ssObjectId=None,
                       ra=ra, dec=dec, midpointMjdTai=float(times[k]), band=str(bands[k]),
                       psfFlux=float(flux[k]), psfFluxErr=float(0.02 * flux[k] + 50.0), isNegative=False,
                       reliability=0.9, snr=float(flux[k] / 80.0))
            sources.append(src)
        forced = []
        ftimes = times[-1] - np.arange(self.n_forced)[::-1] * 1.1
        for k in range(self.n_forced):
            fs = dict(self.forced)
            fs.update(diaForcedSourceId=3_000_000_000_000_000 + 100 * i + k, diaObjectId=oid, ra=ra, dec=dec,
                      midpointMjdTai=float(ftimes[k]), band=LSST_BANDS[k % 6],
                      psfFlux=float(6000.0 + 2500.0 * np.sin(2 * np.pi * ftimes[k] / period)), psfFluxErr=60.0)
            forced.append(fs)
        obj = dict(self.object)
        obj.update(diaObjectId=oid, ra=ra, dec=dec)
        return {"diaSourceId": sources[-1]["diaSourceId"], "observation_reason": "wfd", "target_name": "lsst",
                "diaSource": sources[-1], "prvDiaSources": sources[:-1], "prvDiaForcedSources": forced,
                "diaObject": obj, "ssSource": None, "mpc_orbits": None, "cutoutDifference": self.cutouts[0],
                "cutoutScience": self.cutouts[1], "cutoutTemplate": self.cutouts[2]}

    def encode(self, record: dict[str, Any]) -> bytes:
        """A record in the Confluent wire format with this schema's id."""
        from step_runtime.step.avro.framing import confluent_frame

        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, self.schema, record)
        return confluent_frame(self.schema_id, buf.getvalue())

    def packet(self, i: int) -> tuple[str, int, bytes]:
        """(oid, diaSourceId, Confluent-framed packet) of alert number i.

        Encoding 120 kB with fastavro takes milliseconds, so alerts are made from TEMPLATES encoded
        ones, whose object id and triggering diaSourceId are replaced in the bytes: both are 8-byte
        varints for every i below 1e14, so the packet keeps its layout.
        """
        t = i % self.TEMPLATES
        if t not in self._encoded:
            self._encoded[t] = self.encode(self.record(t))
        oid, sid = 1_000_000_000_000_000 + i, 2_000_000_000_000_000 + 100 * i + self.n_previous
        value = self._encoded[t].replace(zigzag(1_000_000_000_000_000 + t), zigzag(oid))
        value = value.replace(zigzag(2_000_000_000_000_000 + 100 * t + self.n_previous), zigzag(sid))
        return str(oid), sid, value
