"""Decoding ZTF packets of every schema version, schemaless Avro and JSON; validation of alerts."""
from __future__ import annotations

import io
import json
import math
from pathlib import Path

import fastavro
import pytest

from step_runtime.step.avro.container import read_container
from step_runtime.step.decode import decode_json, decode_ztf_avro, make_decoder
from step_runtime.step.errors import DecodeError
from step_runtime.step.validate import ValidationError, validate_alert

ALERTS = Path(__file__).resolve().parents[2] / "examples" / "data" / "alerts"
GOOD = sorted(p for p in ALERTS.glob("*.avro") if not p.name.startswith("corrupt"))


def test_the_shipped_packets_are_all_there() -> None:
    assert len(GOOD) == 10
    assert (ALERTS / "corrupt-87704463155000.avro").is_file()


@pytest.mark.parametrize("path", GOOD, ids=lambda p: p.name)
def test_every_real_packet_decodes_like_fastavro_reader(path: Path) -> None:
    data = path.read_bytes()
    expected = list(fastavro.reader(io.BytesIO(data)))
    assert read_container(data) == expected
    alert = decode_ztf_avro(data)
    assert abs(alert["candid"]) == int(path.name.split("-")[0].split(".")[0])
    assert "cutoutScience" not in alert  # stamps dropped after decoding
    assert isinstance(alert["candidate"]["ra"], float)


def test_the_corrupt_packet_is_a_decode_error() -> None:
    with pytest.raises(DecodeError, match="undecodable Avro container"):
        decode_ztf_avro((ALERTS / "corrupt-87704463155000.avro").read_bytes())


@pytest.mark.parametrize("value", [b"", b"Obj\x01", b"not avro at all", b"Obj\x01\x02\x00"])
def test_garbage_is_a_decode_error(value: bytes) -> None:
    with pytest.raises(DecodeError):
        decode_ztf_avro(value)


def test_truncated_real_packet_is_a_decode_error() -> None:
    data = GOOD[0].read_bytes()
    with pytest.raises(DecodeError):
        decode_ztf_avro(data[: len(data) // 2])


def test_schemaless_avro_with_schema_file(tmp_path: Path) -> None:
    schema = {"type": "record", "name": "a", "fields": [{"name": "oid", "type": "string"},
                                                         {"name": "x", "type": "double"}]}
    path = tmp_path / "a.avsc"
    path.write_text(json.dumps(schema))
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, fastavro.parse_schema(schema), {"oid": "ZTF1", "x": 1.5})
    decode = make_decoder("avro", path)
    assert decode(buf.getvalue()) == {"oid": "ZTF1", "x": 1.5}
    with pytest.raises(DecodeError):
        decode(buf.getvalue() + b"extra")


def test_json_objects_only() -> None:
    assert decode_json(b'{"a": NaN}')["a"] != decode_json(b'{"a": NaN}')["a"]  # NaN accepted
    with pytest.raises(DecodeError, match="expected an object"):
        decode_json(b"[1, 2]")
    with pytest.raises(DecodeError, match="invalid JSON"):
        decode_json(b"\xff{")


def _alert(**candidate: object) -> dict:
    cand = {"ra": 10.0, "dec": 20.0, "jd": 2459000.5, "magpsf": 18.0, "sigmapsf": 0.1, "fid": 1}
    cand.update(candidate)
    return {"objectId": "ZTF20abcdefg", "candid": 1, "candidate": cand, "prv_candidates": None}


def test_real_alerts_validate_except_the_prototype() -> None:
    for path in GOOD:
        alert = decode_ztf_avro(path.read_bytes())
        if "proto" in path.name:
            with pytest.raises(ValidationError, match="objectId"):
                validate_alert(alert)
        else:
            validate_alert(alert)


@pytest.mark.parametrize("candidate,field", [
    ({"dec": 91.0}, "candidate.dec"), ({"dec": -90.5}, "candidate.dec"), ({"ra": 360.0}, "candidate.ra"),
    ({"magpsf": math.nan}, "candidate.magpsf"), ({"magpsf": None}, "candidate.magpsf"),
    ({"sigmapsf": math.inf}, "candidate.sigmapsf"), ({"fid": 7}, "candidate.fid"),
])
def test_invalid_alerts_name_the_field(candidate: dict, field: str) -> None:
    with pytest.raises(ValidationError, match=field.replace(".", r"\.")):
        validate_alert(_alert(**candidate))


def test_missing_candidate_is_invalid() -> None:
    alert = _alert()
    del alert["candidate"]
    with pytest.raises(ValidationError, match="candidate: missing"):
        validate_alert(alert)
