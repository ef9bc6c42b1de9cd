"""The PostgreSQL probability sink against the real server: what goes in comes back, however odd
the text, and a second write of the same keys updates them in place."""
from __future__ import annotations

import math

import pytest
from step_support import drop_table, pg_rows, unique

from step_runtime.spec.common import SecretKeyRef
from step_runtime.spec.pipelinestep import PostgresSink
from step_runtime.step.sinks.postgres import PostgresSinkWriter

ODD = ['quote"d', "back\\slash", "NULL", " spaced ", "{brace,comma}", "ünïcødé", "tab\tand\nnewline"]


def _records(probabilities: list[float]) -> list[dict]:
    return [{"oid": oid, "survey": "lsst", "probabilities": [
        {"classifier_name": "demo", "classifier_version": 'v"1', "class_name": cls, "probability": p, "ranking": r}
        for r, (cls, p) in enumerate(zip(ODD[::-1], probabilities), start=1)]} for oid in ODD]


def test_odd_text_and_special_floats_round_trip_and_upsert(postgres_dsn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    ref = SecretKeyRef(name="pg", key="dsn")
    monkeypatch.setenv(ref.env_var_name(), postgres_dsn)
    table = unique("prob_odd")
    sink = PostgresSinkWriter("pg", PostgresSink(dsn=ref, table=table, mode="probability", create_table=True),
                              "spec.sinks[0].postgres", survey="lsst")
    first = [0.5, float("nan"), float("inf"), -float("inf"), 1e-300, 0.0, 0.25]
    try:
        sink.write(_records(first))
        rows = pg_rows(postgres_dsn, table)
        assert len(rows) == len(ODD) ** 2
        got = {(r[0], r[1]): r for r in rows}
        for oid in ODD:
            for rank, (cls, p) in enumerate(zip(ODD[::-1], first), start=1):
                row = got[(oid, cls)]
                assert row[2:4] == ("demo", 'v"1') and row[5] == rank
                assert (math.isnan(row[4]) and math.isnan(p)) or row[4] == p
        sink.write(_records([0.9] * len(ODD)))  # the same keys again: updated, not added
        rows = pg_rows(postgres_dsn, table)
        assert len(rows) == len(ODD) ** 2 and {r[4] for r in rows} == {0.9}
    finally:
        if sink.conn is not None:
            sink.conn.close()
        drop_table(postgres_dsn, table)
