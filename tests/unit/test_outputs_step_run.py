"""`alertops run` file outputs: no data loss, one-line errors, no mixing, no stale results."""
from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pyarrow.parquet as pq
import yaml
from outputs_support import ROOT, assert_one_line, run_cli, unwritable_dir

ALERTS = ROOT / "examples" / "data" / "alerts"
N_OUT, N_DEAD = 9, 2  # the 11 shipped packets: one corrupt and one prototype are dead-lettered


def manifest(folder: Path, sinks: list[dict], dead_letter: str | None = "out/dead.jsonl",
             source: dict | None = None, processor: dict | None = None) -> Path:
    spec = {"source": source or {"files": {"path": str(ALERTS), "format": "ztf-avro", "batchSize": 4}},
            "processor": processor or {"features": {}},
            "sinks": [{"name": f"s{i}", "file": s} for i, s in enumerate(sinks)]}
    if dead_letter:
        spec["deadLetter"] = {"file": {"path": dead_letter}}
    path = folder / "step.yaml"
    path.write_text(yaml.safe_dump({"apiVersion": "alertops.io/v1alpha1", "kind": "PipelineStep",
                                    "metadata": {"name": "t"}, "spec": spec}))
    return path


def run(path: Path, *extra: str):
    return run_cli("run", str(path), "--http-port", "0", *extra)


def test_unwritable_dead_letter_does_not_truncate_existing_results(tmp_path: Path) -> None:
    """The issue's data loss: the results file was emptied before the dead-letter file failed."""
    results = tmp_path / "out" / "res.jsonl"
    results.parent.mkdir()
    results.write_text('{"earlier": "run"}\n')
    (tmp_path / "blocker").write_text("a file where the dead-letter folder should be")
    res = run(manifest(tmp_path, [{"path": "out/res.jsonl", "format": "jsonl"}], dead_letter="blocker/dead.jsonl"))
    assert_one_line(res, 2, "spec.deadLetter.file.path", "blocker is a file, not a directory")
    assert results.read_text() == '{"earlier": "run"}\n'
    assert sorted(p.name for p in results.parent.iterdir()) == ["res.jsonl"]


def test_unwritable_directory_is_one_line_exit_2(tmp_path: Path) -> None:
    folder = unwritable_dir(tmp_path)
    res = run(manifest(tmp_path, [{"path": str(folder / "sub" / "res.parquet")}]))
    assert_one_line(res, 2, "spec.sinks[0].file.path", "is not writable")


def test_parent_path_that_is_a_file_is_one_line_exit_2(tmp_path: Path) -> None:
    (tmp_path / "res.jsonl").write_text("")
    res = run(manifest(tmp_path, [{"path": "res.jsonl/part.jsonl", "format": "jsonl"}]))
    assert_one_line(res, 2, "spec.sinks[0].file.path", "res.jsonl is a file, not a directory")


def test_full_disk_is_one_line_exit_1_and_other_outputs_keep_earlier_results(tmp_path: Path) -> None:
    """A sink on /dev/full: every write fails with ENOSPC, as on a full disk."""
    path = manifest(tmp_path, [{"path": "out/res.jsonl", "format": "jsonl"},
                               {"path": "/dev/full", "format": "parquet"}])
    earlier = tmp_path / "out" / "res.jsonl"
    earlier.parent.mkdir()
    earlier.write_text("earlier\n")
    assert Path("/dev/full").is_char_device()
    res = run(path)
    assert Path("/dev/full").is_char_device()  # written in place, never renamed over
    assert_one_line(res, 1, "s1: cannot write /dev/full: No space left on device")
    assert earlier.read_text() == "earlier\n"
    assert sorted(p.name for p in earlier.parent.iterdir()) == ["res.jsonl"]  # no temporary file left


