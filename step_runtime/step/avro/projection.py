"""The projected decoder of Avro containers: one generated reader per writer schema (see codegen)."""
from __future__ import annotations

import struct
import zlib
from typing import Any, Callable, Sequence

from step_runtime.step.avro.codegen import _MAX_CACHED, RecordReader, _block, _long, _span, record_reader
from step_runtime.step.avro.container import MAGIC
from step_runtime.step.errors import DecodeError


class ProjectedZtfDecoder:
    """`decoder(packet)` -> the projected alert of a ZTF Avro container, one reader per writer schema."""

    def __init__(self, top_fields: Sequence[str], candidate_fields: Sequence[str],
                 fallback: Callable[[bytes], dict[str, Any]], use_regex: bool = True) -> None:
        self.use_regex = use_regex
        self.top_fields = tuple(top_fields)
        self.candidate_fields = tuple(candidate_fields)
        self.fallback = fallback
        # schema length -> [(schema JSON, reader)]: comparing the header bytes in place is cheaper
        # than hashing 20 kB of schema per packet
        self.readers: dict[int, list[tuple[bytes, RecordReader | None]]] = {}
        self.cached = 0

    def reader_for(self, data: bytes, start: int, end: int) -> RecordReader | None:
        """The reader of the writer schema at data[start:end] (generated on first sight)."""
        bucket = self.readers.get(end - start)
        if bucket:
            for schema_json, reader in bucket:
                if data.startswith(schema_json, start):
                    return reader
        schema_json = data[start:end]
        reader = record_reader(schema_json, self.top_fields, self.candidate_fields, self.use_regex)
        if self.cached >= _MAX_CACHED:
            self.readers.clear()
            self.cached = 0
        self.readers.setdefault(end - start, []).append((schema_json, reader))
        self.cached += 1
        return reader

    def __call__(self, value: bytes) -> dict[str, Any]:
        try:
            records = self.records(value)
        except DecodeError as exc:
            raise DecodeError(f"undecodable Avro container: {exc}") from None
        except (IndexError, struct.error):  # a read past the end of the buffer
            raise DecodeError(f"undecodable Avro container: truncated (a value runs past the end of the "
                              f"{len(value)}-byte packet)") from None
        except UnicodeDecodeError as exc:
            raise DecodeError(f"undecodable Avro container: invalid UTF-8 in a string: {exc}") from None
        except (zlib.error, RecursionError, MemoryError, OverflowError) as exc:
            raise DecodeError(f"undecodable Avro container: {type(exc).__name__}: {exc}") from None
        if records is None:
            return self.fallback(value)
        if len(records) != 1:
            raise DecodeError(f"expected one alert per Avro container, found {len(records)}")
        return records[0]

    def records(self, data: bytes) -> list[Any] | None:
        """Every projected record of the container; None when its schema needs the fallback."""
        if data[:4] != MAGIC:
            raise DecodeError("not an Avro container (bad magic bytes)")
        schema_span, codec, pos = _header(data)
        if schema_span is None:
            raise DecodeError("container header has no avro.schema")
        reader = self.reader_for(data, *schema_span)
        if reader is None:
            return None
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
                block = zlib.decompress(data[pos:end], -15)
                at, stop = 0, len(block)
            else:
                raise DecodeError(f"unsupported codec {codec.decode(errors='replace')!r} (expected null or deflate)")
            if count > stop - at:
                raise DecodeError(f"data block claims {count} records in {stop - at} bytes")
            for _ in range(count):
                rec, at = reader(block, at)
                records.append(rec)
            if at != stop:
                # fastavro does not check this; a record that does not end where its block ends
                # was written with another schema or is corrupt
                raise DecodeError(f"the records of the data block end at byte {at}, the block at {stop}")
            if not data.startswith(data[sync_at:sync_at + 16], end):
                raise DecodeError("sync marker mismatch")
            pos = end + 16
        return records


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
            key = data[kstart:kend].decode()
            vstart, pos = _span(data, kend, f"header {key}")
            if key == "avro.schema":
                schema_span = (vstart, pos)
            elif key == "avro.codec":
                codec = data[vstart:pos]
    pos += 16
    if pos > len(data):
        raise DecodeError("truncated header (no sync marker)")
    return schema_span, codec, pos
