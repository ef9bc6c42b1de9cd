"""`alertops build` outputs: checked before any work, never over an input, one-line errors."""
from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
import yaml
from outputs_support import assert_one_line, run_cli, unwritable_dir

from step_runtime.trainingset.errors import BuildFailure
from step_runtime.trainingset.writers import atomic_path

SOURCE = "oid,ra,dec\na,10,10\nb,20,-20\n"


def _build(tmp_path: Path, output: str, *extra: str, report: bool = False):
    (tmp_path / "src.csv").write_text(SOURCE)
    (tmp_path / "cat.csv").write_text("ra,dec,cls\n10,10,RRL\n20.0001,-20,EW\n")
    spec = {"source": {"path": "src.csv", "idColumn": "oid"},
            "catalogs": [{"name": "cat", "path": "cat.csv", "labelColumn": "cls", "radiusArcsec": 2.0}],
            "output": {"path": output, **({"report": True} if report else {})}}
    manifest = tmp_path / "ts.yaml"
    manifest.write_text(yaml.safe_dump({"apiVersion": "alertops.io/v1alpha1", "kind": "TrainingSetBuild",
                                        "metadata": {"name": "t"}, "spec": spec}))
    return run_cli("build", str(manifest), *extra)


def test_output_over_an_input_is_refused_and_the_input_kept(tmp_path: Path) -> None:
    res = _build(tmp_path, "src.csv")
    assert_one_line(res, 2, "spec.output.path", "is the input spec.source.path; writing it would overwrite the input")
    assert (tmp_path / "src.csv").read_text() == SOURCE
    assert "[1/" not in res.stderr  # refused before anything was read


def test_unwritable_output_directory_is_refused_before_any_work(tmp_path: Path) -> None:
    folder = unwritable_dir(tmp_path)
    res = _build(tmp_path, str(folder / "out" / "ts.parquet"))
    assert_one_line(res, 2, "spec.output.path", "is not writable")
    assert "[1/" not in res.stderr


def test_output_parent_that_is_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "out").write_text("a file")
    res = _build(tmp_path, "out/ts.parquet")
    assert_one_line(res, 2, "spec.output.path", "out is a file, not a directory")


def test_output_on_a_device_or_pipe_is_refused(tmp_path: Path) -> None:
    """A rename over a device (/dev/full) would replace the device node: outputs must be regular files.

    A FIFO of the test's own stands for the device: were the check to regress, only it is lost.
    """
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    res = _build(tmp_path, str(pipe))
    assert_one_line(res, 2, f"spec.output.path: {pipe} is a device or pipe, expected a regular file")
    assert pipe.is_fifo()


def test_partition_folder_that_is_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "ts.parquet.parts").write_text("not a folder")
    res = _build(tmp_path, "ts.parquet", "--partition", "0")
    assert_one_line(res, 2, "spec.output.path (partitions, <path>.parts/)", "exists and is not a directory")


def test_a_write_that_fails_is_one_line_naming_the_file(tmp_path: Path) -> None:
    target = tmp_path / "ts.parquet"
    target.write_text("previous build")
    with pytest.raises(BuildFailure, match=r"ts.parquet: cannot write: No space left on device"):
        with atomic_path(target):
            raise OSError(errno.ENOSPC, "disk full")
    assert target.read_text() == "previous build"
    assert [p.name for p in tmp_path.iterdir()] == ["ts.parquet"]


def test_outputs_get_the_usual_file_mode(tmp_path: Path) -> None:
    assert _build(tmp_path, "out/ts.csv", report=True).returncode == 0
    modes = {p.name: p.stat().st_mode & 0o777 for p in (tmp_path / "out").iterdir()}
    assert modes == {"ts.csv": 0o644, "ts.csv.summary.json": 0o644, "ts.csv.report.png": 0o644}
