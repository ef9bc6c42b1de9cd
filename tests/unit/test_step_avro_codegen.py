"""The projected ZTF decoder gives exactly project_alert(decode_ztf_avro(packet)), or a DecodeError."""
from __future__ import annotations

import datetime
import io
import math
import random
from pathlib import Path
from typing import Any

import fastavro
import pytest

from step_runtime.step.avro import codegen
from step_runtime.step.avro.container import AvroContainerError, parsed_schema
from step_runtime.step.avro.codegen import generate_source, zigzag
from step_runtime.step.avro.projection import ProjectedZtfDecoder
from step_runtime.step.decode import decode_ztf_avro, make_decoder
from step_runtime.step.errors import DecodeError
from step_runtime.step.decode import ALERT_CANDIDATE_FIELDS, ALERT_TOP_FIELDS, project_alert
from step_runtime.step.synthetic import synthetic_alerts

REPO = Path(__file__).resolve().parents[2]
FOLDERS = [REPO / "examples" / "data" / "alerts", Path("/work/shared/data/ztf/alerts")]
PACKETS = sorted({p for folder in FOLDERS if folder.is_dir() for p in folder.glob("*.avro")}, key=str)
GOOD = [p for p in PACKETS if not p.name.startswith("corrupt")]


def _no_fallback(value: bytes) -> dict[str, Any]:
    raise AssertionError("the generated reader should handle every ZTF schema")


def _decoder(use_regex: bool = True, top: tuple[str, ...] = ALERT_TOP_FIELDS,
             cand: tuple[str, ...] = ALERT_CANDIDATE_FIELDS) -> ProjectedZtfDecoder:
    return ProjectedZtfDecoder(top, cand, fallback=_no_fallback, use_regex=use_regex)


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


def expected(value: bytes) -> dict[str, Any] | DecodeError:
    try:
        return project_alert(decode_ztf_avro(value))
    except DecodeError as exc:
        return exc


def test_the_real_packets_are_there() -> None:
    assert len(GOOD) >= 10


@pytest.mark.parametrize("use_regex", [True, False], ids=["regex", "python"])
@pytest.mark.parametrize("path", GOOD, ids=lambda p: f"{p.parent.parent.name}/{p.name}")
def test_every_real_packet_gives_the_projected_fastavro_record(path: Path, use_regex: bool) -> None:
    value = path.read_bytes()
    want = expected(value)
    assert not isinstance(want, DecodeError)
    got = _decoder(use_regex)(value)
    assert same(got, want), path.name
    assert isinstance(got["candidate"]["magpsf"], float)  # a float32 field, widened as fastavro does


def test_the_corrupt_packet_is_a_decode_error() -> None:
    for folder in FOLDERS:
        path = folder / "corrupt-87704463155000.avro"
        if path.is_file():
            with pytest.raises(DecodeError, match="undecodable Avro container"):
                _decoder()(path.read_bytes())


def test_synthetic_alerts_of_every_schema_match() -> None:
    decode = _decoder()
    n = 0
    for _, candid, value in synthetic_alerts(FOLDERS[0], 300):
        got = decode(value)
        assert got["candid"] == candid
        assert same(got, expected(value))
        n += 1
    assert n == 300


def test_make_decoder_projects_for_every_format() -> None:
    value = GOOD[0].read_bytes()
    projected = make_decoder("ztf-avro", None, project=True)
    assert isinstance(projected, ProjectedZtfDecoder)
    assert same(projected(value), expected(value))
    assert "cutoutScience" not in make_decoder("ztf-avro", None)(value)  # the full path stays
    assert "rb" in make_decoder("ztf-avro", None)(value)["candidate"]
    assert make_decoder("json", None, project=True)(b'{"objectId": "a", "x": 1}') == {
        "objectId": "a", "candidate": None, "prv_candidates": None}


@pytest.mark.parametrize("value", [b"", b"Obj", b"Obj\x01", b"not avro at all", b"Obj\x01\x02\x00",
                                   b"Obj\x01\x01", b"Obj\x01\x02\x16avro.schema\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01"])
