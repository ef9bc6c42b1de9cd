"""Decoders of Avro messages: every record a message holds, through a reader made once per writer schema.

A message is an Avro object-container file (its writer schema in its header, any number of
records: a ZTF packet, or the AMPEL sample of 10 Rubin alerts), or a Confluent-framed value (magic
byte 0, a 4-byte schema id, the value without its schema: Rubin's Kafka stream) whose schema the
caller resolved for the batch (`schemas`: id -> schema JSON, or the reason there is none).

`AlertDecoder` gives the alert model (alert_model) of a survey, built by the generated projected
reader (codegen) with only the fields the step reads; `RawDecoder` gives whole records as fastavro
decodes them (cutouts included), after codegen's bounded walk has checked every length and count.
Every failure is a `DecodeError`, whose message becomes the dead letter's error.
"""
from __future__ import annotations

import io
import struct
import zlib
from typing import Any, Mapping

import fastavro

from step_runtime.step import alert_model
from step_runtime.step.alert_model import Survey
from step_runtime.step.avro.codegen import _MAX_CACHED, _block, _long, _span, record_reader, value_checker
from step_runtime.step.avro.codegen import RecordReader as Reader
from step_runtime.step.avro.container import parsed_schema
from step_runtime.step.avro.framing import CONTAINER_MAGIC, confluent_header, is_confluent
from step_runtime.step.errors import DecodeError

Schemas = Mapping[int, "bytes | str"]
NO_SCHEMAS: Schemas = {}
# A deflate block of an alert container is tens of kilobytes; a block that inflates past this is a
# decompression bomb, refused before it is built.
MAX_INFLATED_BLOCK = 64 * 1024 * 1024


class FramedDecoder:
    """message bytes -> the list of records it holds; subclasses say how one record is read."""

    def __init__(self) -> None:
        # schema length -> [(schema JSON, reader)]: each packet's header schema is a new bytes
        # object, so comparing it with the few known ones of its length is cheaper than hashing
        # its 20 kB for a dict lookup
        self._by_span: dict[int, list[tuple[bytes, Reader]]] = {}
        self._by_id: dict[int, tuple[bytes, Reader]] = {}
        self._cached = 0

    def make_reader(self, schema_json: bytes) -> Reader:
        """The reader of one record written with `schema_json` (raise DecodeError if none can be)."""
        raise NotImplementedError

    def _remember(self) -> None:
        self._cached += 1
        if self._cached > _MAX_CACHED:
            self._by_span.clear()
            self._by_id.clear()
            self._cached = 1

    def reader_in_header(self, data: bytes, start: int, end: int) -> Reader:
        """The reader of the writer schema at data[start:end] (made on first sight)."""
        # As bytes: comparing a memoryview with bytes goes value by value (55 us for a 20 kB
        # ZTF schema), a copy and a bytes comparison take about 1 us.
        schema_json = bytes(data[start:end])
        for known, reader in self._by_span.get(end - start, ()):
            if known == schema_json:
                return reader
        reader = self.make_reader(schema_json)
        self._remember()
        self._by_span.setdefault(end - start, []).append((schema_json, reader))
        return reader

    def reader_by_id(self, schema_id: int, schema_json: bytes) -> Reader:
        """The reader of schema `schema_id` (made on first sight, or when its JSON changed)."""
        known = self._by_id.get(schema_id)
        if known is not None and known[0] == schema_json:
            return known[1]
        reader = self.make_reader(schema_json)
        self._remember()
        self._by_id[schema_id] = (schema_json, reader)
        return reader

    def __call__(self, value: bytes, schemas: Schemas = NO_SCHEMAS) -> list[Any]:
        """Every record of the message; DecodeError (never another exception) on bad input."""
        what = "undecodable Avro (Confluent wire format)" if is_confluent(value) else "undecodable Avro container"
        try:
            return self.records(value, schemas)
        except DecodeError as exc:
            raise DecodeError(f"{what}: {exc}") from None
        except (IndexError, struct.error):  # a read past the end of the buffer
            raise DecodeError(f"{what}: truncated (a value runs past the end of the "
                              f"{len(value)}-byte message)") from None
        except UnicodeDecodeError as exc:
            raise DecodeError(f"{what}: invalid UTF-8 in a string: {exc}") from None
        except (zlib.error, RecursionError, MemoryError, OverflowError, TypeError, ValueError, EOFError) as exc:
            raise DecodeError(f"{what}: {type(exc).__name__}: {exc}") from None

    def records(self, value: bytes, schemas: Schemas) -> list[Any]:
        if value[:4] == CONTAINER_MAGIC:
            return self.container(value)
        if is_confluent(value):
            schema_id = confluent_header(value)
            schema = schemas.get(schema_id)
            if schema is None:
                raise DecodeError(f"schema id {schema_id}: no schema was resolved for it (the source has no "
                                  "schemaRegistry or schemaDir)")
            if isinstance(schema, str):
                raise DecodeError(schema)
            record, pos = self.reader_by_id(schema_id, schema)(value, 5)
            if pos != len(value):
                raise DecodeError(f"schema id {schema_id}: the value ends at byte {pos} of the {len(value)}-byte "
                                  "message (written with another schema?)")
            return [record]
        raise DecodeError(f"not an Avro container (bad magic bytes {bytes(value[:4])!r}) nor Confluent-framed "
                          "(magic byte 0)")

    def container(self, data: bytes) -> list[Any]:
        """Every record of an Avro object-container file held in memory."""
        schema_span, codec, pos = _header(data)
        if schema_span is None:
            raise DecodeError("container header has no avro.schema")
        reader = self.reader_in_header(data, *schema_span)
        sync_at = pos - 16
        records: list[Any] = []
        n = len(data)
        while pos < n:
            count, pos = _long(data, pos)
            size, pos = _long(data, pos)
            if size < 0 or pos + size > n:
                raise DecodeError(f"data block of {size} bytes at byte {pos} does not fit the {n}-byte packet")
            end = pos + size
            if codec == b"null":
                block, at, stop = data, pos, end
            elif codec == b"deflate":
                block = _inflate(data[pos:end])
                at, stop = 0, len(block)
            else:
                raise DecodeError(f"unsupported codec {codec.decode(errors='replace')!r} (expected null or deflate)")
            if count < 0 or count > stop - at:
                raise DecodeError(f"data block claims {count} records in {stop - at} bytes")
            for _ in range(count):
                rec, at = reader(block, at)
                records.append(rec)
            if at != stop:
                # fastavro does not check this; a record that does not end where its block ends
                # was written with another schema or is corrupt
                raise DecodeError(f"the records of the data block end at byte {at}, the block at {stop}")
            if data[end:end + 16] != data[sync_at:sync_at + 16]:
                raise DecodeError("sync marker mismatch")
            pos = end + 16
        return records


