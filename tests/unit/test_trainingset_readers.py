"""The fast text reader (pyarrow) agrees with the careful one (pandas) on every shipped text table,
whitespace tables are collapsed right, and a build imports pandas only when it needs it."""
from __future__ import annotations

import json
import math
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from step_runtime.trainingset import text_tables
from step_runtime.trainingset.errors import BuildError
from step_runtime.trainingset.file_bytes import load_bytes
from step_runtime.trainingset.tables import detect_format

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data" / "trainingset"
EXAMPLES = ROOT / "examples" / "data" / "catalogs"
SHIPPED_TEXT = sorted([*DATA.glob("*.gz"), *DATA.glob("*.bz2"), *EXAMPLES.glob("*.csv"),
                       *(EXAMPLES / "scope-golden").glob("*.csv")])


def _same(a: object, b: object) -> bool:
    if isinstance(a, float) and math.isnan(a):
        a = None
    if isinstance(b, float) and math.isnan(b):
        b = None
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return float(a) == float(b)
    return a == b


@pytest.mark.parametrize("path", SHIPPED_TEXT, ids=lambda p: p.name)
def test_fast_and_careful_readers_agree_on_shipped_tables(path):
    data = load_bytes(path)
    fmt = detect_format(path.name, data)
    layout = text_tables._layout(data, fmt, None, path)
    probe, names = text_tables._read_arrow(data, fmt, layout, set())
    wanted = set(names)
    fast, fast_names = text_tables._read_arrow(data, fmt, layout, wanted)
    careful, careful_names = text_tables._read_pandas(data, fmt, layout, path, wanted)
    assert fast_names == careful_names and fast.num_rows == careful.num_rows > 0
    for name in names:
        left, right = fast[name].to_pylist(), careful[name].to_pylist()
        differ = [i for i, (x, y) in enumerate(zip(left, right)) if not _same(x, y)]
        assert not differ, f"{path.name} column {name!r} row {differ[0]}: {left[differ[0]]!r} vs {right[differ[0]]!r}"


@pytest.mark.parametrize("text,expected", [
    (b"  a  b\t c \r\n\n   \n d e", b"a b c\n\n\nd e"),
    (b"x y  \n", b"x y\n"),
    (b"  1   2\n3 4   ", b"1 2\n3 4"),
    (b" ", b""),
    (b"a", b"a"),
    (b"\n\n", b"\n\n"),
])
def test_collapse_whitespace(text, expected):
    assert text_tables.collapse_whitespace(text) == expected


def _collapse_reference(text: bytes) -> bytes:
    """Line by line in plain Python: every byte up to 32 but the newline separates values."""
    return b"\n".join(b" ".join(w for w in re.split(rb"[\x00-\x09\x0b-\x20]+", line) if w)
                      for line in text.split(b"\n"))


def test_collapse_whitespace_matches_a_line_by_line_reference():
    rng = random.Random(20261130)
    alphabet = b"   \t\r\n\n\x00\x0bab1.-\xc3\xa9"
    for _ in range(3000):
        text = bytes(rng.choice(alphabet) for _ in range(rng.randrange(0, 48)))
        for block in (1, 3, 8, 1 << 18):  # lines cut into blocks of every size
            assert text_tables.collapse_whitespace(text, block=block) == _collapse_reference(text), (text, block)


def _build_in_a_fresh_process(tmp_path: Path, spec: dict) -> tuple[int, bool, str]:
    """Exit status, whether pandas (or numpy.ma: pyarrow's conversion of ndarrays imports it, 0.15 s)
    got imported, and stderr of `alertops build` in its own process."""
    manifest = tmp_path / "build.yaml"
    manifest.write_text(yaml.safe_dump({"apiVersion": "alertops.io/v1alpha1", "kind": "TrainingSetBuild",
                                        "metadata": {"name": "fresh"}, "spec": spec}))
    code = ("import json, sys\nfrom step_runtime.cli import main\n"
            f"rc = main(['build', {str(manifest)!r}, '--output-dir', {str(tmp_path / 'out')!r}])\n"
            "print(json.dumps({'rc': rc, 'pandas': 'pandas' in sys.modules, 'ma': 'numpy.ma' in sys.modules}))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return result["rc"], result["pandas"] or result["ma"], done.stderr


def test_a_csv_and_parquet_build_does_not_import_pandas(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "src.csv").write_text("oid,ra,dec\na,10.0,20.0\nb,30.0,-5.0\n")
    pq.write_table(pa.table({"cid": [1, 2], "ra": [10.0, 31.0], "dec": [20.0, -5.0], "cls": ["RRL", "EW"]}),
                   tmp_path / "cat.parquet")
    spec = {"source": {"path": str(tmp_path / "src.csv"), "idColumn": "oid"},
            "catalogs": [{"name": "c", "path": str(tmp_path / "cat.parquet"), "idColumn": "cid",
                          "labelColumn": "cls", "radiusArcsec": 2.0}],
            "output": {"path": "out.parquet"}}
    rc, pandas, err = _build_in_a_fresh_process(tmp_path, spec)
    assert rc == 0, err
    assert not pandas
    summary = json.loads((tmp_path / "out" / "out.parquet.summary.json").read_text())
    assert summary["rows_out"] == 1 and summary["report_path"] is None
    assert not (tmp_path / "out" / "out.parquet.report.png").exists()  # the report is drawn on request


def test_a_build_that_needs_pandas_imports_it_and_works(tmp_path):
    # An unnamed first column (an index written by pandas) is named by the careful reader.
    (tmp_path / "src.csv").write_text(",oid,ra,dec\n0,a,10.0,20.0\n1,b,30.0,-5.0\n")
    (tmp_path / "cat.dat").write_text('# id ra dec cls\n1 10.0 20.0 "RRL"\n2 31.0 -5.0 EW\n')  # quotes: pandas reads it
    spec = {"source": {"path": str(tmp_path / "src.csv"), "idColumn": "Unnamed: 0"},
            "catalogs": [{"name": "c", "path": str(tmp_path / "cat.dat"), "idColumn": "id",
                          "labelColumn": "cls", "radiusArcsec": 2.0}],
            "output": {"path": "out.parquet", "report": True}}
    rc, pandas, err = _build_in_a_fresh_process(tmp_path, spec)
    assert rc == 0, err
    assert pandas
    summary = json.loads((tmp_path / "out" / "out.parquet.summary.json").read_text())
    assert summary["classes"] == {"RRL": 1}
    assert (tmp_path / "out" / "out.parquet.report.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("damage", ["truncated", "corrupt block", "trailing junk"])
def test_a_damaged_gzip_file_is_one_line_naming_it(tmp_path, damage):
    import gzip

    good = gzip.compress(b"ra dec\n" + b"1.0 2.0\n" * 5000)
    bad = {"truncated": good[:len(good) // 2], "corrupt block": good[:12] + b"\xff" * 40 + good[52:],
           "trailing junk": good + b"junk"}[damage]
    path = tmp_path / "t.dat.gz"
    path.write_bytes(bad)
    with pytest.raises(BuildError, match=r"t\.dat\.gz: looks gzip-compressed but cannot be decompressed"):
        load_bytes(path)


def test_multi_member_gzip_reads_whole(tmp_path):
    import gzip

    path = tmp_path / "t.dat.gz"
    path.write_bytes(gzip.compress(b"ra dec\n1 2\n") + gzip.compress(b"3 4\n"))
    assert load_bytes(path) == b"ra dec\n1 2\n3 4\n"
