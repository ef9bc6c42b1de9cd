"""The generated readers give exactly keep.project_value(fastavro's record, projection), or a DecodeError.

On every real ZTF and Rubin packet (the alert model of each survey), on a hand-made schema using
every Avro type (any projection, renames and conversions included), and on damaged packets.
"""
from __future__ import annotations

import datetime
import io
import math
import random
import re
from pathlib import Path
from typing import Any

import fastavro
import pytest

from step_runtime.step import alert_model
from step_runtime.step.alert_model import LSST, ZTF
from step_runtime.step.avro import codegen
from step_runtime.step.avro.codegen import MAX_ITEMS, generate_source, record_reader, zigzag
from step_runtime.step.avro.container import AvroContainerError, parsed_schema
from step_runtime.step.avro.decoders import AlertDecoder, FramedDecoder, RawDecoder, Reader
from step_runtime.step.avro.framing import confluent_frame, schema_ids
from step_runtime.step.avro.keep import Keep, Projection, project_value
from step_runtime.step.avro.schemas import SchemaCache, SchemaDirectory
from step_runtime.step.errors import DecodeError
from step_runtime.step.synthetic import synthetic_alerts

REPO = Path(__file__).resolve().parents[2]
FOLDERS = [REPO / "examples" / "data" / "alerts", Path("/work/shared/data/ztf/alerts")]
PACKETS = sorted({p for folder in FOLDERS if folder.is_dir() for p in folder.glob("*.avro")}, key=str)
GOOD = [p for p in PACKETS if not p.name.startswith("corrupt")]
LSST_SCHEMAS = SchemaDirectory(REPO / "examples" / "data" / "lsst" / "schema")
LSST_PACKETS = sorted((REPO / "examples" / "data" / "lsst" / "alerts").glob("*.avro")) + sorted(
    (REPO / "examples" / "data" / "lsst" / "schema").glob("*/*/sample_data/fakeAlert.avro"))
EVERY = frozenset({"oid", "survey", "solarSystem", "source", "detections", "forced"})


def same(a: Any, b: Any) -> bool:
    """Equal values of the same types, key order included; NaN equals NaN."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return bool(a == b)


def schemas_of(value: bytes) -> dict[int, bytes | str]:
    return SchemaCache(LSST_SCHEMAS).resolve(schema_ids([value]))


def expected_alerts(value: bytes, survey: alert_model.Survey, fields: frozenset[str] = EVERY) -> Any:
    """The reference: fastavro's whole records, projected and finished by alert_model in Python."""
    schemas = schemas_of(value)
    try:
        records = RawDecoder()(value, schemas)
    except DecodeError as exc:
        return exc
    if value[:4] == b"Obj\x01":
        schema = fastavro.parse_schema(fastavro.reader(io.BytesIO(value)).writer_schema)
    else:
        schema = parsed_schema(next(iter(schemas.values())))  # type: ignore[arg-type]
    projection = alert_model.plan(survey, fields, schema)
    return [alert_model.canonical(r, survey, projection) for r in records]


class ProjectionDecoder(FramedDecoder):
    """Any projection, read by the generated code alone (no fallback)."""

    def __init__(self, projection: Projection, use_regex: bool = True) -> None:
        super().__init__()
        self.projection = projection
        self.use_regex = use_regex

    def make_reader(self, schema_json: bytes) -> Reader:
        reader = record_reader(schema_json, self.projection, self.use_regex)
        assert reader is not None, "the generator should handle this schema"
        return reader


# ---- real packets ----------------------------------------------------------------------------

def test_the_real_packets_are_there() -> None:
    assert len(GOOD) >= 10
    assert len(LSST_PACKETS) >= 15 + 13  # 15 schema versions' samples, 13 real and synthetic packets


@pytest.mark.parametrize("use_regex", [True, False], ids=["regex", "python"])
@pytest.mark.parametrize("path", GOOD, ids=lambda p: f"{p.parent.parent.name}/{p.name}")
def test_every_real_ztf_packet_gives_the_alert_fastavro_gives(path: Path, use_regex: bool) -> None:
    value = path.read_bytes()
    want = expected_alerts(value, ZTF)
    assert not isinstance(want, DecodeError)
    got = AlertDecoder(ZTF, EVERY, use_regex)(value)
    assert same(got, want), path.name
    assert isinstance(got[0]["source"]["mag"], float)  # a float32 field, widened as fastavro does
    assert got[0]["survey"] == "ztf" and got[0]["solarSystem"] is False


