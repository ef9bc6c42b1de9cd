"""Decoding ZTF packets of every schema version, schemaless Avro and JSON; validation of alerts of both surveys."""
from __future__ import annotations

import io
import json
import math
from pathlib import Path

import fastavro
import pytest

from step_runtime.step.alert_model import LSST, ZTF
from step_runtime.step.avro.decoders import RawDecoder
from step_runtime.step.avro.framing import schema_ids
from step_runtime.step.avro.schemas import SchemaCache, SchemaDirectory
from step_runtime.step.decode import alerts_of, decode_json, make_decoder
from step_runtime.step.errors import DecodeError
from step_runtime.step.validate import AlertGate, ValidationError, validate_alert

ALERTS = Path(__file__).resolve().parents[2] / "examples" / "data" / "alerts"
GOOD = sorted(p for p in ALERTS.glob("*.avro") if not p.name.startswith("corrupt"))
LSST_DATA = Path(__file__).resolve().parents[2] / "examples" / "data" / "lsst"
LSST_PACKETS = sorted((LSST_DATA / "alerts").glob("*.avro")) + sorted((LSST_DATA / "schema").glob("*/*/sample_data/*.avro"))


def test_the_shipped_packets_are_all_there() -> None:
    assert len(GOOD) == 10
    assert (ALERTS / "corrupt-87704463155000.avro").is_file()


@pytest.mark.parametrize("path", GOOD, ids=lambda p: p.name)
def test_every_real_packet_decodes_like_fastavro_reader(path: Path) -> None:
    data = path.read_bytes()
    expected = list(fastavro.reader(io.BytesIO(data)))
    assert RawDecoder()(data) == expected  # whole records, cutouts included (the python processor's)
    alert = alerts_of(data)[0]
    assert abs(alert["source"]["sourceId"]) == int(path.name.split("-")[0].split(".")[0])
    assert isinstance(alert["source"]["ra"], float)


def test_the_corrupt_packet_is_a_decode_error() -> None:
    with pytest.raises(DecodeError, match="undecodable Avro container"):
        RawDecoder()((ALERTS / "corrupt-87704463155000.avro").read_bytes())


@pytest.mark.parametrize("value", [b"", b"Obj\x01", b"not avro at all", b"Obj\x01\x02\x00"])
def test_garbage_is_a_decode_error(value: bytes) -> None:
    with pytest.raises(DecodeError):
        RawDecoder()(value)


