"""Table readers and input cleaning: every format, units, and a clear error for each bad input."""
from __future__ import annotations

import bz2
import gzip
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from step_runtime.spec.trainingset import CatalogSpec, SourceSpec, TableSpec
from step_runtime.trainingset.errors import BuildError
from step_runtime.trainingset.inputs import LABEL_NONE, LABEL_OK, LABEL_UNMAPPED, load_catalog, load_source
from step_runtime.trainingset.tables import detect_format, read_table

DATA = Path(__file__).resolve().parents[1] / "data" / "trainingset"

ROWS = pd.DataFrame({"oid": ["a", "b", "c"], "ra": [10.5, 359.9, 0.1], "dec": [-30.25, 89.5, 0.0],
                     "cls": ["RRab", "EW", "RRc"]})


def _write(tmp_path: Path, name: str, frame: pd.DataFrame, fmt: str) -> Path:
    path = tmp_path / name
    if fmt == "csv":
        frame.to_csv(path, index=False)
    elif fmt == "tsv":
        frame.to_csv(path, index=False, sep="\t")
    elif fmt == "parquet":
        frame.to_parquet(path, index=False)
    elif fmt in ("fits", "votable"):
        from astropy.table import Table

        Table.from_pandas(frame).write(path, format=fmt)
    elif fmt == "whitespace":
        lines = ["# a comment line", "# another, with, commas", "#  " + "  ".join(frame.columns)]
        lines += ["  ".join(str(v) for v in row) for row in frame.itertuples(index=False)]
        path.write_text("\n".join(lines) + "\n")
    return path


def _read(spec: TableSpec, base: Path, needed: dict[str, str]) -> tuple[pd.DataFrame, str]:
    table, origin = read_table(spec, base, needed)
    return table.to_pandas(), origin


NEEDED = {"oid": "source.idColumn", "ra": "source.raColumn", "dec": "source.decColumn", "cls": "x.labelColumn"}


@pytest.mark.parametrize("fmt,name", [
    ("csv", "t.csv"), ("tsv", "t.tsv"), ("parquet", "t.parquet"), ("fits", "t.fits"),
    ("votable", "t.vot"), ("whitespace", "t.dat"),
])
def test_every_format_reads_the_same_table(tmp_path, fmt, name):
    path = _write(tmp_path, name, ROWS, fmt)
    frame, origin = _read(TableSpec(path=str(path)), tmp_path, NEEDED)
    assert origin == str(path)
    assert frame["oid"].astype(str).tolist() == ["a", "b", "c"]
    np.testing.assert_allclose(frame["ra"].to_numpy(float), ROWS["ra"])
    assert frame["cls"].astype(str).tolist() == ["RRab", "EW", "RRc"]


@pytest.mark.parametrize("compress", [gzip.compress, bz2.compress])
def test_compression_is_found_by_magic_bytes_not_name(tmp_path, compress):
    plain = _write(tmp_path, "plain.csv", ROWS, "csv")
    hidden = tmp_path / "catalog.dat"  # no .gz / .bz2 in the name
    hidden.write_bytes(compress(plain.read_bytes()))
    frame, _ = _read(TableSpec(path=str(hidden)), tmp_path, NEEDED)
    assert len(frame) == 3 and frame["cls"].tolist() == ["RRab", "EW", "RRc"]


def test_detect_format_sniffs_content():
    assert detect_format("x.dat", b"PAR1....") == "parquet"
    assert detect_format("x.dat", b"SIMPLE  =                    T") == "fits"
    assert detect_format("x.txt", b"<?xml version='1.0'?><VOTABLE>") == "votable"
    assert detect_format("x.dat", b"# c\n1 2 3\n") == "whitespace"
    assert detect_format("x.dat", b"a\tb\n1\t2\n") == "tsv"
    assert detect_format("x.csv.gz", b"a b\n") == "csv"


def test_real_whitespace_table_with_hash_header_and_gzip():
    frame, _ = _read(TableSpec(path="LINEARattributesFinalApr2013.dat.gz"), DATA,
                          {"ra": "a", "dec": "b", "LCtype": "c", "LINEARobjectID": "d"})
    assert len(frame) == 6146  # the file's own comment says "A clean sample of 6146 LINEAR variables"
    assert set(frame["LCtype"].unique()) == {1, 2, 4, 5, 6}


def test_real_csv_with_multiline_array_cells_and_bz2():
    frame, _ = _read(TableSpec(path="R.csv.bz2"), DATA,
                          {"vsx_oid": "a", "RAJ2000": "b", "DEJ2000": "c", "Type": "d"})
    assert len(frame) == 60
    assert frame["Type"].value_counts().to_dict() == {"R": 59, "EA/HW": 1}


