"""PostgreSQL sink pieces that need no server: quoting, the upsert statement, row shaping."""
from __future__ import annotations

import pytest

from step_runtime.step.sinks.jsonsafe import dumps
from step_runtime.step.sinks.postgres import last_per_key, probability_rows, quote_table, upsert_sql


def test_upsert_statement_quotes_everything() -> None:
    sql = upsert_sql("public.probability", ["oid", "class_name", "probability"], ["oid", "class_name"])
    assert sql == ('INSERT INTO "public"."probability" ("oid", "class_name", "probability") VALUES %s '
                   'ON CONFLICT ("oid", "class_name") DO UPDATE SET "probability" = EXCLUDED."probability"')
    assert upsert_sql("t", ["oid"], ["oid"]).endswith("DO NOTHING")


@pytest.mark.parametrize("bad", ['x"; drop', "a b", "", "a.b.c"])
def test_bad_identifiers_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        quote_table(bad)


def test_probability_rows_explode_every_class() -> None:
    rec = {"oid": "ZTF1", "probabilities": [
        {"classifier_name": "c", "classifier_version": "1", "class_name": "A", "probability": 0.7, "ranking": 1},
        {"classifier_name": "c", "classifier_version": "1", "class_name": "B", "probability": 0.3, "ranking": 2}]}
    rows = probability_rows([rec], "ztf")
    assert rows == [
        {"oid": "ZTF1", "class_name": "A", "classifier_name": "c", "classifier_version": "1", "probability": 0.7,
         "ranking": 1, "survey": "ztf"},
        {"oid": "ZTF1", "class_name": "B", "classifier_name": "c", "classifier_version": "1", "probability": 0.3,
         "ranking": 2, "survey": "ztf"}]
    # a record that says its survey (LSST outputs do) keeps it
    assert {r["survey"] for r in probability_rows([{**rec, "survey": "lsst"}], "ztf")} == {"lsst"}


def test_last_row_per_key_wins() -> None:
    rows = [{"oid": "a", "v": 1}, {"oid": "b", "v": 2}, {"oid": "a", "v": 3}]
    assert last_per_key(rows, ["oid"]) == [{"oid": "a", "v": 3}, {"oid": "b", "v": 2}]


def test_json_output_has_no_nan() -> None:
    assert dumps({"a": float("nan"), "b": [float("inf"), 1.0], "c": b"\x01"}) == '{"a":null,"b":[null,1.0],"c":"01"}'