@pytest.mark.parametrize("use_regex", [True, False], ids=["regex", "python"])
@pytest.mark.parametrize("path", LSST_PACKETS, ids=lambda p: "/".join(p.parts[-4:]))
def test_every_rubin_packet_and_schema_version_gives_the_alert_fastavro_gives(path: Path, use_regex: bool) -> None:
    value = path.read_bytes()
    want = expected_alerts(value, LSST)
    assert not isinstance(want, DecodeError), want
    got = AlertDecoder(LSST, EVERY, use_regex)(value, schemas_of(value))
    assert same(got, want), path
    for alert in got:
        assert alert["survey"] == "lsst" and alert["oid"] and alert["oid"].isdigit()
        assert alert["source"]["band"] in "ugrizy" and isinstance(alert["source"]["flux"], float)


def test_the_corrupt_packet_is_a_decode_error() -> None:
    for folder in FOLDERS:
        path = folder / "corrupt-87704463155000.avro"
        if path.is_file():
            with pytest.raises(DecodeError, match="undecodable Avro container"):
                AlertDecoder(ZTF, EVERY)(path.read_bytes())


def test_synthetic_alerts_of_every_schema_match() -> None:
    decode = AlertDecoder(ZTF, EVERY)
    n = 0
    for _, candid, value in synthetic_alerts(FOLDERS[0], 300):
        got = decode(value)
        assert got[0]["source"]["sourceId"] == candid
        assert same(got, expected_alerts(value, ZTF))
        n += 1
    assert n == 300


@pytest.mark.parametrize("value", [b"", b"Obj", b"Obj\x01", b"not avro at all", b"Obj\x01\x02\x00",
                                   b"Obj\x01\x01", b"Obj\x01\x02\x16avro.schema\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01",
                                   b"\x00", b"\x00\x00\x00\x04", b"\x00\x00\x00\x04\x4d"])
def test_garbage_is_a_decode_error(value: bytes) -> None:
    with pytest.raises(DecodeError):
        AlertDecoder(ZTF, EVERY)(value)
    with pytest.raises(DecodeError):
        RawDecoder()(value)


def test_only_the_declared_fields_are_built() -> None:
    value = GOOD[0].read_bytes()
    got = AlertDecoder(ZTF, frozenset({"source.ra", "source.dec"}))(value)[0]
    assert list(got) == ["oid", "source", "survey", "solarSystem"]
    assert list(got["source"]) == ["ra", "dec"]
    with pytest.raises(ValueError, match="'source.magpsf' is not in the alert model"):
        AlertDecoder(ZTF, frozenset({"source.magpsf"}))


# ---- every Avro type, on a hand-made schema --------------------------------------------------

GENERIC_SCHEMA = {
    "type": "record", "name": "alert", "namespace": "test",
    "fields": [
        {"name": "objectId", "type": "string"},
        {"name": "flag", "type": "boolean"},
        {"name": "when", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "skipped_when", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "kind", "type": {"type": "enum", "name": "Kind", "symbols": ["A", "B", "C"]}},
        {"name": "blob", "type": "bytes"},
        {"name": "tags", "type": {"type": "map", "values": ["null", "int", "string"]}},
        {"name": "digest", "type": {"type": "fixed", "name": "Digest", "size": 4}},
        {"name": "node", "type": {"type": "record", "name": "Node", "fields": [
            {"name": "value", "type": "int"}, {"name": "next", "type": ["null", "Node"]}]}},
        {"name": "nodes", "type": {"type": "array", "items": "Node"}},
        {"name": "other_kind", "type": "Kind"},
        {"name": "other_digest", "type": ["null", "Digest"]},
        {"name": "f", "type": "float"},
        {"name": "candidate", "type": {"type": "record", "name": "Cand", "fields": [
            {"name": "jd", "type": "double"}, {"name": "skip_map", "type": {"type": "map", "values": "long"}},
            {"name": "ra", "type": ["null", "double"]}, {"name": "name", "type": ["null", "string"]},
            {"name": "mag", "type": ["float", "null"]}, {"name": "kind", "type": "Kind"},
            {"name": "flag", "type": "boolean"}, {"name": "blob", "type": ["null", "bytes"]}]}},
        {"name": "prv_candidates", "type": ["null", {"type": "array", "items": ["null", "Cand"]}]},
        {"name": "tail", "type": {"type": "array", "items": "string"}},
    ],
}
CAND = Projection(tuple((n, Keep(n)) for n in ("ra", "name", "mag", "kind", "flag", "blob"))
                  + (("jd", Keep("mjd", alert_model.JD_TO_MJD)),), (("band", None),))