class AlertDecoder(FramedDecoder):
    """message bytes -> its alerts, in the alert model of `survey`, with exactly `fields` built."""

    def __init__(self, survey: Survey, fields: frozenset[str], use_regex: bool = True) -> None:
        super().__init__()
        self.survey = survey
        self.fields = alert_model.check_fields(fields)
        self.use_regex = use_regex

    def make_reader(self, schema_json: bytes) -> Reader:
        schema = _parsed(schema_json)
        projection = alert_model.plan(self.survey, self.fields, schema)
        generated = record_reader(schema_json, projection, self.use_regex)
        finish = self.survey.finish
        if generated is None:  # a schema shape the generator does not handle: fastavro, then project
            whole = _fastavro_reader(schema_json, schema)
            survey = self.survey

            def fallback(data: bytes, pos: int) -> tuple[Any, int]:
                record, pos = whole(data, pos)
                return alert_model.canonical(record, survey, projection), pos

            return fallback
        if finish is None:
            return generated

        def finished(data: bytes, pos: int) -> tuple[Any, int]:
            alert, pos = generated(data, pos)
            finish(alert)
            return alert, pos

        return finished


class RawDecoder(FramedDecoder):
    """message bytes -> its whole records as fastavro decodes them (cutouts included)."""

    def make_reader(self, schema_json: bytes) -> Reader:
        return _fastavro_reader(schema_json, _parsed(schema_json))


def _parsed(schema_json: bytes) -> Any:
    from step_runtime.step.avro.container import AvroContainerError

    try:
        return parsed_schema(schema_json)
    except AvroContainerError as exc:
        raise DecodeError(str(exc)) from None


def _fastavro_reader(schema_json: bytes, schema: Any) -> Reader:
    """fastavro's reader of one record, after codegen's bounded walk of the same bytes: fastavro
    would allocate whatever counts a corrupt packet claims; the walk refuses them first."""
    check = value_checker(schema_json)
    if check is None:  # never seen: the generator handles every Avro type of a valid schema
        raise DecodeError("the writer schema cannot be walked with bounds checked: refused rather than "
                          "decoded unbounded")

    def read(data: bytes, pos: int) -> tuple[Any, int]:
        check(data, pos)
        buf = io.BytesIO(data)
        buf.seek(pos)
        record = fastavro.schemaless_reader(buf, schema, None)
        return record, buf.tell()

    return read


def _inflate(block: bytes) -> bytes:
    """A raw-deflate block, refused when it inflates past MAX_INFLATED_BLOCK."""
    inflater = zlib.decompressobj(-15)
    out = inflater.decompress(block, MAX_INFLATED_BLOCK)
    if inflater.unconsumed_tail:
        raise DecodeError(f"deflate block of {len(block)} bytes inflates past {MAX_INFLATED_BLOCK} bytes")
    return out


def _header(data: bytes) -> tuple[tuple[int, int] | None, bytes, int]:
    """(span of avro.schema, codec, position after the sync marker) of a container header."""
    pos = 4
    schema_span = None
    codec = b"null"
    while True:
        count, pos = _block(data, pos, "container header")
        if count == 0:
            break
        for _ in range(count):
            kstart, kend = _span(data, pos, "header key")
            key = bytes(data[kstart:kend]).decode()
            vstart, pos = _span(data, kend, f"header {key}")
            if key == "avro.schema":
                schema_span = (vstart, pos)
            elif key == "avro.codec":
                codec = bytes(data[vstart:pos])
    pos += 16
    if pos > len(data):
        raise DecodeError("truncated header (no sync marker)")
    return schema_span, codec, pos
