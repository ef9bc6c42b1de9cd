"""`alertops build`: the demo, partition/merge modes, exit codes, messages and atomic outputs."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml

from step_runtime.cli import main
from step_runtime.trainingset.writers import atomic_path

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "examples" / "trainingset-demo.yaml"


def test_demo_builds_and_prints_a_summary(tmp_path, capsys):
    assert main(["build", str(DEMO), "--output-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "training set trainingset-demo: 439 sources in" in out
    assert "436 rows out, 3 conflicts" in out
    target = tmp_path / "trainingset-demo" / "vsx-labeled.parquet"
    frame = pd.read_parquet(target)
    assert len(frame) == 436
    # The 4 VSX objects in the SCoPe golden lists (see examples/data/catalogs/SOURCES.md).
    assert sorted(frame.loc[frame["n_catalogs"] == 2, "id"].tolist()) == [226887, 320762, 1540512, 2175885]
    summary = json.loads((tmp_path / "trainingset-demo" / "vsx-labeled.parquet.summary.json").read_text())
    assert summary["rows_in"] == 439 and summary["rows_out"] == 436
    assert summary["catalogs"]["vsx"]["rows_unmapped"] == 3
    assert summary["classes"]["RRL"] == 200
    png = (tmp_path / "trainingset-demo" / "vsx-labeled.parquet.report.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list((tmp_path / "trainingset-demo").glob(".*.tmp"))


def test_partitions_then_merge_equal_a_local_build(tmp_path, monkeypatch, capsys):
    local, split = tmp_path / "local", tmp_path / "split"
    assert main(["build", str(DEMO), "--output-dir", str(local), "--workers", "1"]) == 0
    assert main(["build", str(DEMO), "--output-dir", str(split), "--partition", "0"]) == 0
    monkeypatch.setenv("JOB_COMPLETION_INDEX", "1")
    assert main(["build", str(DEMO), "--output-dir", str(split), "--partition-from-env"]) == 0
    parts = sorted(p.name for p in (split / "trainingset-demo" / "vsx-labeled.parquet.parts").iterdir())
    assert parts == ["part-00000-of-00002.json", "part-00000-of-00002.parquet",
                     "part-00001-of-00002.json", "part-00001-of-00002.parquet"]
    assert main(["build", str(DEMO), "--output-dir", str(split), "--merge"]) == 0
    a = pd.read_parquet(local / "trainingset-demo" / "vsx-labeled.parquet")
    b = pd.read_parquet(split / "trainingset-demo" / "vsx-labeled.parquet")
    pd.testing.assert_frame_equal(a, b)
    # The files too, not only what pandas reads back: the parts' round trip through Parquet must
    # not turn a string column into large_string (seen on the real node, issue 13).
    import pyarrow.parquet as pq

    schema_a = pq.read_schema(local / "trainingset-demo" / "vsx-labeled.parquet").remove_metadata()
    schema_b = pq.read_schema(split / "trainingset-demo" / "vsx-labeled.parquet").remove_metadata()
    assert schema_a == schema_b, f"{schema_a}\n!=\n{schema_b}"


def test_merge_without_parts_is_a_user_error(tmp_path, capsys):
    assert main(["build", str(DEMO), "--output-dir", str(tmp_path), "--merge"]) == 2
    err = capsys.readouterr().err
    assert "partition 0 of 2 is missing; run `alertops build FILE --partition 0` first" in err
    assert "Traceback" not in err


def test_partition_out_of_range_and_bad_env(tmp_path, monkeypatch, capsys):
    assert main(["build", str(DEMO), "--output-dir", str(tmp_path), "--partition", "2"]) == 2
    assert "--partition 2: expected 0 <= K < spec.parallelism (2)" in capsys.readouterr().err
    monkeypatch.setenv("JOB_COMPLETION_INDEX", "x")
    assert main(["build", str(DEMO), "--output-dir", str(tmp_path), "--partition-from-env"]) == 2
    assert "JOB_COMPLETION_INDEX must be a non-negative integer, got 'x'" in capsys.readouterr().err


def _manifest(tmp_path: Path, spec: dict) -> Path:
    path = tmp_path / "ts.yaml"
    path.write_text(yaml.safe_dump({"apiVersion": "alertops.io/v1alpha1", "kind": "TrainingSetBuild",
                                    "metadata": {"name": "t"}, "spec": spec}))
    return path


def _small_spec(**overrides) -> dict:
    spec = {"source": {"path": "src.csv", "idColumn": "oid"},
            "catalogs": [{"name": "cat", "path": "cat.csv", "labelColumn": "cls", "radiusArcsec": 2.0}],
            "output": {"path": "out/ts.csv"}}
    spec.update(overrides)
    return spec


def _small_files(tmp_path: Path) -> None:
    (tmp_path / "src.csv").write_text("oid,ra,dec\na,10,10\nb,20,-20\n")
    (tmp_path / "cat.csv").write_text("ra,dec,cls\n10,10,RRL\n20.0001,-20,EW\n")


def test_csv_output_and_termination_message(tmp_path, monkeypatch, capsys):
    _small_files(tmp_path)
    message = tmp_path / "termination-log"
    monkeypatch.setenv("ALERTOPS_TERMINATION_MESSAGE_PATH", str(message))
    assert main(["build", str(_manifest(tmp_path, _small_spec()))]) == 0
    frame = pd.read_csv(tmp_path / "out" / "ts.csv")  # relative to the manifest without --output-dir
    assert frame["id"].tolist() == ["a", "b"] and frame["label"].tolist() == ["RRL", "EW"]
    text = message.read_text()
    assert len(text.encode()) <= 4096
    data = json.loads(text)
    assert data["rows_in"] == 2 and data["rows_out"] == 2 and data["phase"] == "Succeeded"
    assert data["catalogs"] == {"cat": {"matches": 2, "conflicts": 0, "matched_unlabeled": 0}}
    assert data["output"]["path"].endswith("out/ts.csv")


@pytest.mark.parametrize("mutate,message", [
    (lambda t: (t / "cat.csv").unlink(), "cat.csv: no such file"),
    (lambda t: (t / "cat.csv").write_text("ra,dec,klass\n1,1,X\n"), "no column 'cls' (from spec.catalogs[0].labelColumn)"),
    (lambda t: (t / "src.csv").write_text("oid,ra,dec\na,10,100\n"),
     "src.csv: column 'dec' data row 1: declination out of range"),
])
def test_user_errors_exit_2_with_one_line_and_leave_no_output(tmp_path, monkeypatch, capsys, mutate, message):
    _small_files(tmp_path)
    mutate(tmp_path)
    log = tmp_path / "termination-log"
    monkeypatch.setenv("ALERTOPS_TERMINATION_MESSAGE_PATH", str(log))
    assert main(["build", str(_manifest(tmp_path, _small_spec()))]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert err.startswith("alertops build: ")
    assert not (tmp_path / "out" / "ts.csv").exists()
    assert json.loads(log.read_text())["phase"] == "Failed"


def test_spec_errors_exit_2(tmp_path, capsys):
    _small_files(tmp_path)
    spec = _small_spec()
    spec["catalogs"][0]["radiusArcsec"] = 0
    assert main(["build", str(_manifest(tmp_path, spec))]) == 2
    assert "spec.catalogs[0].radiusArcsec: Input should be greater than 0" in capsys.readouterr().err


def test_missing_secret_is_named_before_any_work(tmp_path, monkeypatch, capsys):
    _small_files(tmp_path)
    monkeypatch.delenv("ALERTOPS_SECRET_TRAINING_DB_DSN", raising=False)
    spec = _small_spec(output={"path": "out/ts.parquet",
                               "postgres": {"dsn": {"name": "training-db", "key": "dsn"}, "table": "ts"}})
    assert main(["build", str(_manifest(tmp_path, spec))]) == 2
    err = capsys.readouterr().err
    assert "secret training-db/dsn is not available: env var ALERTOPS_SECRET_TRAINING_DB_DSN is unset" in err
    assert not (tmp_path / "out").exists()


def test_atomic_path_keeps_the_old_file_when_writing_fails(tmp_path):
    target = tmp_path / "ts.parquet"
    target.write_text("previous build")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half a file")
            raise RuntimeError("disk full")
    assert target.read_text() == "previous build"
    assert [p.name for p in tmp_path.iterdir()] == ["ts.parquet"]


def test_manifest_relative_inputs_and_missing_manifest(tmp_path, capsys):
    assert main(["build", str(tmp_path / "nope.yaml")]) == 2
    assert "nope.yaml: no such manifest file" in capsys.readouterr().err
    # Inputs resolve against the manifest's directory, whatever the working directory.
    sub = tmp_path / "sub"
    shutil.copytree(ROOT / "examples" / "data", sub / "data")
    shutil.copy(DEMO, sub / "demo.yaml")
    assert main(["build", str(sub / "demo.yaml")]) == 0
    assert (sub / "trainingset-demo" / "vsx-labeled.parquet").exists()


def test_plain_progress_lines_when_not_a_terminal(tmp_path, capsys):
    _small_files(tmp_path)
    assert main(["build", str(_manifest(tmp_path, _small_spec()))]) == 0
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("alertops build: [1/") and "source: 2 rows from" in err[0]
    assert err[-1].startswith("alertops build: [6/6]") and "summary" in err[-1]


def test_skip_and_count_reports_skipped_rows(tmp_path, capsys):
    _small_files(tmp_path)
    (tmp_path / "src.csv").write_text("oid,ra,dec\na,10,10\nb,20,-20\nc,x,1\nd,5,-91\n")
    (tmp_path / "cat.csv").write_text("ra,dec,cls\n10,10,RRL\n20.0001,-20,EW\n,,EW\n")
    assert main(["build", str(_manifest(tmp_path, _small_spec(badRows="skip-and-count")))]) == 0
    summary = json.loads((tmp_path / "out" / "ts.csv.summary.json").read_text())
    assert summary["rows_in"] == 4 and summary["rows_bad_skipped"] == 2 and summary["rows_out"] == 2
    assert summary["catalogs"]["cat"]["bad_rows"] == 1 and summary["catalogs"]["cat"]["rows_used"] == 2
    assert "(2 bad rows skipped)" in capsys.readouterr().out


def test_merge_refuses_parts_of_another_manifest(tmp_path, capsys):
    _small_files(tmp_path)
    manifest = _manifest(tmp_path, _small_spec(parallelism=2))
    assert main(["build", str(manifest), "--partition", "0"]) == 0
    assert main(["build", str(manifest), "--partition", "1"]) == 0
    changed = _small_spec(parallelism=2)
    changed["catalogs"][0]["radiusArcsec"] = 3.0
    manifest = _manifest(tmp_path, changed)
    capsys.readouterr()
    assert main(["build", str(manifest), "--merge"]) == 2
    assert "partition 0 was computed from a different manifest; rerun the partitions" in capsys.readouterr().err
