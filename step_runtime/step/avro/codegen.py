"""Generated Avro readers: per writer schema, Python that builds only the fields a step reads.

fastavro builds a Python object for every one of the thousands of values of an alert packet
(a ZTF candidate with 30 days of history, a Rubin diaSource with its previous sources and forced
photometry, cutouts), while a step reads a few dozen of them. Here, per distinct writer schema and
`Projection` (keep.py: which fields to keep, renamed and converted), we generate the source of
specialised Python functions that walk the Avro binary with that schema: values nobody reads are
skipped (a `["null", "double"]` is a byte test and an add, a string a length and a jump), the kept
values are decoded into the result. A projected record (a candidate, a diaSource, each history
entry) is first matched by one compiled regex of its fields (C speed, each kept field a group),
restricted to the common case (strings ASCII and under 128 bytes, one-byte union indexes); when
that does not match, the generated Python decides, exactly. Compiled once per schema and cached;
works for any schema (every Avro type is supported); `record_reader` answers None for a schema the
generator cannot handle, and the caller falls back to fastavro + `keep.project_value`.
Measured (benchmarks/decode.py): ~115 us per 62 kB ZTF packet against ~580 us for fastavro.

The result equals `keep.project_value(fastavro's record, projection)`. Bad input raises
`DecodeError`, never another exception, and never allocates more than the packet justifies:
varints are capped at 10 bytes, lengths and item counts are checked against the bytes left before
anything is read, an array or map holds at most MAX_ITEMS items (zero-byte items, nulls or empty
records, would otherwise let a few bytes claim billions), union and enum indexes are checked
against the schema, and every string, read or skipped, is UTF-8 checked as fastavro does. We are
stricter than fastavro in a few corners (a record block must be consumed exactly, no negative
union/enum index): such packets are dead letters here where fastavro would return garbage.
`value_checker` walks a whole value with the same checks and builds nothing: run before a full
fastavro decode, it keeps that decode bounded too.
"""
from __future__ import annotations

import hashlib
import re
import struct
from typing import Any, Callable

from step_runtime.step.avro.container import AvroContainerError, parsed_schema
from step_runtime.step.avro.keep import Keep, Projection, project_value
from step_runtime.step.avro.schemas import PRIMITIVES, named_types
from step_runtime.step.errors import DecodeError

_MAX_CACHED = 64
# Items an array or map may hold, all blocks together. Real alerts hold hundreds at most; the cap
# bounds what zero-byte items (null, an empty record) can make a decoder build or loop over.
MAX_ITEMS = 1_000_000

# Readers take bytes or a memoryview of them (a decode worker reads packets in place, in the
# shared memory the step process put them in): values handed out are always bytes or str.
RecordReader = Callable[[bytes, int], "tuple[Any, int]"]
_unpack_f = struct.Struct("<f").unpack_from
_unpack_d = struct.Struct("<d").unpack_from


# ---- runtime helpers called by the generated code ---------------------------------------------

def _long(data: bytes, pos: int) -> tuple[int, int]:
    """(value, next position) of the zig-zag varint at `pos`; at most 10 bytes, 64 bits."""
    b = data[pos]
    if b < 128:
        return (b >> 1) ^ -(b & 1), pos + 1
    result = b & 0x7F
    shift = 7
    start = pos
    pos += 1
    while True:
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 128:
            break
        shift += 7
        if shift >= 70:
            raise DecodeError(f"varint at byte {start} is longer than 10 bytes")
    if result >> 64:
        raise DecodeError(f"varint at byte {start} does not fit in 64 bits")
    return (result >> 1) ^ -(result & 1), pos


def _skip_long(data: bytes, pos: int) -> int:
    """The position after the varint at `pos` (at most 10 bytes)."""
    end = pos + 9
    while data[pos] >= 128:
        if pos >= end:
            raise DecodeError(f"varint at byte {end - 9} is longer than 10 bytes")
        pos += 1
    return pos + 1


