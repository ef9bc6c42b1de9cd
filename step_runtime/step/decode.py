"""Decoders: message bytes -> the records it holds. Each raises DecodeError on bad input, never crashes.

The source format says what a message is: `ztf-avro` and `lsst-avro` are alert packets of a survey
(Avro containers, or Confluent-framed values whose schema id the step resolves per batch); `avro`
is schemaless Avro written with one schema file; `json` one JSON object. A step whose processor
reads alerts decodes them into the alert model, building only the fields it declared
(avro.decoders.AlertDecoder); the python processor and message formats get whole records.
"""
from __future__ import annotations

import io
import json
import logging
from pathlib import Path
from typing import Any, Callable

import fastavro

from step_runtime.step.alert_model import ALL_FIELDS, LSST, ZTF, Survey
from step_runtime.step.avro.codegen import value_checker
from step_runtime.step.avro.decoders import NO_SCHEMAS, AlertDecoder, RawDecoder, Schemas
from step_runtime.step.errors import DecodeError
from step_runtime.step.validate import AlertGate, Rejected, screen

ALERT_FORMATS: dict[str, Survey] = {"ztf-avro": ZTF, "lsst-avro": LSST}
Decoder = Callable[[bytes, Schemas], list[dict[str, Any]]]
log = logging.getLogger("alertops.step")


def survey_of(fmt: str) -> Survey | None:
    """The survey whose alert packets a source format carries (None for message formats)."""
    return ALERT_FORMATS.get(fmt)


def make_schemaless_avro_decoder(schema_path: Path) -> Decoder:
    """A decoder for schemaless Avro written with the schema in `schema_path` (one record per message)."""
    try:
        schema = fastavro.schema.load_schema(str(schema_path))
    except Exception as exc:  # noqa: BLE001 - any problem with the file is the user's to fix
        raise DecodeError(f"cannot load Avro schema {schema_path}: {exc}") from None
    check = value_checker(_schema_json(schema))

    def decode(value: bytes, schemas: Schemas = NO_SCHEMAS) -> list[dict[str, Any]]:
        buf = io.BytesIO(value)
        try:
            if check is not None:  # bounded: refuse impossible lengths and counts before fastavro
                check(value, 0)
            record = fastavro.schemaless_reader(buf, schema, None)
        except DecodeError as exc:
            raise DecodeError(f"undecodable schemaless Avro: {exc}") from None
        except Exception as exc:  # noqa: BLE001 - fastavro raises many types on corrupt data
            raise DecodeError(f"undecodable schemaless Avro: {type(exc).__name__}: {exc}") from None
        if buf.tell() != len(value):
            raise DecodeError(f"schemaless Avro left {len(value) - buf.tell()} trailing bytes (wrong schema?)")
        if not isinstance(record, dict):
            raise DecodeError("Avro value is not a record")
        return [record]

    return decode


def _schema_json(schema: Any) -> bytes:
    """A parsed schema as JSON, for the bounded walk (fastavro's private keys left out)."""
    def clean(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: clean(v) for k, v in node.items() if not k.startswith("__")}
        if isinstance(node, list):
            return [clean(v) for v in node]
        return node

    return json.dumps(clean(schema)).encode()


def decode_json(value: bytes, schemas: Schemas = NO_SCHEMAS) -> list[dict[str, Any]]:
    """A JSON object (NaN/Infinity literals accepted, as Python's json writes them)."""
    try:
        record = json.loads(value)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DecodeError(f"invalid JSON: {exc}") from None
    if not isinstance(record, dict):
        raise DecodeError(f"JSON message is a {type(record).__name__}, expected an object")
    return [record]


def make_decoder(fmt: str, schema_path: Path | None, fields: frozenset[str] | None) -> Decoder:
    """The decoder for a source format: `fields` (alert-model paths) for alerts projected to what
    the processor reads; None for whole records.

    Raises ValueError for a combination that cannot work (alerts from a message format).
    """
    survey = survey_of(fmt)
    if survey is not None:
        if fields is None:
            return RawDecoder()
        return AlertDecoder(survey, fields)
    if fields is not None:
        raise ValueError(f"spec.source: format {fmt} carries messages, not alerts; the processor reads "
                         f"alerts: use format ztf-avro or lsst-avro")
    if fmt == "avro":
        if schema_path is None:
            raise DecodeError("format avro needs schemaPath")
        return make_schemaless_avro_decoder(schema_path)
    if fmt == "json":
        return decode_json
    raise DecodeError(f"unknown format {fmt!r} (expected ztf-avro, lsst-avro, avro or json)")


_ALERTS: dict[str, Decoder] = {}


def alerts_of(value: bytes, fmt: str = "ztf-avro", schemas: Schemas = NO_SCHEMAS) -> list[dict[str, Any]]:
    """Every alert of one packet, with every field of the alert model (for scripts and tests; a
    step decodes only the fields its processor reads)."""
    if fmt not in _ALERTS:
        _ALERTS[fmt] = make_decoder(fmt, None, ALL_FIELDS)
    return _ALERTS[fmt](value, schemas)


def inline_decode_many(decode: Decoder, gate: AlertGate | None = None,
                       prepare: Callable[[list[dict[str, Any]]], list[dict[str, Any]]] | None = None
                       ) -> Callable[[list[bytes], Schemas], list[Any]]:
    """decode_many where it is called (the step process, or a decode worker): for each message its
    DecodeError, or its records, each screened by the gate (validation and alert filter: a
    `Rejected` in its place) and then, all the kept records of the call at once, made by the
    processor's `prepare` into what its `process` needs.

    Gate and prepare run here so that a decode worker does that per-alert work too and sends
    back only what the step process needs (a few identifiers and features, not whole light
    curves). A `prepare` that raises leaves its records as decoded: `process` prepares them again
    in the step process, where a failing record is isolated and dead-lettered.
    """

    def decode_many(values: list[bytes], schemas: Schemas = NO_SCHEMAS) -> list[Any]:
        out: list[Any] = []
        for v in values:
            try:
                records = decode(v, schemas)
            except DecodeError as exc:
                out.append(exc)
                continue
            out.append(records if gate is None else [screen(gate, r) for r in records])
        if prepare is not None:
            _prepare_in_place(out, prepare)
        return out

    return decode_many


def _prepare_in_place(decoded: list[Any], prepare: Callable[[list[dict[str, Any]]], list[dict[str, Any]]]) -> None:
    """Replace every kept record of `decoded` by what `prepare` makes of it (all in one call)."""
    at = [(i, j) for i, recs in enumerate(decoded) if not isinstance(recs, DecodeError)
          for j, r in enumerate(recs) if not isinstance(r, Rejected)]
    if not at:
        return
    try:
        prepared = prepare([decoded[i][j] for i, j in at])
    except Exception as exc:  # noqa: BLE001 - process() prepares these again, record by record if need be
        log.debug("prepare failed where decoded; the step process retries it", extra={"fields": {"error": str(exc)}})
        return
    if len(prepared) != len(at):  # a processor bug: process() prepares them and reports it
        log.warning("prepare returned %d records for %d; the step process prepares them", len(prepared), len(at))
        return
    for (i, j), rec in zip(at, prepared):
        decoded[i][j] = rec