GENERIC = Projection(
    tuple((n, Keep(n)) for n in ("flag", "when", "kind", "blob", "tags", "digest", "node", "nodes", "other_kind",
                                 "other_digest", "f"))
    + (("objectId", Keep("oid")), ("candidate", Keep("source", inner=CAND)),
       ("prv_candidates", Keep("detections", inner=CAND)), ("missing", Keep("gone"))),
    (("survey", "test"),))


def _generic_record(i: int) -> dict[str, Any]:
    def cand(j: int) -> dict[str, Any]:
        return {"jd": 2459000.5 + j, "skip_map": {"a": j, "b": -j}, "ra": None if j % 2 else j * 1.5,
                "name": None if j % 3 == 0 else "é" * j + "x" * (60 * j), "mag": None if j % 4 == 1 else 0.1 * j,
                "kind": "ABC"[j % 3], "flag": j % 2 == 0, "blob": b"\x00\xff" * j if j % 2 else None}

    when = datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc) + datetime.timedelta(seconds=i)
    return {
        "objectId": f"ZTF{i}", "flag": bool(i % 2), "when": when, "skipped_when": when, "kind": "ABC"[i % 3],
        "blob": bytes(range(i % 256)), "tags": {"x": None, "y": i, "z": "zz" * i}, "digest": b"abcd",
        "node": {"value": i, "next": {"value": -i, "next": None}},
        "nodes": [{"value": k, "next": None} for k in range(i % 5)], "other_kind": "C",
        "other_digest": None if i % 2 else b"wxyz", "f": 1.1 * i, "candidate": cand(i),
        "prv_candidates": None if i % 5 == 4 else [cand(j) if j % 3 else None for j in range(i % 7)],
        "tail": ["t" * k for k in range(i % 4)],
    }


def _container(records: list[dict[str, Any]], codec: str = "null", schema: Any = GENERIC_SCHEMA) -> bytes:
    buf = io.BytesIO()
    fastavro.writer(buf, fastavro.parse_schema(schema), records, codec=codec)
    return buf.getvalue()


@pytest.mark.parametrize("use_regex", [True, False], ids=["regex", "python"])
@pytest.mark.parametrize("codec", ["null", "deflate"])
def test_every_avro_type_decodes_like_fastavro(codec: str, use_regex: bool) -> None:
    decode = ProjectionDecoder(GENERIC, use_regex)
    for i in range(40):
        value = _container([_generic_record(i)], codec)
        want = [project_value(r, GENERIC) for r in RawDecoder()(value)]
        got = decode(value)
        assert same(got, want), i
        assert got[0]["source"]["mjd"] == 2459000.5 + i - 2400000.5 and got[0]["gone"] is None
    assert isinstance(got[0]["when"], datetime.datetime)  # logical types converted as fastavro does


def test_a_container_of_many_records_gives_them_all() -> None:
    value = _container([_generic_record(i) for i in range(10)], "deflate")
    got = ProjectionDecoder(GENERIC)(value)
    assert [r["oid"] for r in got] == [f"ZTF{i}" for i in range(10)]
    assert same(got, [project_value(r, GENERIC) for r in RawDecoder()(value)])


def _array_schema_packet(body: bytes, items: Any = None) -> bytes:
    """A container whose record is {objectId: string, prv_candidates: array<items>}."""
    items = items or {"type": "record", "name": "c", "fields": [{"name": "jd", "type": "double"},
                                                                  {"name": "x", "type": "long"}]}
    schema = {"type": "record", "name": "a", "fields": [
        {"name": "objectId", "type": "string"}, {"name": "prv_candidates", "type": {"type": "array", "items": items}}]}
    head = io.BytesIO()
    fastavro.writer(head, fastavro.parse_schema(schema), [])
    header = head.getvalue()
    return header + zigzag(1) + zigzag(len(body)) + body + header[-16:]


