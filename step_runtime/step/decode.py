"""Decoders: message bytes -> alert dict. Each raises DecodeError on bad input, never crashes."""
from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any, Callable

import fastavro

from step_runtime.step.avro.container import read_container
from step_runtime.step.avro.projection import ProjectedZtfDecoder
from step_runtime.step.errors import DecodeError

CUTOUT_FIELDS = ("cutoutScience", "cutoutTemplate", "cutoutDifference")

# The fields the alert processors (features, model from alerts, crossmatch) and validation read.
ALERT_CANDIDATE_FIELDS = ("candid", "jd", "fid", "ra", "dec", "magpsf", "sigmapsf", "magnr", "distnr",
                          "isdiffpos", "diffmaglim")
ALERT_TOP_FIELDS = ("objectId", "candid", "schemavsn")


def project_alert(record: dict[str, Any]) -> dict[str, Any]:
    """The alert with only the fields alert processors read (candidate and history trimmed)."""
    out = {k: record[k] for k in ALERT_TOP_FIELDS if k in record}
    cand = record.get("candidate")
    if isinstance(cand, dict):
        out["candidate"] = {k: cand.get(k) for k in ALERT_CANDIDATE_FIELDS if k in cand}
    else:
        out["candidate"] = cand
    prv = record.get("prv_candidates")
    if isinstance(prv, list):
        out["prv_candidates"] = [{k: p.get(k) for k in ALERT_CANDIDATE_FIELDS if k in p} if isinstance(p, dict) else p
                                 for p in prv]
    else:
        out["prv_candidates"] = prv
    return out


def decode_ztf_avro(value: bytes) -> dict[str, Any]:
    """A ZTF alert packet: an Avro container with its own writer schema and one record.

    Cutout stamps are dropped from the record (processors never use them; the raw bytes stay
    available for the dead letter).
    """
    try:
        records = read_container(value)
    except Exception as exc:  # noqa: BLE001 - fastavro raises many types on corrupt data
        raise DecodeError(f"undecodable Avro container: {type(exc).__name__}: {exc}") from None
    if len(records) != 1:
        raise DecodeError(f"expected one alert per Avro container, found {len(records)}")
    record = records[0]
    if not isinstance(record, dict):
        raise DecodeError(f"alert record is a {type(record).__name__}, expected a record")
    for name in CUTOUT_FIELDS:
        record.pop(name, None)
    return record


def make_schemaless_avro_decoder(schema_path: Path) -> Callable[[bytes], dict[str, Any]]:
    """A decoder for schemaless Avro written with the schema in `schema_path`."""
    try:
        schema = fastavro.schema.load_schema(str(schema_path))
    except Exception as exc:  # noqa: BLE001
        raise DecodeError(f"cannot load Avro schema {schema_path}: {exc}") from None

    def decode(value: bytes) -> dict[str, Any]:
        buf = io.BytesIO(value)
        try:
            record = fastavro.schemaless_reader(buf, schema)
        except Exception as exc:  # noqa: BLE001
            raise DecodeError(f"undecodable schemaless Avro: {type(exc).__name__}: {exc}") from None
        if buf.tell() != len(value):
            raise DecodeError(f"schemaless Avro left {len(value) - buf.tell()} trailing bytes (wrong schema?)")
        if not isinstance(record, dict):
            raise DecodeError("Avro value is not a record")
        for name in CUTOUT_FIELDS:
            record.pop(name, None)
        return record

    return decode


def decode_json(value: bytes) -> dict[str, Any]:
    """A JSON object (NaN/Infinity literals accepted, as Python's json writes them)."""
    try:
        record = json.loads(value)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DecodeError(f"invalid JSON: {exc}") from None
    if not isinstance(record, dict):
        raise DecodeError(f"JSON message is a {type(record).__name__}, expected an object")
    return record


def make_decoder(fmt: str, schema_path: Path | None, project: bool = False) -> Callable[[bytes], dict[str, Any]]:
    """The decoder for a source format: ztf-avro, avro (needs schema_path) or json.

    project=True: records come out as `project_alert` makes them (the few fields the
    alert processors read); for ztf-avro the packet is then decoded straight into that projection,
    several times faster than decoding everything (see avro.codegen).
    """
    if fmt == "ztf-avro":
        decode: Callable[[bytes], dict[str, Any]] = decode_ztf_avro
    elif fmt == "avro":
        if schema_path is None:
            raise DecodeError("format avro needs schemaPath")
        decode = make_schemaless_avro_decoder(schema_path)
    elif fmt == "json":
        decode = decode_json
    else:
        raise DecodeError(f"unknown format {fmt!r} (expected ztf-avro, avro or json)")
    if not project:
        return decode
    def decode_projected(value: bytes) -> dict[str, Any]:
        return project_alert(decode(value))

    if fmt == "ztf-avro":
        from step_runtime.step.avro.projection import ProjectedZtfDecoder

        return ProjectedZtfDecoder(ALERT_TOP_FIELDS, ALERT_CANDIDATE_FIELDS, fallback=decode_projected)
    return decode_projected