def _span(data: bytes, pos: int, what: str) -> tuple[int, int]:
    """(start, end) of the length-prefixed bytes at `pos`, checked against the buffer."""
    n, pos = _long(data, pos)
    end = pos + n
    if n < 0 or end > len(data):
        raise DecodeError(f"{what}: length {n} at byte {pos} does not fit the {len(data)}-byte buffer")
    return pos, end


def _str(data: bytes, pos: int, what: str) -> tuple[str, int]:
    start, end = _span(data, pos, what)
    return bytes(data[start:end]).decode(), end


def _skip_str(data: bytes, pos: int, what: str) -> int:
    start, end = _span(data, pos, what)
    bytes(data[start:end]).decode()  # fastavro rejects invalid UTF-8 even where nobody reads it
    return end


def _bytes(data: bytes, pos: int, what: str) -> tuple[bytes, int]:
    start, end = _span(data, pos, what)
    return bytes(data[start:end]), end


def _skip_bytes(data: bytes, pos: int, what: str) -> int:
    return _span(data, pos, what)[1]


def _fixed(data: bytes, pos: int, size: int, what: str) -> bytes:
    out = bytes(data[pos:pos + size])
    if len(out) != size:
        raise DecodeError(f"{what}: fixed of {size} bytes runs past the end of the buffer")
    return out


def _index(data: bytes, pos: int, n: int, what: str) -> tuple[int, int]:
    """A union branch or enum symbol index, checked against the `n` the schema allows."""
    i, after = _long(data, pos)
    if not 0 <= i < n:
        raise DecodeError(f"{what}: index {i} at byte {pos}, expected 0..{n - 1}")
    return i, after


def _bad_index(data: bytes, pos: int, n: int, what: str) -> DecodeError:
    """The error for a union index byte that matched no branch."""
    try:
        _index(data, pos, n, what)
    except DecodeError as exc:
        return exc
    # a valid index written in more bytes than needed: never written by an Avro encoder, refused
    return DecodeError(f"{what}: union index at byte {pos} is not in its shortest encoding")


def _block(data: bytes, pos: int, what: str) -> tuple[int, int]:
    """(item count, position) of an array/map block header; a negative count carries a byte size."""
    count, pos = _long(data, pos)
    if count < 0:
        count = -count
        size, pos = _long(data, pos)
        if size < 0:
            raise DecodeError(f"{what}: negative block size {size}")
    if count > len(data) - pos:
        raise DecodeError(f"{what}: block of {count} items but only {len(data) - pos} bytes left")
    return count, pos


# ---- the generator ---------------------------------------------------------------------------

# Inline varints: the one-byte case (most ints, union indexes) without a function call.
_SKIP_LONG = ["if data[pos] < 128:", "    pos += 1", "else:", "    pos = _skip_long(data, pos)"]
_READ_LONG = ["b = data[pos]", "if b < 128:", "    {var} = (b >> 1) ^ -(b & 1)", "    pos += 1",
              "else:", "    {var}, pos = _long(data, pos)"]


# Regex pieces of the fast path (bytes patterns, DOTALL): a varint of at most 10 bytes, strings
# and bytes up to 127 bytes long, string content ASCII (so valid UTF-8 by construction).
_VARINT = rb"[\x80-\xff]{0,9}[\x00-\x7f]"
_MAX_FAST_STRING = 127


def zigzag(n: int) -> bytes:
    """An Avro long as written: zig-zag, then a little-endian base-128 varint."""
    n = (n << 1) ^ (n >> 63)
    out = bytearray()
    while n & ~0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _sized(content: bytes) -> bytes:
    """Length varint then that many bytes matching `content`, for every length up to _MAX_FAST_STRING."""
    return b"(?:" + b"|".join(re.escape(zigzag(n)) + content + b"{%d}" % n
                              for n in range(_MAX_FAST_STRING + 1)) + b")"