HISTORY = Projection((("objectId", Keep("oid")), ("prv_candidates", Keep("detections", inner=Projection(
    (("jd", Keep("jd")),))))))


def test_negative_array_block_counts_carry_a_byte_size() -> None:
    item = b"\x00" * 7 + b"\x40" + zigzag(-5)  # jd = 2.0, x = -5
    body = zigzag(2) + b"id" + zigzag(-2) + zigzag(2 * len(item)) + item * 2 + zigzag(1) + item + b"\x00"
    value = _array_schema_packet(body)
    want = [project_value(r, HISTORY) for r in RawDecoder()(value)]
    assert want[0]["detections"] == [{"jd": 2.0}] * 3
    for use_regex in (True, False):
        assert same(ProjectionDecoder(HISTORY, use_regex)(value), want)
    bad_size = zigzag(2) + b"id" + zigzag(-2) + zigzag(-1) + item * 2 + b"\x00"
    with pytest.raises(DecodeError, match="negative block size"):
        ProjectionDecoder(HISTORY)(_array_schema_packet(bad_size))
    huge_count = zigzag(2) + b"id" + zigzag(10**9) + item + b"\x00"
    with pytest.raises(DecodeError, match="block of 1000000000 items"):
        ProjectionDecoder(HISTORY)(_array_schema_packet(huge_count))
    long_varint = zigzag(2) + b"id" + b"\x02" + b"\x00" * 8 + b"\xff" * 11 + b"\x00"
    with pytest.raises(DecodeError, match="longer than 10 bytes"):
        ProjectionDecoder(HISTORY)(_array_schema_packet(long_varint))


@pytest.mark.parametrize("items", ["null", {"type": "record", "name": "e", "fields": []}], ids=["nulls", "empty-records"])
def test_a_small_packet_claiming_2_to_the_40_zero_byte_items_is_refused_by_every_decoder(items: Any) -> None:
    # the poison pill: ~150 bytes whose array of zero-byte items made fastavro allocate until OOM
    poison = _array_schema_packet(zigzag(2) + b"id" + zigzag(2 ** 40) + b"\x00", items)
    assert len(poison) < 400
    with pytest.raises(DecodeError, match="block of 1099511627776 items but only"):
        RawDecoder()(poison)
    with pytest.raises(DecodeError, match="block of 1099511627776 items but only"):
        AlertDecoder(ZTF, EVERY)(poison)
    # many blocks, each no larger than the bytes left, still cannot pass MAX_ITEMS in all
    blocks = b"".join(zigzag(n) for n in range(2000, 0, -1))
    many = _array_schema_packet(zigzag(2) + b"id" + blocks + b"\x00", items)
    assert sum(range(2001)) > MAX_ITEMS
    with pytest.raises(DecodeError, match="more than 1,000,000 items"):
        RawDecoder()(many)


def test_a_deflate_bomb_is_refused_before_it_is_inflated() -> None:
    import zlib

    deflater = zlib.compressobj(9, zlib.DEFLATED, -15)
    bomb = deflater.compress(b"\x00" * (80 << 20)) + deflater.flush()
    head = _container([], "deflate")
    value = head + zigzag(1) + zigzag(len(bomb)) + bomb + head[-16:]
    with pytest.raises(DecodeError, match="inflates past"):
        RawDecoder()(value)


def test_the_generated_source_skips_cutouts() -> None:
    value = GOOD[0].read_bytes()
    schema = fastavro.parse_schema(fastavro.reader(io.BytesIO(value)).writer_schema)
    source = generate_source(schema, alert_model.plan(ZTF, EVERY, schema))
    assert "'oid'" in source and "- 2400000.5" in source
    assert "cutoutScience" in source  # walked over, never read:
    assert re.search(r"(?<!_skip)_bytes\(data, pos, '[^']*cutout", source) is None
    compile(source, "<test>", "exec")


def test_unsupported_schemas_fall_back_to_fastavro() -> None:
    value = _container([{"objectId": 3}], schema={"type": "map", "values": "int"})
    assert AlertDecoder(ZTF, EVERY)(value) == [{"source": None, "detections": None, "forced": None, "survey": "ztf",
                                                "solarSystem": False, "oid": None}]


# ---- the Confluent wire format ---------------------------------------------------------------