def test_garbage_is_a_decode_error(value: bytes) -> None:
    with pytest.raises(DecodeError):
        _decoder()(value)


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
TOP = ("objectId", "flag", "when", "kind", "blob", "tags", "digest", "node", "nodes", "other_kind",
       "other_digest", "f")
CAND = ("jd", "ra", "name", "mag", "kind", "flag", "blob")


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


def _container(records: list[dict[str, Any]], codec: str = "null") -> bytes:
    buf = io.BytesIO()
    fastavro.writer(buf, fastavro.parse_schema(GENERIC_SCHEMA), records, codec=codec)
    return buf.getvalue()


@pytest.mark.parametrize("use_regex", [True, False], ids=["regex", "python"])
@pytest.mark.parametrize("codec", ["null", "deflate"])
def test_every_avro_type_decodes_like_fastavro(codec: str, use_regex: bool) -> None:
    decode = _decoder(use_regex, TOP, CAND)
    for i in range(40):
        value = _container([_generic_record(i)], codec)
        full = decode_ztf_avro(value)
        want = {k: full[k] for k in TOP if k in full}
        want["candidate"] = {k: full["candidate"].get(k) for k in CAND if k in full["candidate"]}
        prv = full["prv_candidates"]
        want["prv_candidates"] = None if prv is None else [
            p if p is None else {k: p.get(k) for k in CAND if k in p} for p in prv]
        got = decode(value)
        assert same(got, want), i
    assert isinstance(got["when"], datetime.datetime)  # logical types converted as fastavro does


def test_two_records_in_a_container_are_refused_like_the_full_path() -> None:
    value = _container([_generic_record(1), _generic_record(2)])
    with pytest.raises(DecodeError, match="expected one alert"):
        decode_ztf_avro(value)
    with pytest.raises(DecodeError, match="expected one alert"):
        _decoder(True, TOP, CAND)(value)


def _array_schema_packet(body: bytes) -> bytes:
    """A container whose record is {objectId: string, candidate: null, prv_candidates: array<Cand>}."""
    schema = {"type": "record", "name": "a", "fields": [
        {"name": "objectId", "type": "string"},
        {"name": "prv_candidates", "type": {"type": "array", "items": {
            "type": "record", "name": "c", "fields": [{"name": "jd", "type": "double"},
                                                      {"name": "x", "type": "long"}]}}}]}
    head = io.BytesIO()
    fastavro.writer(head, fastavro.parse_schema(schema), [])
    header = head.getvalue()
    return header + zigzag(1) + zigzag(len(body)) + body + header[-16:]


def test_negative_array_block_counts_carry_a_byte_size() -> None:
    item = b"\x00" * 7 + b"\x40" + zigzag(-5)  # jd = 2.0, x = -5
    body = zigzag(2) + b"id" + zigzag(-2) + zigzag(2 * len(item)) + item * 2 + zigzag(1) + item + b"\x00"
    value = _array_schema_packet(body)
    want = project_alert(decode_ztf_avro(value))
    assert want["prv_candidates"] == [{"jd": 2.0}] * 3
    for use_regex in (True, False):
        assert same(_decoder(use_regex)(value), want)
    bad_size = zigzag(2) + b"id" + zigzag(-2) + zigzag(-1) + item * 2 + b"\x00"
    with pytest.raises(DecodeError, match="negative block size"):
        _decoder()(_array_schema_packet(bad_size))
    huge_count = zigzag(2) + b"id" + zigzag(10**9) + item + b"\x00"
    with pytest.raises(DecodeError, match="block of 1000000000 items"):
        _decoder()(_array_schema_packet(huge_count))
    long_varint = zigzag(2) + b"id" + b"\x02" + b"\x00" * 8 + b"\xff" * 11 + b"\x00"
    with pytest.raises(DecodeError, match="longer than 10 bytes"):
        _decoder()(_array_schema_packet(long_varint))


def test_the_generated_source_skips_cutouts() -> None:
    value = GOOD[0].read_bytes()
    schema = fastavro.reader(io.BytesIO(value)).writer_schema
    source = generate_source(fastavro.parse_schema(schema), ALERT_TOP_FIELDS, ALERT_CANDIDATE_FIELDS)
    assert "'objectId'" in source and "'cutoutScience'" not in source
    compile(source, "<test>", "exec")