_PATTERNS = {
    "null": b"", "boolean": b".", "int": _VARINT, "long": _VARINT, "float": b".{4}", "double": b".{8}",
    "string": _sized(rb"[\x00-\x7f]"), "bytes": _sized(b"."),
}


class _Repeat:
    """`count` items of one regex pattern in a row, compiled once per count (blocks repeat their counts)."""

    MAX_COUNT = 4096  # larger blocks are walked item by item
    MAX_CACHED = 256

    def __init__(self, pattern: bytes) -> None:
        self.pattern = pattern
        self.compiled: dict[int, Any] = {}

    def match(self, count: int, data: bytes, pos: int) -> Any:
        rx = self.compiled.get(count)
        if rx is None:
            if count > self.MAX_COUNT:
                return None
            if len(self.compiled) >= self.MAX_CACHED:
                self.compiled.clear()
            try:
                rx = re.compile(b"(?:" + self.pattern + b"){%d}" % count, re.DOTALL)
            except (re.error, RecursionError, OverflowError):
                return None
            self.compiled[count] = rx
        return rx.match(data, pos)


class _Unsupported(Exception):
    """A schema shape the generator does not handle (the fastavro fallback is used)."""


class _Generator:
    """Python source of the functions decoding one writer schema into a projected record."""

    def __init__(self, schema: Any, use_regex: bool = True) -> None:
        self.schema = schema
        self.use_regex = use_regex
        self.names = named_types(schema)  # every named type (records, enums, fixed) by its full name
        self.functions: dict[tuple[Any, Any], str] = {}
        self.source: list[str] = []
        self.namespace: dict[str, Any] = {
            "DecodeError": DecodeError, "_long": _long, "_skip_long": _skip_long, "_str": _str,
            "_skip_str": _skip_str, "_bytes": _bytes, "_skip_bytes": _skip_bytes, "_fixed": _fixed,
            "_index": _index, "_bad_index": _bad_index, "_block": _block, "_unpack_f": _unpack_f,
            "_unpack_d": _unpack_d, "_project_value": project_value, "_too_many": _too_many,
            "MAX_ITEMS": MAX_ITEMS,
        }
        self.counter = 0

    # -- schema walking

    def resolve(self, t: Any) -> Any:
        """A primitive name, a union list, or a dict with a complex `type` (references followed)."""
        for _ in range(100):
            if isinstance(t, str):
                if t in PRIMITIVES:
                    return t
                if t in self.names:
                    t = self.names[t]
                    continue
                raise _Unsupported(f"unknown type name {t!r}")
            if isinstance(t, list):
                return t
            if isinstance(t, dict):
                kind = t.get("type")
                if isinstance(kind, (dict, list)) or (isinstance(kind, str) and kind not in PRIMITIVES
                                                       and kind not in ("record", "error", "enum", "fixed",
                                                                        "array", "map")):
                    t = kind
                    continue
                if kind in PRIMITIVES and "logicalType" not in t:
                    return kind
                return t
            raise _Unsupported(f"unexpected schema node {t!r}")
        raise _Unsupported("type references loop")

    def kind(self, t: Any) -> str:
        t = self.resolve(t)
        if isinstance(t, str):
            return t
        if isinstance(t, list):
            return "union"
        return "error" if t["type"] == "error" else t["type"]

    def new_name(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"

    def const(self, value: Any, prefix: str = "_c") -> str:
        name = self.new_name(prefix)
        self.namespace[name] = value
        return name

    # -- inline code; every snippet advances `pos` over one value, `read` also sets `var`

    def skip(self, t: Any, ind: str, what: str) -> list[str]:
        t = self.resolve(t)
        w = repr(what)
        if isinstance(t, str):
            return [ind + line for line in {
                "null": [],
                "boolean": ["pos += 1"],
                "int": _SKIP_LONG,
                "long": _SKIP_LONG,
                "float": ["pos += 4"],
                "double": ["pos += 8"],
                "bytes": [f"pos = _skip_bytes(data, pos, {w})"],
                "string": [  # inline: a one-byte length (< 64); overruns are caught by the end checks
                    "b = data[pos]",
                    "if b & 0x81:",
                    f"    pos = _skip_str(data, pos, {w})",
                    "else:",
                    "    s0 = pos + 1",
                    "    pos = s0 + (b >> 1)",
                    "    bytes(data[s0:pos]).decode()"],
            }[t]]
        if isinstance(t, list):
            return self.union(t, ind, what, lambda b, i: self.skip(b, i, what))
        kind = t["type"]
        if kind in PRIMITIVES:  # a logical type: skipped as its base type
            return self.skip(kind, ind, what)
        if kind == "fixed":
            return [f"{ind}pos += {int(t['size'])}"]
        if kind == "enum":
            return [f"{ind}pos = _index(data, pos, {len(t['symbols'])}, {w})[1]"]
        return [f"{ind}pos = {self.function(t, 'skip', what)}(data, pos)"]

    def read(self, t: Any, var: str, ind: str, what: str) -> list[str]:
        t = self.resolve(t)
        w = repr(what)
        if isinstance(t, str):
            return {
                "null": [f"{ind}{var} = None"],
                "boolean": [f"{ind}{var} = data[pos] != 0", f"{ind}pos += 1"],
                "int": [ind + line.format(var=var) for line in _READ_LONG],
                "long": [ind + line.format(var=var) for line in _READ_LONG],
                "float": [f"{ind}{var} = _unpack_f(data, pos)[0]", f"{ind}pos += 4"],
                "double": [f"{ind}{var} = _unpack_d(data, pos)[0]", f"{ind}pos += 8"],
                "bytes": [f"{ind}{var}, pos = _bytes(data, pos, {w})"],
                "string": [f"{ind}{var}, pos = _str(data, pos, {w})"],
            }[t]
        if isinstance(t, list):
            return self.union(t, ind, what, lambda b, i: self.read(b, var, i, what))
        kind = t["type"]
        if kind in PRIMITIVES or kind in ("fixed", "enum"):
            if kind in PRIMITIVES:
                lines = self.read(kind, var, ind, what)
            elif kind == "fixed":
                size = int(t["size"])
                lines = [f"{ind}{var} = _fixed(data, pos, {size}, {w})", f"{ind}pos += {size}"]
            else:
                symbols = self.const(tuple(t["symbols"]), "_symbols")
                lines = [f"{ind}{var}, pos = _index(data, pos, {len(t['symbols'])}, {w})",
                         f"{ind}{var} = {symbols}[{var}]"]
            logical = t.get("logicalType")
            if logical is not None:
                from fastavro.read import LOGICAL_READERS

                reader = LOGICAL_READERS.get(f"{kind}-{logical}")
                if reader is not None:  # fastavro converts these (dates, decimals...): so do we
                    fn = self.const(reader, "_logical")
                    sch = self.const(t, "_schema")
                    lines.append(f"{ind}{var} = {fn}({var}, {sch}, None)")
            return lines
        return [f"{ind}{var}, pos = {self.function(t, 'read', what)}(data, pos)"]

    def union(self, branches: list[Any], ind: str, what: str,
              branch_code: Callable[[Any, str], list[str]]) -> list[str]:
        """Dispatch on the union index; one-byte indexes (unions of < 64 branches) tested inline."""
        n = len(branches)
        if n == 0:
            raise _Unsupported(f"{what}: empty union")
        w = repr(what)
        lines: list[str] = []
        if n <= 63:
            lines.append(f"{ind}b = data[pos]")
            # null tested first: the cheapest branch, and frequent in history records
            order = sorted(range(n), key=lambda i: self.kind(branches[i]) != "null")
            for k, i in enumerate(order):
                lines.append(f"{ind}{'if' if k == 0 else 'elif'} b == {2 * i}:")
                lines.append(f"{ind}    pos += 1")
                lines.extend(branch_code(branches[i], ind + "    "))
            lines.append(f"{ind}else:")
            lines.append(f"{ind}    raise _bad_index(data, pos, {n}, {w})")
        else:
            lines.append(f"{ind}b, pos = _index(data, pos, {n}, {w})")
            for i, br in enumerate(branches):
                lines.append(f"{ind}{'if' if i == 0 else 'elif'} b == {i}:")
                lines.extend(branch_code(br, ind + "    ") or [f"{ind}    pass"])
        return lines

    # -- functions for records, arrays and maps (named records may be recursive)

    def function(self, t: dict[str, Any], mode: Any, what: str) -> str:
        """The name of the generated function for complex type `t` in `mode`: "skip" (advance),
        "read" (the whole value), ("project", projection) for a record, ("items", projection) for
        an array or map of projected items."""
        key = (t["name"] if t.get("type") in ("record", "error") else id(t), mode)
        if key in self.functions:
            return self.functions[key]
        label = mode if isinstance(mode, str) else mode[0]
        name = self.new_name(f"_{label}_")
        self.functions[key] = name
        kind = t["type"]
        if kind in ("record", "error"):
            if label == "items":
                raise _Unsupported(f"{what}: items projection of a record")
            body = self.record_body(t, mode)
        elif kind in ("array", "map"):
            if label == "project":
                raise _Unsupported(f"{what}: record projection of an {kind}")
            body = self.container_body(t, mode, what)
        else:
            raise _Unsupported(f"{what}: no {label} function for {kind}")
        self.source.append(f"def {name}(data, pos):")
        self.source.extend(_merge_adds(body))
        self.source.append("")
        if label == "project" and self.use_regex:
            fast = self.regex_record(t, name, mode[1])
            if fast is not None:
                self.functions[key] = fast
                return fast
        if label == "skip" and kind in ("record", "error") and self.use_regex:
            pattern = self.pattern(t)
            if pattern is not None:  # one C-level match walks the whole record
                match = self.const(re.compile(pattern, re.DOTALL).match, "_match")
                fast = self.new_name("_skipfast_")
                self.source.extend([f"def {fast}(data, pos):", f"    m = {match}(data, pos)",
                                    f"    return {name}(data, pos) if m is None else m.end()", ""])
                self.functions[key] = fast
                return fast
        return name

    # -- the regex fast path: one C-level match walks a whole record

    def pattern(self, t: Any, seen: tuple[str, ...] = ()) -> bytes | None:
        """A regex matching exactly the encodings of `t`, restricted to the common case (strings
        ASCII and at most 127 bytes, one-byte union indexes); None when `t` has arrays or maps."""
        t = self.resolve(t)
        if isinstance(t, str):
            return _PATTERNS[t]
        if isinstance(t, list):
            if len(t) > 63:
                return None
            alternatives = []
            for i, branch in enumerate(t):
                sub = self.pattern(branch, seen)
                if sub is None:
                    return None
                alternatives.append(re.escape(bytes([2 * i])) + sub)
            return b"(?:" + b"|".join(alternatives) + b")"
        kind = t["type"]
        if kind in PRIMITIVES:
            return _PATTERNS[kind]
        if kind == "fixed":
            return b".{%d}" % int(t["size"])
        if kind == "enum":
            if not 0 < len(t["symbols"]) <= 63:
                return None
            return b"[" + b"".join(re.escape(bytes([2 * i])) for i in range(len(t["symbols"]))) + b"]"
        if kind in ("record", "error") and t["name"] not in seen:
            parts = [self.pattern(f["type"], seen + (t["name"],)) for f in t.get("fields", [])]
            return None if any(p is None for p in parts) else b"".join(parts)  # type: ignore[arg-type]
        return None

    def regex_record(self, t: dict[str, Any], exact: str, projection: Projection) -> str | None:
        """A projected-record function that matches the record with one regex, each kept field a
        group decoded by the usual code; when the regex does not match (a long or non-ASCII string,
        a bad index, truncation), the exact function `exact` decides."""
        parts: list[bytes] = []
        kept: list[tuple[Keep, Any, str | None]] = []  # how kept, type, unpacker of a float/double payload
        unpack: str | None
        keep = dict(projection.keep)
        for f in t.get("fields", []):
            sub = self.pattern(f["type"], (t["name"],))
            if sub is None:
                return None
            k = keep.get(f["name"])
            if k is None:
                parts.append(sub)
                continue
            # a float/double, bare or in a union with null: the group holds just its 4 or 8 bytes
            # (no group match = null), decoded in one statement
            ftype = self.resolve(f["type"])
            branches = ftype if isinstance(ftype, list) else None
            kinds = [self.kind(b) for b in branches] if branches else [self.kind(ftype)]
            number = [x for x in kinds if x in ("float", "double")]
            if k.inner is None and len(number) == 1 and (not branches or (len(kinds) == 2 and "null" in kinds)):
                width, unpack = (4, "_unpack_f") if number[0] == "float" else (8, "_unpack_d")
                payload = b"(.{%d})" % width
                if branches:
                    payload = b"(?:" + b"|".join(
                        re.escape(bytes([2 * i])) + (payload if x != "null" else b"") for i, x in enumerate(kinds)) + b")"
                parts.append(payload)
                kept.append((k, f["type"], unpack))
            else:
                parts.append(b"(" + sub + b")")
                kept.append((k, f["type"], None))
        try:
            rx = re.compile(b"".join(parts), re.DOTALL)
        except (re.error, RecursionError, OverflowError):
            return None
        name = self.new_name("_fast_")
        lines = [f"    m = {self.const(rx.match, '_match')}(data, pos)",
                 "    if m is None:",
                 f"        return {exact}(data, pos)",
                 "    spans = m.regs  # (start, end) of the match, then of each group"]
        values: dict[str, str] = {}
        for i, (k, ftype, unpack) in enumerate(kept, start=1):
            var = self.new_name("v")
            lines.append(f"    pos = spans[{i}][0]")
            if unpack is None:
                lines.extend(self.kept(ftype, k, var, "    ", f"{t['name']}.{k.out}"))
            else:
                if isinstance(self.resolve(ftype), list):
                    lines.append(f"    {var} = None if pos < 0 else {unpack}(data, pos)[0]")
                else:
                    lines.append(f"    {var} = {unpack}(data, pos)[0]")
                if k.convert is not None:
                    lines.append(f"    {var} = {k.convert.format(v=var)}")
            values[k.out] = var
        lines.append(f"    return {self.returned(projection, values)}, spans[0][1]")
        self.source.append(f"def {name}(data, pos):")
        self.source.extend(lines)
        self.source.append("")
        return name

    def record_body(self, t: dict[str, Any], mode: Any) -> list[str]:
        """mode "skip": advance only; "read": the full record; ("project", projection): the
        projected record."""
        ind = "    "
        lines: list[str] = []
        if mode == "skip":
            for f in t.get("fields", []):
                lines.extend(self.skip(f["type"], ind, f"{t['name']}.{f['name']}"))
            return lines + [f"{ind}return pos"]
        if mode == "read":
            out: dict[str, str] = {}
            for f in t.get("fields", []):
                var = self.new_name("v")
                lines.extend(self.read(f["type"], var, ind, f"{t['name']}.{f['name']}"))
                out[f["name"]] = var  # a repeated field keeps its first place, as in a dict
            items = ", ".join(f"{k!r}: {v}" for k, v in out.items())
            return lines + [f"{ind}return {{{items}}}, pos"]
        projection: Projection = mode[1]
        keep = dict(projection.keep)
        values: dict[str, str] = {}
        for f in t.get("fields", []):
            what = f"{t['name']}.{f['name']}"
            k = keep.get(f["name"])
            if k is None:
                lines.extend(self.skip(f["type"], ind, what))
                continue
            var = self.new_name("v")
            lines.extend(self.kept(f["type"], k, var, ind, what))
            values[k.out] = var
        return lines + [f"{ind}return {self.returned(projection, values)}, pos"]

    def container_body(self, t: dict[str, Any], mode: Any, what: str) -> list[str]:
        """An array or map: blocks of items until a zero count, at most MAX_ITEMS items in all."""
        is_map = t["type"] == "map"
        item = t["values"] if is_map else t["items"]
        w = repr(what)
        ind = " " * 12
        if mode == "skip":
            body = ([f"{ind}pos = _skip_str(data, pos, {w})"] if is_map else []) + self.skip(item, ind, what)
        else:
            body = [f"{ind}key, pos = _str(data, pos, {w})"] if is_map else []
            if mode == "read":
                body.extend(self.read(item, "item", ind, what))
            else:  # ("items", projection): each item projected
                body.extend(self.project(item, mode[1], "item", ind, what))
            body.append(f"{ind}out[key] = item" if is_map else f"{ind}out.append(item)")
        lines = [] if mode == "skip" else ["    out = {}" if is_map else "    out = []"]
        lines += ["    total = 0", "    while True:",
                  f"        count, pos = _block(data, pos, {w})",
                  "        if count == 0:",
                  "            return " + ("pos" if mode == "skip" else "out, pos"),
                  "        total += count",
                  "        if total > MAX_ITEMS:",
                  f"            raise _too_many({w}, total)"]
        pattern = self.pattern(item) if mode == "skip" and not is_map and self.use_regex else None
        if body and pattern:
            # skipped items of the common shape: a whole block in one match (count items in a row)
            repeat = self.const(_Repeat(pattern), "_repeat")
            lines += [f"        m = {repeat}.match(count, data, pos)",
                      "        if m is not None:",
                      "            pos = m.end()",
                      "            continue"]
        if body:  # skipping zero-byte items (nulls, empty records) needs no loop at all
            lines.append("        for _ in range(count):")
            lines.extend(body)
        return lines

    # -- projection: the kept fields of records, renamed and converted

    def project(self, t: Any, projection: Projection, var: str, ind: str, what: str) -> list[str]:
        """A value read as keep.project_value gives it: records projected, arrays item by item,
        maps read whole and projected as project_value does, anything else read as is."""
        r = self.resolve(t)
        if isinstance(r, list):
            return self.union(r, ind, what, lambda b, i: self.project(b, projection, var, i, what))
        if isinstance(r, dict) and r["type"] in ("record", "error"):
            return [f"{ind}{var}, pos = {self.function(r, ('project', projection), what)}(data, pos)"]
        if isinstance(r, dict) and r["type"] == "array":
            return [f"{ind}{var}, pos = {self.function(r, ('items', projection), what)}(data, pos)"]
        if isinstance(r, dict) and r["type"] == "map":
            proj = self.const(projection, "_projection")
            return self.read(r, var, ind, what) + [f"{ind}{var} = _project_value({var}, {proj})"]
        return self.read(r, var, ind, what)

    def kept(self, ftype: Any, keep: Keep, var: str, ind: str, what: str) -> list[str]:
        """Read one kept field into `var`: projected inside when it holds records, then converted."""
        lines = (self.project(ftype, keep.inner, var, ind, what) if keep.inner is not None
                 else self.read(ftype, var, ind, what))
        if keep.convert is not None:
            lines.append(f"{ind}{var} = {keep.convert.format(v=var)}")
        return lines

    def returned(self, projection: Projection, values: dict[str, str]) -> str:
        """The dict literal of a projected record: kept keys in order (None when the writer lacks
        the field), then the constants."""
        items = [f"{k.out!r}: {values.get(k.out, 'None')}" for _, k in projection.keep]
        items += [f"{name!r}: {self.const(value)}" for name, value in projection.constants]
        return "{" + ", ".join(items) + "}"

    def top(self, projection: Projection | None) -> str:
        """The entry point: the projected top-level record, or (projection None) a checking walk."""
        t = self.resolve(self.schema)
        if projection is None:
            body = self.skip(t, "    ", "value")  # generates the functions it calls first
            self.source.append("def _check(data, pos):")
            self.source.extend(_merge_adds(body + ["    return pos"]))
            self.source.append("")
            return "_check"
        if not (isinstance(t, dict) and t["type"] in ("record", "error")):
            raise _Unsupported("the top-level schema is not a record")
        return self.function(t, ("project", projection), t["name"])

    def compile(self, projection: Projection | None) -> tuple[Callable[..., Any], str]:
        """The compiled entry function and the whole generated source."""
        entry = self.top(projection)
        source = "\n".join(self.source) + "\n"
        code = compile(source, "<avro.codegen>", "exec")
        # Safe to run: names and docs from the schema only ever appear as repr() literals, sizes
        # as int(), symbols, conversions' constants and logical-type converters as namespace
        # constants; conversion templates are constants of this package (alert_model).
        exec(code, self.namespace)  # noqa: S102 - see above
        return self.namespace[entry], source


def _merge_adds(lines: list[str]) -> list[str]:
    """`pos += a` then `pos += b` at the same indentation becomes one `pos += a+b`."""
    out: list[str] = []
    for line in lines:
        s = line.lstrip()
        if out and s.startswith("pos += ") and s[7:].isdigit():
            prev = out[-1].lstrip()
            same = len(out[-1]) - len(prev) == len(line) - len(s)
            if same and prev.startswith("pos += ") and prev[7:].isdigit():
                out[-1] = out[-1][:len(out[-1]) - len(prev)] + f"pos += {int(prev[7:]) + int(s[7:])}"
                continue
        out.append(line)
    return out


def _too_many(what: str, total: int) -> DecodeError:
    return DecodeError(f"{what}: more than {MAX_ITEMS:,} items ({total:,} so far): refused as a decoding bomb")


def generate_source(schema: Any, projection: Projection | None) -> str:
    """The Python source generated for a (fastavro-parsed) writer schema, for reading and debugging."""
    return _Generator(schema).compile(projection)[1]


_READERS: dict[tuple[bytes, Projection | None, bool], Callable[..., Any] | None] = {}


def _cached(schema_json: bytes, projection: Projection | None, use_regex: bool) -> Callable[..., Any] | None:
    key = (hashlib.sha1(schema_json).digest(), projection, use_regex)
    if key in _READERS:
        return _READERS[key]
    try:
        schema = parsed_schema(schema_json)
    except AvroContainerError as exc:
        raise DecodeError(str(exc)) from None
    try:
        fn: Callable[..., Any] | None = _Generator(schema, use_regex).compile(projection)[0]
    except (_Unsupported, KeyError, TypeError, ValueError, SyntaxError, RecursionError):
        fn = None
    if len(_READERS) >= _MAX_CACHED:
        _READERS.clear()
    _READERS[key] = fn
    return fn


def record_reader(schema_json: bytes, projection: Projection, use_regex: bool = True) -> RecordReader | None:
    """`(data, pos) -> (projected record, next pos)` for a writer schema; None if unsupported.

    Generated once per distinct schema and projection (keyed by the schema's sha1).
    """
    return _cached(schema_json, projection, use_regex)


def value_checker(schema_json: bytes) -> Callable[[bytes, int], int] | None:
    """`(data, pos) -> next pos`: walks one value of the schema with every bound checked and builds
    nothing (DecodeError on bad input); None if the schema is one the generator cannot handle."""
    return _cached(schema_json, None, False)