def test_confluent_framing_errors_name_what_is_wrong() -> None:
    good = (REPO / "examples" / "data" / "lsst" / "alerts" / "pg_lsst.v11_1.avro").read_bytes()
    decode = AlertDecoder(LSST, EVERY)
    assert decode(good, schemas_of(good))[0]["oid"] == "281323062375219201"
    with pytest.raises(DecodeError, match="shorter than the 5-byte header"):
        decode(good[:4], {})
    with pytest.raises(DecodeError, match="schema id 1101: no schema was resolved"):
        decode(good, {})
    with pytest.raises(DecodeError, match="schema id 1205 is unknown to schemaDir"):
        bad = confluent_frame(1205, good[5:])
        decode(bad, schemas_of(bad))
    with pytest.raises(DecodeError, match="the value ends at byte"):
        decode(good + b"\x00", schemas_of(good))
    with pytest.raises(DecodeError, match="truncated"):
        decode(good[:-40], schemas_of(good))
    with pytest.raises(DecodeError, match="magic bytes"):
        decode(b"\x07" + good[1:], schemas_of(good))


# ---- fuzz: damaged packets decode as fastavro would, or raise DecodeError ---------------------

def _check_damaged(decode: AlertDecoder, value: bytes, survey: alert_model.Survey) -> str:
    want = expected_alerts(value, survey)
    try:
        got = decode(value, schemas_of(value))
    except DecodeError:
        return "error"  # allowed whatever fastavro did: we may be stricter, never looser
    assert not isinstance(want, DecodeError), f"fastavro refused ({want}) but the projection decoded it"
    assert same(got, want)
    return "same"


@pytest.mark.timeout(300)
@pytest.mark.parametrize("use_regex", [True, False], ids=["regex", "python"])
def test_fuzz_truncations_and_byte_flips(use_regex: bool) -> None:
    rng = random.Random(20261126)
    outcomes = {"same": 0, "error": 0}
    cases = [(p, ZTF) for p in GOOD] + [(p, LSST) for p in LSST_PACKETS[:13]]
    for path, survey in cases:
        decode = AlertDecoder(survey, EVERY, use_regex)
        value = path.read_bytes()
        for cut in [rng.randrange(len(value)) for _ in range(10)] + [len(value) - 1]:
            outcomes[_check_damaged(decode, value[:cut], survey)] += 1
        # flips near the front hit the header and the records; the back is mostly cutout bytes
        body = [rng.randrange(min(len(value), 30000)) for _ in range(40)] + [rng.randrange(len(value)) for _ in range(5)]
        for at in body:
            damaged = bytearray(value)
            damaged[at] ^= 1 << rng.randrange(8)
            outcomes[_check_damaged(decode, bytes(damaged), survey)] += 1
    assert outcomes["same"] > 0 and outcomes["error"] > 0, outcomes


def test_truncations_of_the_projected_fields_region_never_escape() -> None:
    value = GOOD[0].read_bytes()
    decode = AlertDecoder(ZTF, EVERY)
    for cut in range(0, 24000, 7):
        with pytest.raises(DecodeError):
            decode(value[:cut])


def test_readers_are_generated_once_per_schema() -> None:
    codegen._READERS.clear()
    decode = AlertDecoder(ZTF, EVERY)
    for path in GOOD:
        decode(path.read_bytes())
        decode(path.read_bytes())
    n_schemas = len({fastavro.reader(io.BytesIO(p.read_bytes())).metadata["avro.schema"] for p in GOOD})
    assert len(codegen._READERS) == n_schemas


ODD_SHAPES = [
    # candidate a map (projected as a record), history a map of ints (each value kept)
    ({"name": "candidate", "type": ["null", {"type": "map", "values": "double"}]},
     {"name": "prv_candidates", "type": {"type": "map", "values": "int"}},
     {"jd": 1.5, "ra": 2.5, "other": 3.5}, {"a": 1}),
    # history items a union of null, map and record
    ({"name": "candidate", "type": "null"},
     {"name": "prv_candidates", "type": {"type": "array", "items": [
         "null", {"type": "map", "values": "long"},
         {"type": "record", "name": "P", "fields": [{"name": "fid", "type": "int"}, {"name": "zz", "type": "string"}]}]}},
     None, [None, {"fid": 2, "q": 3}, {"fid": 1, "zz": "x"}]),
    # candidate an array, history a string
    ({"name": "candidate", "type": {"type": "array", "items": "int"}},
     {"name": "prv_candidates", "type": "string"}, [1, 2], "none"),
]
ODD = Projection((("objectId", Keep("oid")),
                  ("candidate", Keep("source", inner=Projection((("jd", Keep("jd")),
                                                                 ("fid", Keep("band", alert_model.ZTF_BAND)))))),
                  ("prv_candidates", Keep("detections", inner=Projection((("fid", Keep("fid")), ("jd", Keep("jd"))))))))