def test_real_double_hash_header():
    frame, _ = _read(TableSpec(path="allLINEARfinal_targets.dat.gz"), DATA,
                          {"objectID": "a", "raSDSS": "b", "decSDSS": "c"})
    assert len(frame) == 7010


def test_column_names_for_a_headerless_file(tmp_path):
    path = tmp_path / "noheader.txt"
    path.write_text("1 10.0 20.0\n2 11.0 21.0\n")
    frame, _ = _read(TableSpec(path=str(path), column_names=["id", "ra", "dec"]), tmp_path,
                          {"id": "a", "ra": "b", "dec": "c"})
    assert frame["id"].tolist() == [1, 2]


def test_whitespace_without_header_is_a_clear_error(tmp_path):
    path = tmp_path / "noheader.txt"
    path.write_text("# nothing useful\n1 10.0 20.0\n")
    with pytest.raises(BuildError,
                       match=r"noheader.txt: whitespace table with no header line naming its 3 columns: set columnNames"):
        read_table(TableSpec(path=str(path)), tmp_path, {"ra": "a"})


def test_missing_file(tmp_path):
    with pytest.raises(BuildError, match=r"nope\.csv: no such file"):
        read_table(TableSpec(path="nope.csv"), tmp_path, {"ra": "a"})


def test_missing_column_names_file_column_and_field(tmp_path):
    path = _write(tmp_path, "t.csv", ROWS, "csv")
    with pytest.raises(BuildError) as exc:
        read_table(TableSpec(path=str(path), ra_column="RAJ2000"), tmp_path,
                   {"RAJ2000": "catalogs[0].raColumn"})
    msg = str(exc.value)
    assert "t.csv" in msg and "no column 'RAJ2000'" in msg and "spec.catalogs[0].raColumn" in msg
    assert "'ra'" in msg  # lists the columns that are there


def test_sexagesimal_and_radians(tmp_path):
    frame = pd.DataFrame({"ra": ["00:42:44.3", "23:59:59.9"], "dec": ["+41:16:09", "-00:30:00"]})
    path = tmp_path / "sex.csv"
    frame.to_csv(path, index=False)
    src = load_source(SourceSpec(path=str(path), coord_units="sexagesimal"), tmp_path, "fail")
    np.testing.assert_allclose(src.frame["ra"].to_numpy(), [10.684583333, 359.999583333], atol=1e-8)
    np.testing.assert_allclose(src.frame["dec"].to_numpy(), [41.269166667, -0.5], atol=1e-8)
    rad = tmp_path / "rad.csv"
    pd.DataFrame({"ra": [np.pi, -0.1], "dec": [np.pi / 4, 0.0]}).to_csv(rad, index=False)
    src = load_source(SourceSpec(path=str(rad), coord_units="rad"), tmp_path, "fail")
    np.testing.assert_allclose(src.frame["ra"].to_numpy(), [180.0, 360.0 - np.degrees(0.1)])
    np.testing.assert_allclose(src.frame["dec"].to_numpy(), [45.0, 0.0])


BAD = [
    ("ra,dec\n1,2\nabc,3\n", "column 'ra' data row 2: not a number (value 'abc')"),
    ("ra,dec\n1,2\n4,95\n", "column 'dec' data row 2: declination out of range"),
    ("ra,dec\n1,2\n4,\n", "column 'dec' data row 2: missing or not finite"),
    ("ra,dec\n1,2\nnan,5\n", "column 'ra' data row 2: missing or not finite"),
]


@pytest.mark.parametrize("text,message", BAD)
def test_bad_coordinates_fail_naming_file_column_and_row(tmp_path, text, message):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(BuildError) as exc:
        load_source(SourceSpec(path=str(path)), tmp_path, "fail")
    assert str(path) in str(exc.value) and message in str(exc.value)
    assert "skip-and-count" in str(exc.value)


@pytest.mark.parametrize("text,_", BAD)
def test_bad_coordinates_are_skipped_and_counted(tmp_path, text, _):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    src = load_source(SourceSpec(path=str(path)), tmp_path, "skip-and-count")
    assert src.rows_read == 2 and src.bad_rows == 1
    assert src.frame["_row"].to_pylist() == [0]


def test_bad_sexagesimal_is_named(tmp_path):
    path = tmp_path / "sex.csv"
    path.write_text("ra,dec\n00:42:44.3,+41:16:09\n12:xx:00,+01:00:00\n")
    with pytest.raises(BuildError, match=r"column 'ra' data row 2: not a sexagesimal angle \(value '12:xx:00'\)"):
        load_source(SourceSpec(path=str(path), coord_units="sexagesimal"), tmp_path, "fail")