def test_truncated_real_packet_is_a_decode_error() -> None:
    data = GOOD[0].read_bytes()
    with pytest.raises(DecodeError):
        RawDecoder()(data[: len(data) // 2])


def test_schemaless_avro_with_schema_file(tmp_path: Path) -> None:
    schema = {"type": "record", "name": "a", "fields": [{"name": "oid", "type": "string"},
                                                         {"name": "x", "type": "double"}]}
    path = tmp_path / "a.avsc"
    path.write_text(json.dumps(schema))
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, fastavro.parse_schema(schema), {"oid": "ZTF1", "x": 1.5})
    decode = make_decoder("avro", path, None)
    assert decode(buf.getvalue(), {}) == [{"oid": "ZTF1", "x": 1.5}]
    with pytest.raises(DecodeError):
        decode(buf.getvalue() + b"extra", {})
    with pytest.raises(ValueError, match="format avro carries messages, not alerts"):
        make_decoder("avro", path, frozenset({"oid"}))


def test_json_objects_only() -> None:
    assert decode_json(b'{"a": NaN}')[0]["a"] != decode_json(b'{"a": NaN}')[0]["a"]  # NaN accepted
    with pytest.raises(DecodeError, match="expected an object"):
        decode_json(b"[1, 2]")
    with pytest.raises(DecodeError, match="invalid JSON"):
        decode_json(b"\xff{")


def _alert(survey: str = "ztf", oid: object = "ZTF20abcdefg", solar: bool = False, **source: object) -> dict:
    src = {"sourceId": 1, "ra": 10.0, "dec": 20.0, "mjd": 59000.0, "band": "g", "mag": 18.0, "magErr": 0.1,
           "flux": None, "fluxErr": None, "reliability": 0.9}
    if survey == "lsst":
        src.update(mag=None, magErr=None, flux=1200.0, fluxErr=30.0)
    src.update(source)
    return {"survey": survey, "oid": oid, "solarSystem": solar, "source": src, "detections": None}


def test_real_alerts_validate_except_the_prototype() -> None:
    for path in GOOD:
        alert = alerts_of(path.read_bytes())[0]
        if "proto" in path.name:
            with pytest.raises(ValidationError, match="objectId"):
                validate_alert(alert, ZTF)
        else:
            validate_alert(alert, ZTF)


def test_every_rubin_sample_validates() -> None:
    cache = SchemaCache(SchemaDirectory(LSST_DATA / "schema"))
    n = 0
    for path in LSST_PACKETS:
        value = path.read_bytes()
        for alert in alerts_of(value, "lsst-avro", cache.resolve(schema_ids([value]))):
            validate_alert(alert, LSST)
            n += 1
    assert n >= 15 + 12 + 10


@pytest.mark.parametrize("source,field", [
    ({"dec": 91.0}, "candidate.dec"), ({"dec": -90.5}, "candidate.dec"), ({"ra": 360.0}, "candidate.ra"),
    ({"mag": math.nan}, "candidate.magpsf"), ({"mag": None}, "candidate.magpsf"),
    ({"magErr": math.inf}, "candidate.sigmapsf"), ({"band": 7}, "candidate.fid"), ({"mjd": None}, "candidate.jd"),
    ({"sourceId": "x"}, "candidate.candid"),
])
def test_invalid_ztf_alerts_name_the_packet_field(source: dict, field: str) -> None:
    with pytest.raises(ValidationError, match=field.replace(".", r"\.")):
        validate_alert(_alert(**source), ZTF)


@pytest.mark.parametrize("source,field", [
    ({"flux": None}, "diaSource.psfFlux"), ({"fluxErr": math.nan}, "diaSource.psfFluxErr"),
    ({"band": "q"}, "diaSource.band"), ({"ra": -1.0}, "diaSource.ra"), ({"mjd": math.inf}, "diaSource.midpointMjdTai"),
])
def test_invalid_lsst_alerts_name_the_packet_field(source: dict, field: str) -> None:
    with pytest.raises(ValidationError, match=field.replace(".", r"\.")):
        validate_alert(_alert("lsst", "170", **source), LSST)
    with pytest.raises(ValidationError, match="diaSource.diaObjectId: missing or empty"):
        validate_alert(_alert("lsst", None), LSST)


def test_fid_messages_keep_the_ztf_wording() -> None:
    with pytest.raises(ValidationError, match=r"candidate\.fid: expected 1 \(g\), 2 \(r\) or 3 \(i\) \(got 7\)"):
        validate_alert(_alert(band=7), ZTF)


def test_missing_candidate_is_invalid() -> None:
    alert = _alert()
    del alert["source"]
    with pytest.raises(ValidationError, match="candidate: missing"):
        validate_alert(alert, ZTF)


def test_the_gate_filters_solar_system_and_unreliable_alerts() -> None:
    gate = AlertGate(LSST, min_reliability=0.5)
    assert gate(_alert("lsst", "170")) is None
    assert gate(_alert("lsst", "ss123", solar=True)) == "solar_system"
    assert gate(_alert("lsst", "170", reliability=0.2)) == "reliability"
    assert gate(_alert("lsst", "170", reliability=None)) == "reliability"  # no score: not shown real
    assert AlertGate(LSST, solar_system="keep")(_alert("lsst", "ss123", solar=True)) is None
    with pytest.raises(ValidationError):
        gate(_alert("lsst", "170", flux=None))  # validation first: a bad alert is a dead letter
