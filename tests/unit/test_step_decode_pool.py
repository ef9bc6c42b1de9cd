"""Decoding in worker processes gives the same records (projected) and the same errors as inline."""
from __future__ import annotations

from pathlib import Path

from step_runtime.step.decode import decode_ztf_avro
from step_runtime.step.errors import DecodeError
from step_runtime.step.decode import project_alert
from step_runtime.step.decode_pool import DecodePool
from step_runtime.step.features import alert_features

ALERTS = Path(__file__).resolve().parents[2] / "examples" / "data" / "alerts"


def test_pool_matches_inline_decoding_and_keeps_errors_in_place() -> None:
    values = [p.read_bytes() for p in sorted(ALERTS.glob("*.avro"))]
    pool = DecodePool("ztf-avro", None, workers=2, project=True)
    try:
        got = pool.decode_many(values)
    finally:
        pool.close()
    assert len(got) == len(values)
    for value, rec in zip(values, got):
        try:
            expected = project_alert(decode_ztf_avro(value))
        except DecodeError:
            assert isinstance(rec, DecodeError)
            continue
        assert rec == expected
    good = [r for r in got if not isinstance(r, DecodeError)]
    assert len(good) == 10
    # the projection keeps everything the features read
    full = [decode_ztf_avro(v) for v in values if b"corrupt" not in v[:0] and v[:4] == b"Obj\x01"]
    a, b = alert_features(full), alert_features(good)
    for name in a:
        assert ((a[name] == b[name]) | ((a[name] != a[name]) & (b[name] != b[name]))).all(), name