def test_duplicate_source_ids(tmp_path):
    path = tmp_path / "dup.csv"
    path.write_text("oid,ra,dec\nx,1,1\ny,2,2\nx,3,3\n")
    with pytest.raises(BuildError, match=r"column 'oid' data row 3: id 'x' repeats an earlier row"):
        load_source(SourceSpec(path=str(path), id_column="oid"), tmp_path, "fail")
    src = load_source(SourceSpec(path=str(path), id_column="oid"), tmp_path, "skip-and-count")
    assert src.frame["id"].to_pylist() == ["x", "y"] and src.bad_rows == 1


def test_empty_catalog(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_text("ra,dec\n")
    spec = CatalogSpec(name="empty", path=str(path), label="X", radius_arcsec=1)
    with pytest.raises(BuildError, match=r"empty.csv \(catalog 'empty'\): the catalog is empty"):
        load_catalog(spec, 0, tmp_path, "fail")


def test_label_map_that_maps_nothing(tmp_path):
    path = _write(tmp_path, "t.csv", ROWS, "csv")
    spec = CatalogSpec(name="c", path=str(path), label_column="cls", label_map={"rr_lyr": "RRL"}, radius_arcsec=1)
    with pytest.raises(BuildError) as exc:
        load_catalog(spec, 0, tmp_path, "fail")
    msg = str(exc.value)
    assert "t.csv (catalog 'c'): labelMap maps nothing" in msg and "'rr_lyr'" in msg and "'RRab'" in msg


def test_catalog_with_no_usable_rows(tmp_path):
    path = tmp_path / "nolabels.csv"
    path.write_text("ra,dec,cls\n1,1,\n2,2,\n")
    spec = CatalogSpec(name="c", path=str(path), label_column="cls", radius_arcsec=1)
    with pytest.raises(BuildError, match=r"no usable rows: 2 read, 0 with bad coordinates, 2 without a label"):
        load_catalog(spec, 0, tmp_path, "fail")


def _labels(catalog) -> list:
    return catalog.extra["label"].to_pylist()


def test_numeric_labels_map_by_integer_text(tmp_path):
    # LCtype read as float (a blank makes the column float): 1.0 must still match key "1".
    path = tmp_path / "lin.csv"
    path.write_text("ra,dec,LCtype\n1,1,1\n2,2,\n3,3,5\n4,4,6\n")
    spec = CatalogSpec(name="linear", path=str(path), label_column="LCtype",
                       label_map={1: "RRL", 5: "EW"}, radius_arcsec=1)
    cat = load_catalog(spec, 0, tmp_path, "fail")
    # Every row is kept for matching; rows without a final label carry None and say why.
    assert _labels(cat) == ["RRL", None, "EW", None]
    assert cat.label_state.tolist() == [LABEL_OK, LABEL_NONE, LABEL_OK, LABEL_UNMAPPED]
    assert cat.stats["rows_without_label"] == 1 and cat.stats["rows_unmapped"] == 1
    keep = load_catalog(spec.model_copy(update={"unmapped_labels": "keep"}), 0, tmp_path, "fail")
    assert _labels(keep) == ["RRL", None, "EW", "6"]
    old = load_catalog(spec.model_copy(update={"label_from": "nearest-labeled"}), 0, tmp_path, "fail")
    assert _labels(old) == ["RRL", "EW"] and old.stats["rows_used"] == 2


def test_gzip_copy_of_real_file_without_gz_name(tmp_path):
    copy = tmp_path / "linear_targets.dat"
    shutil.copy(DATA / "allLINEARfinal_targets.dat.gz", copy)
    frame, _ = _read(TableSpec(path=str(copy)), tmp_path, {"objectID": "a"})
    assert len(frame) == 7010


def test_column_names_that_do_not_fit_the_rows(tmp_path):
    path = tmp_path / "noheader.txt"
    path.write_text("1 10.0 20.0\n2 11.0 21.0\n")
    with pytest.raises(BuildError, match=r"noheader.txt: 2 column names for rows of 3 values"):
        read_table(TableSpec(path=str(path), column_names=["ra", "dec"]), tmp_path, {"ra": "a"})
    csv = tmp_path / "noheader.csv"
    csv.write_text("1,10.0,20.0\n2,11.0,21.0\n")
    with pytest.raises(BuildError, match=r"noheader.csv: rows have more values than there are column names"):
        read_table(TableSpec(path=str(csv), column_names=["ra", "dec"]), tmp_path, {"ra": "a"})


def test_only_needed_columns_are_kept_and_missing_ones_list_the_file_columns(tmp_path):
    path = _write(tmp_path, "t.parquet", ROWS, "parquet")
    frame, _ = _read(TableSpec(path=str(path)), tmp_path, {"ra": "a", "dec": "b"})
    assert list(frame.columns) == ["ra", "dec"]
    with pytest.raises(BuildError, match=r"no column 'RA' \(from spec.x\); columns are: 'oid', 'ra', 'dec', 'cls'"):
        read_table(TableSpec(path=str(path)), tmp_path, {"RA": "x"})
