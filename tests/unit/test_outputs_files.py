"""The file output writers: replace (bounded source) and append (Kafka) semantics, Parquet schemas."""
from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from step_runtime.spec.common import SpecError
from step_runtime.step.deadletter import FileDeadLetters
from step_runtime.step.errors import SinkUnavailable
from step_runtime.step.messages import DeadLetter, Message
from step_runtime.step.sinks.files import APPEND, REPLACE, FileSinkWriter, OutputFailed


def test_replace_mode_keeps_the_previous_file_until_publish_and_after_a_failed_run(tmp_path: Path) -> None:
    target = tmp_path / "res.jsonl"
    target.write_text("previous\n")
    sink = FileSinkWriter("res", target, "jsonl", REPLACE)
    sink.open()
    sink.write([{"oid": "a"}])
    assert target.read_text() == "previous\n"
    sink.close()  # no publish: the run did not reach the end of its input
    assert target.read_text() == "previous\n"
    assert [p.name for p in tmp_path.iterdir()] == ["res.jsonl"]
    sink.open()
    sink.write([{"oid": "b"}])
    sink.publish()
    sink.close()
    assert [json.loads(line) for line in target.read_text().splitlines()] == [{"oid": "b"}]


def test_append_mode_keeps_earlier_batches_across_restarts(tmp_path: Path) -> None:
    """With Kafka, committed batches are on disk: a restart must not truncate them."""
    target = tmp_path / "res.jsonl"
    for oid in ("a", "b"):
        sink = FileSinkWriter("res", target, "jsonl", APPEND)
        sink.open()
        sink.write([{"oid": oid}])
        assert json.loads(target.read_text().splitlines()[-1]) == {"oid": oid}  # on disk before the commit
        sink.close()
    assert [json.loads(line) for line in target.read_text().splitlines()] == [{"oid": "a"}, {"oid": "b"}]


def test_append_mode_parquet_writes_one_file_per_batch(tmp_path: Path) -> None:
    target = tmp_path / "res.parquet"
    for batch in ([{"oid": "a", "x": None}], [{"oid": "b", "x": 1.5}]):
        sink = FileSinkWriter("res", target, "parquet", APPEND)
        sink.open()
        sink.write(batch)
        assert not list(target.glob(".*.tmp"))  # complete files only, each renamed into place
        sink.close()
    parts = sorted(target.glob("part-*.parquet"))
    assert len(parts) == 2
    assert [r for p in parts for r in pq.read_table(p).to_pylist()] == [{"oid": "a", "x": None}, {"oid": "b", "x": 1.5}]
    assert str(pq.read_schema(parts[1]).field("x").type) == "double"


def test_full_disk_in_append_mode_is_an_outage_to_retry(tmp_path: Path) -> None:
    sink = FileSinkWriter("res", Path("/dev/full"), "jsonl", APPEND)
    sink.open()
    with pytest.raises(SinkUnavailable, match="res: cannot write /dev/full: No space left on device"):
        sink.write([{"oid": "a"}])
    sink.close()


def test_full_disk_in_replace_mode_ends_the_run(tmp_path: Path) -> None:
    sink = FileSinkWriter("res", Path("/dev/full"), "jsonl", REPLACE)
    sink.open()
    sink.write([{"oid": "a"}])  # buffered: the failure shows when the run's file is completed
    with pytest.raises(OutputFailed, match="res: cannot write /dev/full: No space left on device"):
        sink.publish()
    sink.close()


def test_parquet_type_change_is_refused_naming_sink_and_field(tmp_path: Path) -> None:
    sink = FileSinkWriter("probs", tmp_path / "p.parquet", "parquet", REPLACE)
    sink.open()
    sink.write([{"oid": "a", "n": 1}])
    with pytest.raises(SpecError, match="probs: Parquet field 'n' changed type between batches: int64 in earlier "
                                        "batches, string now"):
        sink.write([{"oid": "b", "n": "many"}])
    with pytest.raises(SpecError, match="probs: Parquet field 'n' holds values of different types in one batch"):
        sink.write([{"oid": "c", "n": 2}, {"oid": "d", "n": "x"}])
    sink.close()
    assert not (tmp_path / "p.parquet").exists()


def test_parquet_schema_widens_for_null_fields_and_new_fields(tmp_path: Path) -> None:
    sink = FileSinkWriter("res", tmp_path / "p.parquet", "parquet", REPLACE)
    sink.open()
    sink.write([{"oid": "a", "xm_id": None, "nested": {"k": None}}])
    sink.write([{"oid": "b", "xm_id": "near", "nested": {"k": 1}}])
    sink.write([{"oid": "c", "more": [1, 2]}])
    sink.publish()
    sink.close()
    assert pq.read_table(tmp_path / "p.parquet").to_pylist() == [
        {"oid": "a", "xm_id": None, "nested": {"k": None}, "more": None},
        {"oid": "b", "xm_id": "near", "nested": {"k": 1}, "more": None},
        {"oid": "c", "xm_id": None, "nested": None, "more": [1, 2]}]


def test_dead_letter_file_follows_the_same_modes(tmp_path: Path) -> None:
    target = tmp_path / "dead.jsonl"
    target.write_text("previous\n")
    dead = [DeadLetter(Message(b"\x00", "t", 0, 7, b"k"), "decode", "bad")]
    writer = FileDeadLetters(target)
    writer.mode = REPLACE
    writer.open()
    writer.write(dead)
    writer.close()
    assert target.read_text() == "previous\n"
    writer.open()
    writer.write(dead)
    writer.publish()
    writer.close()
    assert json.loads(target.read_text())["source_offset"] == 7
    writer.mode = APPEND
    writer.open()
    writer.write(dead)
    writer.close()
    assert len(target.read_text().splitlines()) == 2