def test_two_sinks_on_one_path_are_refused(tmp_path: Path) -> None:
    res = run(manifest(tmp_path, [{"path": "out/res.jsonl", "format": "jsonl"}, {"path": "out/../out/res.jsonl",
                                                                                  "format": "jsonl"}]))
    assert_one_line(res, 2, "spec.sinks[1].file.path", "is also the path of spec.sinks[0].file.path")
    assert not (tmp_path / "out").exists()


def test_sink_on_the_dead_letter_path_is_refused(tmp_path: Path) -> None:
    res = run(manifest(tmp_path, [{"path": "out/dead.jsonl", "format": "jsonl"}], dead_letter="out/dead.jsonl"))
    assert_one_line(res, 2, "spec.deadLetter.file.path", "is also the path of spec.sinks[0].file.path")


def test_overlapping_outputs_and_outputs_inside_the_source_are_refused(tmp_path: Path) -> None:
    res = run(manifest(tmp_path, [{"path": "out", "format": "jsonl"}], dead_letter="out/dead.jsonl"))
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "spec.deadLetter.file.path" in res.stderr and "one lies inside the other" in res.stderr
    source = tmp_path / "alerts"
    source.mkdir()
    (source / "a.json").write_text('{"oid": "a"}\n')
    res = run(manifest(tmp_path, [{"path": "alerts/out.jsonl", "format": "jsonl"}],
                       source={"files": {"path": "alerts", "format": "json"}},
                       processor={"python": {"function": "json:dumps"}}))
    assert_one_line(res, 2, "spec.sinks[0].file.path", "overlaps the input spec.source.files.path")


def test_run_with_no_outputs_leaves_no_stale_parquet_rows(tmp_path: Path) -> None:
    path = manifest(tmp_path, [{"path": "out/res.parquet"}, {"path": "out/res.jsonl", "format": "jsonl"}])
    assert run(path).returncode == 0
    assert pq.read_table(tmp_path / "out" / "res.parquet").num_rows == N_OUT
    empty = tmp_path / "empty"
    empty.mkdir()
    res = run(manifest(tmp_path, [{"path": "out/res.parquet"}, {"path": "out/res.jsonl", "format": "jsonl"}],
                       source={"files": {"path": str(empty), "format": "ztf-avro"}}))
    assert res.returncode == 0, res.stderr
    assert pq.read_table(tmp_path / "out" / "res.parquet").num_rows == 0
    assert (tmp_path / "out" / "res.jsonl").read_text() == ""
    assert (tmp_path / "out" / "dead.jsonl").read_text() == ""


def test_outputs_are_replaced_at_the_end_with_the_usual_file_mode(tmp_path: Path) -> None:
    path = manifest(tmp_path, [{"path": "out/res.parquet"}, {"path": "out/res.jsonl", "format": "jsonl"}])
    for _ in range(2):  # a second run replaces, never appends to, the first one's files
        assert run(path).returncode == 0
    out = tmp_path / "out"
    assert pq.read_table(out / "res.parquet").num_rows == N_OUT
    assert len((out / "res.jsonl").read_text().splitlines()) == N_OUT
    assert len((out / "dead.jsonl").read_text().splitlines()) == N_DEAD
    assert sorted(p.name for p in out.iterdir()) == ["dead.jsonl", "res.jsonl", "res.parquet"]
    assert {(p.stat().st_mode & 0o777) for p in out.iterdir()} == {0o644}  # not mkstemp's 0600


def test_parquet_field_changing_type_names_sink_and_field_and_keeps_earlier_results(tmp_path: Path) -> None:
    (tmp_path / "userstep.py").write_text(textwrap.dedent("""
        def flip(records, config):
            return [{"oid": r["oid"], "value": r["value"]} for r in records]
        """))
    source = tmp_path / "in"
    source.mkdir()
    (source / "a.jsonl").write_text('{"oid": "a", "value": null}\n{"oid": "b", "value": 1}\n'
                                    '{"oid": "c", "value": "x"}\n')
    out = tmp_path / "out" / "res.parquet"
    out.parent.mkdir()
    out.write_bytes(b"earlier results")
    res = run(manifest(tmp_path, [{"path": "out/res.parquet"}], dead_letter=None,
                       source={"files": {"path": "in", "format": "json", "batchSize": 1}},
                       processor={"python": {"function": "userstep:flip", "path": str(tmp_path)}}))
    assert_one_line(res, 2, "s0: Parquet field 'value' changed type between batches: int64", "string now")
    assert out.read_bytes() == b"earlier results"


