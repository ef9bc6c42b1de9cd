"""Input files read ahead at start-up: the same bytes as a plain read, never stale, never an error
of its own."""
from __future__ import annotations

import gzip
import os

import pytest
import yaml

from step_runtime.trainingset import file_bytes
from step_runtime.trainingset.errors import BuildError
from step_runtime.trainingset.file_bytes import load_bytes, read_ahead_inputs, reading_ahead

TEXT = b"# ra dec id\n 1.0 2.0 a\n 3.0 4.0 b\n"


def _manifest(tmp_path, source: dict, catalogs: list[dict] | None = None):
    path = tmp_path / "build.yaml"
    spec = {"source": source, "catalogs": catalogs or [], "output": {"path": "out.parquet"}}
    path.write_text(yaml.safe_dump({"apiVersion": "alertops.io/v1alpha1", "kind": "TrainingSetBuild",
                                    "metadata": {"name": "t"}, "spec": spec}))
    return str(path)


@pytest.fixture(autouse=True)
def _no_leftovers():
    yield
    file_bytes._AHEAD.clear()


def test_a_compressed_input_is_read_ahead_and_taken_once(tmp_path):
    (tmp_path / "src.dat.gz").write_bytes(gzip.compress(TEXT))
    (tmp_path / "cat.csv").write_bytes(b"ra,dec\n1,2\n")
    src, cat = tmp_path / "src.dat.gz", tmp_path / "cat.csv"
    with reading_ahead(_manifest(tmp_path, {"path": "src.dat.gz"}, [{"path": "cat.csv"}])):
        assert set(file_bytes._AHEAD) == {src, cat}
        assert file_bytes._AHEAD[src].result() == TEXT
        assert file_bytes._AHEAD[cat].result() is None  # plain files are not read ahead
        assert load_bytes(src) == TEXT and src not in file_bytes._AHEAD
        assert load_bytes(cat) == b"ra,dec\n1,2\n"
    assert not file_bytes._AHEAD  # what a build did not take goes with it


def test_a_file_changed_since_is_read_again(tmp_path):
    src = tmp_path / "src.dat.gz"
    src.write_bytes(gzip.compress(TEXT))
    read_ahead_inputs(_manifest(tmp_path, {"path": str(src)}))
    assert file_bytes._AHEAD[src].result() == TEXT
    src.write_bytes(gzip.compress(TEXT + b" 5.0 6.0 c\n"))
    os.utime(src, ns=(1, 1))  # a new mtime even on a coarse clock
    assert load_bytes(src) == TEXT + b" 5.0 6.0 c\n"


def test_a_broken_file_gets_the_plain_reads_error(tmp_path):
    src = tmp_path / "src.dat.gz"
    src.write_bytes(gzip.compress(TEXT)[:20])
    read_ahead_inputs(_manifest(tmp_path, {"path": "src.dat.gz"}))
    assert file_bytes._AHEAD[src].result() is None
    with pytest.raises(BuildError, match=r"src.dat.gz: looks gzip-compressed but cannot be decompressed"):
        load_bytes(src)


@pytest.mark.parametrize("source", [
    {"uri": "s3://bucket/src.dat.gz", "path": "src.dat.gz"},  # fetched first
    {"path": "src.dat.gz", "sha256": "0" * 64},  # checked against its pin first
    {"query": {"sql": "select 1"}},
    {"path": 5},
])
def test_only_plain_paths_are_read_ahead(tmp_path, source):
    (tmp_path / "src.dat.gz").write_bytes(gzip.compress(TEXT))
    read_ahead_inputs(_manifest(tmp_path, source))
    assert not file_bytes._AHEAD


@pytest.mark.parametrize("text", ["spec: [", "kind: TrainingSetBuild\n", "spec:\n  catalogs: 3\n", ""])
def test_a_manifest_it_cannot_read_means_no_read_ahead(tmp_path, text):
    path = tmp_path / "build.yaml"
    path.write_text(text)
    read_ahead_inputs(str(path))
    read_ahead_inputs(str(tmp_path / "missing.yaml"))
    assert not file_bytes._AHEAD
