"""BuildSummary: what `alertops build` writes as its termination message and the operator reads back."""
from __future__ import annotations

import json
import random

import pytest

from step_runtime.spec.build_summary import TERMINATION_LIMIT, BuildSummary, SummaryError
from step_runtime.trainingset.report import compact_summary, failure_message, summary_document

# What alertops 0.1.0's compact_summary wrote (snake_case; per-catalog conflicts may be null).
PREVIOUS_RELEASE = ('{"phase":"Succeeded","rows_in":14021,"rows_out":2249,"conflicts":3,'
                    '"output":{"path":"/data/training/bts.parquet","format":"parquet"},'
                    '"catalogs":{"tns":{"matches":2249,"conflicts":3},"vsx":{"matches":10,"conflicts":null}},'
                    '"classes":{"SN Ia":1500,"SN II":749}}')


def fits(text: str) -> dict:
    assert len(text.encode()) <= TERMINATION_LIMIT
    return json.loads(text)


def test_a_small_summary_is_written_whole_and_reads_back():
    summary = {"name": "bts", "phase": "Succeeded", "rows_in": 50, "rows_out": 12, "conflicts": 1,
               "output": {"path": "/data/t.parquet", "format": "parquet"}, "policy": "priority",
               "catalogs": {"tns": {"matches": 9, "conflicts": 1, "matched_unlabeled": 4, "rows_used": 2053}},
               "classes": {"SN Ia": 7, "SN II": 5}}
    message = fits(compact_summary(summary))
    assert "shortened" not in message and "policy" not in message
    assert message["catalogs"] == {"tns": {"matches": 9, "conflicts": 1, "matched_unlabeled": 4}}
    back = BuildSummary.from_termination_message(compact_summary(summary))
    assert (back.rows_in, back.rows_out, back.output.path) == (50, 12, "/data/t.parquet")
    assert back.catalogs["tns"].matched_unlabeled == 4 and back.classes == {"SN Ia": 7, "SN II": 5}


def test_the_summary_file_keeps_every_field_the_build_writes():
    summary = {"name": "bts", "phase": "Succeeded", "rows_in": 5, "rows_out": 2, "trust_order": ["a"],
               "catalogs": {"a": {"matches": 2, "origin": "/x.csv", "labels": {"RRL": 2}}},
               "output": {"path": "/o.parquet", "format": "parquet"}, "duration_seconds": 1.5}
    assert summary_document(summary) == summary


def test_the_previous_release_reads():
    summary = BuildSummary.from_termination_message(PREVIOUS_RELEASE)
    assert (summary.rows_in, summary.rows_out, summary.output.path) == (14021, 2249, "/data/training/bts.parquet")
    assert summary.catalogs["vsx"].matches == 10 and summary.catalogs["vsx"].conflicts is None
    partition = BuildSummary.from_termination_message(
        '{"name":"b","phase":"Succeeded","partition":1,"partitions":3,"rows":7,"output":"/data/t.parquet.parts/1"}')
    assert partition.output.path == "/data/t.parquet.parts/1" and partition.rows == 7
    failed = BuildSummary.from_termination_message('{"phase":"Failed","error":"spec.source.path: no such file"}')
    assert failed.phase == "Failed" and failed.error == "spec.source.path: no such file"


@pytest.mark.parametrize("text, why", [
    ("", "empty"),
    ("Traceback (most recent call last):", "not JSON"),
    ('{"phase":"Succeeded","rows_in":1,"catalogs":{"a":{"matc' + "x" * 4096, "cut at 4096 bytes"),
    ("[1, 2]", "expected an object"),
    ('{"rows_in": -3}', "rows_in"),
    ('{"catalogs": {"a": {"matches": "many"}}}', "catalogs.a.matches"),
])
def test_what_is_not_a_summary_is_refused_with_a_reason(text, why):
    with pytest.raises(SummaryError, match=why):
        BuildSummary.from_termination_message(text)


def test_many_classes_are_cut_to_the_largest():
    classes = {f"class-{i:04d}-{'x' * 40}": i for i in range(400)}
    message = fits(compact_summary({"phase": "Succeeded", "rows_in": 1, "rows_out": 1, "classes": classes}))
    assert message["shortened"] == ["classes"]
    assert list(message["classes"].values()) == list(range(399, 379, -1))


def test_a_long_error_in_any_script_is_cut_to_fit_and_stays_json():
    error = "Die Eingabe ist ungültig: ñandú 東京 " * 400
    message = fits(failure_message(error))
    assert message["phase"] == "Failed" and message["shortened"] == ["error"]
    assert message["error"].endswith("...") and error.startswith(message["error"][:-3])
    assert len(message["error"]) > 300  # cut to fit, not dropped


def test_64_catalogs_with_long_names_and_a_long_path_fit():
    catalogs = {f"{'c' * 240}-{i:02d}": {"matches": 10**6, "conflicts": 10**5, "matched_unlabeled": 10**4}
                for i in range(64)}
    summary = {"phase": "Succeeded", "rows_in": 10**7, "rows_out": 10**6, "conflicts": 7,
               "output": {"path": "/data/" + "p/" * 3000 + "t.parquet", "format": "parquet"},
               "catalogs": catalogs, "classes": {"A": 1}}
    message = fits(compact_summary(summary))
    assert (message["rows_in"], message["rows_out"], message["phase"]) == (10**7, 10**6, "Succeeded")
    assert "catalogs" in message["shortened"] and "output" in message["shortened"]
    assert 0 < len(message["catalogs"]) < 64
    assert list(message["catalogs"]) == list(catalogs)[:len(message["catalogs"])]


def test_any_summary_gives_valid_json_within_the_limit():
    rng = random.Random(7)
    alphabet = "aé東-_/ \"\\\n"
    for _ in range(60):
        def text(n: int) -> str:
            return "".join(rng.choices(alphabet, k=rng.randrange(n)))
        summary = {
            "phase": rng.choice(["Succeeded", "Failed"]), "name": text(260), "error": text(9000),
            "rows_in": rng.randrange(10**9), "rows_out": rng.randrange(10**9),
            "output": {"path": text(5000), "postgres": text(600)},
            "catalogs": {text(300) or "c": {"matches": rng.randrange(10**6)} for _ in range(rng.randrange(70))},
            "classes": {text(80) or "k": rng.randrange(10**6) for _ in range(rng.randrange(300))},
        }
        message = fits(compact_summary(summary))
        assert message["rows_in"] == summary["rows_in"] and message["rows_out"] == summary["rows_out"]
        BuildSummary.from_termination_message(compact_summary(summary))