def test_parquet_field_null_first_then_typed_and_new_fields_are_kept(tmp_path: Path) -> None:
    (tmp_path / "userstep.py").write_text(textwrap.dedent("""
        def echo(records, config):
            return records
        """))
    source = tmp_path / "in"
    source.mkdir()
    (source / "a.jsonl").write_text('{"oid": "a", "xm_id": null}\n{"oid": "b", "xm_id": "near"}\n'
                                    '{"oid": "c", "xm_id": null, "extra": 2.5}\n')
    res = run(manifest(tmp_path, [{"path": "out/res.parquet"}], dead_letter=None,
                       source={"files": {"path": "in", "format": "json", "batchSize": 1}},
                       processor={"python": {"function": "userstep:echo", "path": str(tmp_path)}}))
    assert res.returncode == 0, res.stderr
    rows = pq.read_table(tmp_path / "out" / "res.parquet").to_pylist()
    assert rows == [{"oid": "a", "xm_id": None, "extra": None}, {"oid": "b", "xm_id": "near", "extra": None},
                    {"oid": "c", "xm_id": None, "extra": 2.5}]


def test_missing_source_folder_is_exit_2(tmp_path: Path) -> None:
    res = run(manifest(tmp_path, [{"path": "out/res.jsonl", "format": "jsonl"}],
                       source={"files": {"path": "nope", "format": "ztf-avro"}}))
    assert_one_line(res, 2, "spec.source.files.path:", "nope does not exist")
    assert not (tmp_path / "out").exists()


def test_empty_source_folder_warns_and_other_files_are_counted_as_skipped(tmp_path: Path) -> None:
    folder = tmp_path / "alerts"
    folder.mkdir()
    (folder / "README.txt").write_text("not an alert")
    res = run(manifest(tmp_path, [{"path": "out/res.jsonl", "format": "jsonl"}],
                       source={"files": {"path": "alerts", "format": "ztf-avro"}}))
    assert res.returncode == 0, res.stderr
    logs = [json.loads(line) for line in res.stderr.splitlines() if line.startswith("{")]
    warnings = [entry for entry in logs if entry["level"] == "warning"]
    assert len(warnings) == 1 and "holds no *.avro files (1 other file(s) skipped)" in warnings[0]["msg"]
    for packet in sorted(ALERTS.glob("*.avro"))[:3]:
        (folder / packet.name).write_bytes(packet.read_bytes())
    res = run(manifest(tmp_path, [{"path": "out/res.jsonl", "format": "jsonl"}],
                       source={"files": {"path": "alerts", "format": "ztf-avro"}}))
    ready = [json.loads(line) for line in res.stderr.splitlines() if '"file source ready"' in line]
    assert (ready[0]["files"], ready[0]["skipped_files"], ready[0]["messages"]) == (3, 1, 3)
    assert '"level": "warning"' not in res.stderr


def test_a_pipe_is_written_in_place(tmp_path: Path) -> None:
    """A JSONL sink on /dev/stdout (a pipe here) streams the lines; nothing is renamed over it."""
    res = run(manifest(tmp_path, [{"path": "/dev/stdout", "format": "jsonl"}]))
    assert res.returncode == 0, res.stderr
    lines = [json.loads(line) for line in res.stdout.splitlines() if line.startswith("{")]
    assert len(lines) == N_OUT and all("oid" in r for r in lines)
