"""PostgreSQL sink pieces that need no server: quoting, the upsert statement, row shaping."""
from __future__ import annotations

import pytest

from step_runtime.step.sinks.jsonsafe import dumps
from step_runtime.step.sinks.postgres import array_literal, last_per_key, probability_columns, quote_table, upsert_sql


def test_upsert_statement_quotes_everything() -> None:
    sql = upsert_sql("public.probability", ["oid", "class_name", "probability"], ["oid", "class_name"])
    assert sql == ('INSERT INTO "public"."probability" ("oid", "class_name", "probability") VALUES %s '
                   'ON CONFLICT ("oid", "class_name") DO UPDATE SET "probability" = EXCLUDED."probability"')
    assert upsert_sql("t", ["oid"], ["oid"]).endswith("DO NOTHING")


@pytest.mark.parametrize("bad", ['x"; drop', "a b", "", "a.b.c"])
def test_bad_identifiers_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        quote_table(bad)


def test_probability_columns_explode_every_class_and_keep_the_last_row_per_key() -> None:
    rec = {"oid": "ZTF1", "probabilities": [
        {"classifier_name": "c", "classifier_version": "1", "class_name": "A", "probability": 0.7, "ranking": 1},
        {"classifier_name": "c", "classifier_version": "1", "class_name": "B", "probability": 0.3, "ranking": 2}]}
    assert probability_columns([rec], "ztf") == {
        "oid": ["ZTF1", "ZTF1"], "class_name": ["A", "B"], "classifier_name": ["c", "c"],
        "classifier_version": ["1", "1"], "probability": [0.7, 0.3], "ranking": [1, 2], "survey": ["ztf", "ztf"]}
    # a record that says its survey (LSST outputs do) keeps it; a table without the column gets none
    assert probability_columns([{**rec, "survey": "lsst"}], "ztf")["survey"] == ["lsst", "lsst"]
    assert "survey" not in probability_columns([rec], "ztf", with_survey=False)
    # the same object twice in a batch: its later probabilities win, each key once (ON CONFLICT)
    again = {"oid": "ZTF1", "probabilities": [{**p, "probability": 1 - p["probability"]} for p in rec["probabilities"]]}
    twice = probability_columns([rec, again], "ztf")
    assert twice["class_name"] == ["A", "B"] and twice["probability"] == [0.30000000000000004, 0.7]
    assert probability_columns([], "ztf")["oid"] == []


def test_last_row_per_key_wins() -> None:
    rows = [{"oid": "a", "v": 1}, {"oid": "b", "v": 2}, {"oid": "a", "v": 3}]
    assert last_per_key(rows, ["oid"]) == [{"oid": "a", "v": 3}, {"oid": "b", "v": 2}]


def test_json_output_has_no_nan() -> None:
    assert dumps({"a": float("nan"), "b": [float("inf"), 1.0], "c": b"\x01"}) == '{"a":null,"b":[null,1.0],"c":"01"}'


def test_array_literals_quote_every_text_and_spell_special_floats_portably() -> None:
    from decimal import Decimal

    import numpy as np

    assert array_literal(['a"b', "c\\d", "NULL", None, " sp ", "{,}", "é"], "varchar") == \
        '{"a\\"b","c\\\\d","NULL",NULL," sp ","{,}","é"}'
    assert array_literal([0.1, float("nan"), float("inf"), -float("inf"), None, np.float64(0.25), 2, Decimal("0.5")],
                         "double precision") == "{0.1,NaN,Infinity,-Infinity,NULL,0.25,2.0,0.5}"
    assert array_literal([1, np.int64(2), 3.0, None], "integer") == "{1,2,3,NULL}"
    assert array_literal([], "varchar") == "{}"
    with pytest.raises(ValueError, match="NUL"):
        array_literal(["a\x00b"], "varchar")