def test_unsupported_schemas_fall_back_to_fastavro() -> None:
    calls: list[bytes] = []

    def fallback(value: bytes) -> dict[str, Any]:
        calls.append(value)
        return project_alert(decode_ztf_avro(value))

    buf = io.BytesIO()
    fastavro.writer(buf, fastavro.parse_schema({"type": "map", "values": "int"}), [{"objectId": 3}])
    decode = ProjectedZtfDecoder(ALERT_TOP_FIELDS, ALERT_CANDIDATE_FIELDS, fallback=fallback)
    assert decode(buf.getvalue()) == {"objectId": 3, "candidate": None, "prv_candidates": None}
    assert len(calls) == 1


# ---- fuzz: damaged packets decode as fastavro would, or raise DecodeError ---------------------

def _check_damaged(decode: ProjectedZtfDecoder, value: bytes) -> str:
    want = expected(value)
    try:
        got = decode(value)
    except DecodeError:
        return "error"  # allowed whatever fastavro did: we may be stricter, never looser
    assert not isinstance(want, DecodeError), f"fastavro refused ({want}) but the projection decoded it"
    assert same(got, want)
    return "same"


@pytest.mark.timeout(120)
@pytest.mark.parametrize("use_regex", [True, False], ids=["regex", "python"])
def test_fuzz_truncations_and_byte_flips(use_regex: bool) -> None:
    rng = random.Random(20261126)
    decode = _decoder(use_regex)
    outcomes = {"same": 0, "error": 0}
    for path in GOOD:
        value = path.read_bytes()
        for cut in [rng.randrange(len(value)) for _ in range(15)] + [len(value) - 1, len(value) - 17]:
            outcomes[_check_damaged(decode, value[:cut])] += 1
        # flips near the front hit the header and the records; the back is mostly cutout bytes
        body = [rng.randrange(min(len(value), 30000)) for _ in range(60)] + [rng.randrange(len(value)) for _ in range(10)]
        for at in body:
            damaged = bytearray(value)
            damaged[at] ^= 1 << rng.randrange(8)
            outcomes[_check_damaged(decode, bytes(damaged))] += 1
    assert outcomes["same"] > 0 and outcomes["error"] > 0, outcomes


def test_truncations_of_the_projected_fields_region_never_escape() -> None:
    value = GOOD[0].read_bytes()
    decode = _decoder()
    for cut in range(0, 24000, 7):
        with pytest.raises(DecodeError):
            decode(value[:cut])


def test_readers_are_generated_once_per_schema() -> None:
    codegen._READERS.clear()
    decode = _decoder()
    for path in GOOD:
        decode(path.read_bytes())
        decode(path.read_bytes())
    n_schemas = len({fastavro.reader(io.BytesIO(p.read_bytes())).metadata["avro.schema"] for p in GOOD})
    assert len(codegen._READERS) == n_schemas


ODD_SHAPES = [
    # candidate a map (project_alert projects its keys), history a map (kept whole)
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


@pytest.mark.parametrize("use_regex", [True, False], ids=["regex", "python"])
@pytest.mark.parametrize("shape", ODD_SHAPES, ids=["maps", "mixed-history", "array-and-string"])
def test_odd_candidate_and_history_types_project_like_project_alert(shape: tuple, use_regex: bool) -> None:
    cand_field, prv_field, cand, prv = shape
    schema = {"type": "record", "name": "odd", "fields": [{"name": "objectId", "type": "string"}, cand_field, prv_field]}
    buf = io.BytesIO()
    fastavro.writer(buf, fastavro.parse_schema(schema), [{"objectId": "o", "candidate": cand, "prv_candidates": prv}])
    value = buf.getvalue()
    want = expected(value)
    assert same(_decoder(use_regex)(value), want)


def test_a_record_without_fields_in_the_writer_schema_is_refused() -> None:
    # one flipped bit of a real packet ("fields" -> "fieldr") made fastavro decode the history as
    # empty records and allocate until the process was killed; both paths now refuse the schema
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
        _decoder()(damaged)
    with pytest.raises(DecodeError, match="has no fields list"):
        decode_ztf_avro(damaged)