@pytest.mark.parametrize("use_regex", [True, False], ids=["regex", "python"])
@pytest.mark.parametrize("shape", ODD_SHAPES, ids=["maps", "mixed-history", "array-and-string"])
def test_odd_record_and_history_types_project_like_project_value(shape: tuple, use_regex: bool) -> None:
    cand_field, prv_field, cand, prv = shape
    schema = {"type": "record", "name": "odd", "fields": [{"name": "objectId", "type": "string"}, cand_field, prv_field]}
    value = _container([{"objectId": "o", "candidate": cand, "prv_candidates": prv}], schema=schema)
    want = [project_value(r, ODD) for r in RawDecoder()(value)]
    assert same(ProjectionDecoder(ODD, use_regex)(value), want)


def test_a_record_without_fields_in_the_writer_schema_is_refused() -> None:
    # one flipped bit of a real packet ("fields" -> "fieldr") made fastavro decode the history as
    # empty records and allocate until the process was killed; every path now refuses the schema
    path = REPO / "examples" / "data" / "alerts" / "396522680015025001.avro"
    value = path.read_bytes()
    before = b'"name": "prv_candidate", "namespace": "ztf.alert", "fields"'
    assert before in value
    damaged = value.replace(before, before[:-2] + b'r"')
    schema_json = fastavro.reader(io.BytesIO(value)).metadata["avro.schema"].encode()
    with pytest.raises(AvroContainerError, match="'ztf.alert.prv_candidate' has no fields list|"
                                                 "'prv_candidate' has no fields list"):
        parsed_schema(schema_json.replace(before, before[:-2] + b'r"'))
    with pytest.raises(DecodeError, match="has no fields list"):
        AlertDecoder(ZTF, EVERY)(damaged)
    with pytest.raises(DecodeError, match="has no fields list"):
        RawDecoder()(damaged)


# ---- in place: a decode worker reads packets through a memoryview of its shared memory ---------

def _outcome(decode: FramedDecoder, value: Any, schemas: dict[int, bytes | str]) -> tuple[str, Any]:
    try:
        return "records", decode(value, schemas)
    except DecodeError as exc:
        return "error", str(exc)


def _in_shared_memory(value: bytes) -> memoryview:
    """`value` as a decode worker sees it: a slice of a bigger buffer, with other bytes around."""
    return memoryview(b"\xaa" * 7 + value + b"\x55" * 9)[7:7 + len(value)]


@pytest.mark.timeout(300)
def test_a_memoryview_decodes_to_the_same_records_and_errors_as_bytes() -> None:
    """The same records (bytes and str, never a view of the buffer) or the same error message,
    for every shipped packet and damaged copies of each."""
    rng = random.Random(20261130)
    checked = {"records": 0, "error": 0}
    cases = [(p, ZTF) for p in GOOD[:8]] + [(p, LSST) for p in LSST_PACKETS]
    for path, survey in cases:
        value = path.read_bytes()
        variants = [value] + [value[:rng.randrange(len(value))] for _ in range(4)]
        for at in [rng.randrange(min(len(value), 30000)) for _ in range(8)]:
            damaged = bytearray(value)
            damaged[at] ^= 1 << rng.randrange(8)
            variants.append(bytes(damaged))
        for decode in (AlertDecoder(survey, EVERY), RawDecoder()):  # the helpers are shared with use_regex=False
            for v in variants:
                schemas = schemas_of(v)
                want = _outcome(decode, v, schemas)
                got = _outcome(decode, _in_shared_memory(v), schemas)
                assert got[0] == want[0] and (same(got[1], want[1]) if got[0] == "records" else got[1] == want[1]), \
                    (path.name, got[0], want[0], got[1] if got[0] == "error" else want[1] if want[0] == "error" else "")
                checked[got[0]] += 1
    assert checked["records"] > 0 and checked["error"] > 0, checked
