"""Unit mistakes that used to pass silently (issue 9, item 6), and the sexagesimal parser.

- radians read as degrees: refused unless coordUnits says which;
- CSV (and whitespace) rows with more fields than the header: refused, naming the row;
- a sexagesimal second of 60 (astropy's IllegalSecondWarning): read as astropy reads it, and
  reported with file, column and row;
- the vectorised sexagesimal parser gives astropy's Angle bit for bit on every shipped catalog.
"""
from __future__ import annotations

import bz2
import gzip
import warnings
from pathlib import Path

import astropy.units as u
import numpy as np
import pandas as pd
import pytest
import yaml
from astropy.coordinates import Angle

from step_runtime.cli import main
from step_runtime.spec.trainingset import SourceSpec, TableSpec, TrainingSetBuildSpec
from step_runtime.trainingset.errors import BuildError
from step_runtime.trainingset.inputs import load_catalog, load_source
from step_runtime.trainingset.sexagesimal import HOURANGLE_TO_DEG, parse_sexagesimal
from step_runtime.trainingset.tables import read_table

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data" / "trainingset"
EXAMPLES = ROOT / "examples" / "data" / "catalogs"
LINEAR = DATA / "LINEARattributesFinalApr2013.dat.gz"


def _manifest(tmp_path: Path, spec: dict) -> str:
    path = tmp_path / "build.yaml"
    path.write_text(yaml.safe_dump({"apiVersion": "alertops.io/v1alpha1", "kind": "TrainingSetBuild",
                                    "metadata": {"name": "units"}, "spec": spec}))
    return str(path)


def _linear_in_radians(tmp_path: Path, rows: int | None = None) -> Path:
    frame = read_table(TableSpec(path=str(LINEAR)), DATA, {"ra": "a", "dec": "b", "LINEARobjectID": "c"})[0].to_pandas()
    frame = frame.iloc[:rows] if rows else frame
    out = tmp_path / "linear_rad.csv"
    pd.DataFrame({"oid": frame["LINEARobjectID"], "ra": np.radians(frame["ra"]),
                  "dec": np.radians(frame["dec"])}).to_csv(out, index=False)
    return out


def _radians_spec(tmp_path: Path, units: str | None, rows: int | None = None) -> dict:
    source = {"path": str(_linear_in_radians(tmp_path, rows)), "idColumn": "oid"}
    if units:
        source["coordUnits"] = units
    return {"source": source,
            "catalogs": [{"name": "linear", "path": str(LINEAR), "idColumn": "LINEARobjectID", "labelColumn": "LCtype",
                          "radiusArcsec": 1.0}],
            "output": {"path": "out.parquet"}}


# --- radians given as degrees -----------------------------------------------------------------

def test_radians_without_coord_units_are_refused_with_a_suggestion(tmp_path, capsys):
    assert main(["build", _manifest(tmp_path, _radians_spec(tmp_path, None)), "--output-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "linear_rad.csv" in err
    assert "all 6146 positions" in err and "look like radians" in err and "spec.source.coordUnits: rad" in err
    assert not (tmp_path / "out.parquet").exists()


def test_radians_with_coord_units_rad_match_every_object(tmp_path):
    assert main(["build", _manifest(tmp_path, _radians_spec(tmp_path, "rad")), "--output-dir", str(tmp_path)]) == 0
    assert pd.read_parquet(tmp_path / "out.parquet")["linear_id"].notna().sum() == 6146


def test_explicit_degrees_override_the_guard(tmp_path):
    assert main(["build", _manifest(tmp_path, _radians_spec(tmp_path, "deg")), "--output-dir", str(tmp_path)]) == 0


def test_few_rows_are_not_judged(tmp_path):
    # 99 rows could be a small patch of sky near RA 0 in degrees: no guess from so little.
    spec = _radians_spec(tmp_path, None, rows=99)
    assert main(["build", _manifest(tmp_path, spec), "--output-dir", str(tmp_path)]) == 0


def test_a_catalog_in_radians_names_its_own_field(tmp_path):
    rad = _linear_in_radians(tmp_path)
    spec = {"source": {"path": str(LINEAR), "idColumn": "LINEARobjectID"},
            "catalogs": [{"name": "c", "path": str(rad), "idColumn": "oid", "label": "X", "radiusArcsec": 1.0}],
            "output": {"path": "out.parquet"}}
    with pytest.raises(BuildError, match=r"spec\.catalogs\[0\]\.coordUnits: rad"):
        load_catalog(TrainingSetBuildSpec.model_validate(spec).catalogs[0], 0, tmp_path, "fail")


# --- rows longer than the header --------------------------------------------------------------

LONG_ROWS = [
    ("plain.csv", "ra,dec,cls\n1,2,x\n\n3,4,y,EXTRA\n5,6,z\n", "data row 2 has 4 fields but the header names 3"),
    ("trailing.csv", "ra,dec,cls\n1,2,x\n3,4,y,\n", "data row 2 has 4 fields"),
    ("quoted.csv", 'ra,dec,cls\n1,2,"two\nlines, one comma"\n3,4,y\n5,6,z,1,2\n', "data row 3 has 5 fields"),
    ("table.tsv", "ra\tdec\tcls\n1\t2\tx\n3\t4\ty\tz\n", "data row 2 has 4 fields"),
    ("table.dat", "# ra dec cls\n1 2 x\n3 4 y\n5 6 z w\n", "data row 3 has 4 fields"),
]


@pytest.mark.parametrize("name,text,message", LONG_ROWS)
def test_rows_with_more_fields_than_the_header_are_refused(tmp_path, name, text, message):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(BuildError) as exc:
        read_table(TableSpec(path=str(path)), tmp_path, {"ra": "a", "dec": "b"})
    assert str(path) in str(exc.value) and message in str(exc.value)


def test_a_lone_quote_inside_a_field_falls_back_to_a_full_check(tmp_path):
    good = tmp_path / "inch.csv"
    good.write_text('ra,dec,size\n1,2,12"\n3,4,5"\n5,6,7\n')
    frame, _ = read_table(TableSpec(path=str(good)), tmp_path, {"ra": "a", "dec": "b"})
    assert len(frame) == 3
    bad = tmp_path / "inch_long.csv"
    bad.write_text('ra,dec,size\n1,2,12"\n3,4,y\n5,6,z,1\n')
    with pytest.raises(BuildError, match=r"inch_long.csv: .*Expected 3 fields in line 4, saw 4"):
        read_table(TableSpec(path=str(bad)), tmp_path, {"ra": "a", "dec": "b"})


def test_a_long_row_in_a_real_file_with_multiline_cells(tmp_path):
    text = bz2.decompress((DATA / "R.csv.bz2").read_bytes())
    assert text.endswith(b"\n")
    path = tmp_path / "R_long.csv"
    path.write_bytes(text[:-1] + b",EXTRA\n")  # the last of the 60 rows gets one more field
    spec = TableSpec(path=str(path), ra_column="RAJ2000", dec_column="DEJ2000")
    with pytest.raises(BuildError, match=r"R_long.csv: data row 60 has \d+ fields but the header names"):
        read_table(spec, tmp_path, {"RAJ2000": "a", "DEJ2000": "b"})
    frame, _ = read_table(spec.model_copy(update={"path": str(DATA / "R.csv.bz2")}), tmp_path,
                          {"RAJ2000": "a", "DEJ2000": "b"})
    assert len(frame) == 60


def test_gzip_whitespace_table_with_a_long_row(tmp_path):
    lines = gzip.decompress(LINEAR.read_bytes()).decode().splitlines()
    lines[-1] += " 42"
    path = tmp_path / "linear_long.dat.gz"
    path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    with pytest.raises(BuildError, match=r"data row 6146 has 15 fields but the header names 14 columns"):
        read_table(TableSpec(path=str(path)), tmp_path, {"ra": "a", "dec": "b"})


# --- sexagesimal: astropy's values, its quirks reported -----------------------------------------

def test_the_hours_factor_is_astropys():
    assert HOURANGLE_TO_DEG == u.hourangle.to(u.deg)


def _shipped_positions() -> list[tuple[str, np.ndarray, np.ndarray]]:
    files = [(EXAMPLES / "vsx_variables.csv", "RAJ2000", "DEJ2000"), (DATA / "R.csv.bz2", "RAJ2000", "DEJ2000"),
             (LINEAR, "ra", "dec"), (DATA / "allLINEARfinal_targets.dat.gz", "raLIN", "decLIN"),
             (DATA / "allLINEARfinal_targets.dat.gz", "raSDSS", "decSDSS"), (DATA / "table3.dat.gz", "ra", "dec")]
    files += [(p, "ra", "dec") for p in sorted((EXAMPLES / "scope-golden").glob("*.csv"))]
    out = []
    for path, ra, dec in files:
        frame, _ = read_table(TableSpec(path=str(path)), path.parent, {ra: "a", dec: "b"})
        out.append((f"{path.name}:{ra}", np.asarray(frame[ra], float), np.asarray(frame[dec], float)))
    return out


# How real tables write sexagesimal positions (TNS, BTS, SIMBAD, VizieR), one style per file.
STYLES = [dict(sep=":", precision=3), dict(sep=":", precision=2), dict(sep=" ", precision=2),
          dict(sep=":", precision=1), dict(sep=" ", precision=0), dict(sep=":", precision=4)]


def test_parser_equals_astropy_on_every_shipped_catalog():
    for i, (name, ra_deg, dec_deg) in enumerate(_shipped_positions()):
        style = STYLES[i % len(STYLES)]
        ra_text = Angle(ra_deg, u.deg).to_string(unit=u.hourangle, pad=True, **style)
        dec_text = Angle(dec_deg, u.deg).to_string(unit=u.deg, pad=True, alwayssign=True, **style)
        for text, hours in ((ra_text, True), (dec_text, False)):
            ours = parse_sexagesimal(pd.Series(text), hours)
            theirs = Angle(text, unit=u.hourangle if hours else u.deg).degree
            assert not ours.refused.any() and not ours.quirks, name
            assert np.array_equal(ours.degrees, theirs), name  # bit for bit, not approximately


ODD = ["12:34:60.0", "12:60:00", "24:00:00", "25:00:00", "12:61:00", "1:2", "1 2.5", "12.5", "-0:30:00",
       "12h30m15s", "x", "1:2:3:4", "12 : 34 : 56", "- 1:2:3", ".5", "5.", "12:34 56", "1\t2\t3", "-24:00:00",
       "23:59:60", "0:0:0.5e-1", "−1:2:3", "+1d2m3s", "1e1", "+-1:2:3"]


@pytest.mark.parametrize("hours", [True, False])
def test_odd_forms_are_read_or_refused_as_astropy_does(hours):
    ours = parse_sexagesimal(pd.Series(ODD, dtype=object), hours)
    for i, text in enumerate(ODD):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                theirs = Angle(text, unit=u.hourangle if hours else u.deg).degree
            except Exception:
                assert ours.refused[i] and np.isnan(ours.degrees[i]), text
                continue
        assert not ours.refused[i] and ours.degrees[i] == theirs, text
    fields = {(ODD[q.position], q.field) for q in ours.quirks}
    assert {("12:34:60.0", "second"), ("12:60:00", "minute"), ("23:59:60", "second")} <= fields
    assert (("24:00:00", "hour") in fields) is hours


def test_a_second_of_60_is_reported_with_file_column_and_row(tmp_path):
    path = tmp_path / "tns.csv"
    path.write_text("name,ra,declination\nSN a,10:00:00.00,+20:00:00.0\nSN b,12:34:60.00,-05:06:60.0\n"
                    "SN c,12:35:00.00,-05:07:00.0\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no bare astropy warning may get through
        spec = SourceSpec(path=str(path), id_column="name", dec_column="declination", coord_units="sexagesimal")
        notes: list[str] = []
        src = load_source(spec, tmp_path, "fail", notes.append)
    # 12:34:60 is 12:35:00, as astropy reads it.
    ra, dec = src.frame["ra"].to_pylist(), src.frame["dec"].to_pylist()
    assert ra[1] == ra[2] and dec[1] == dec[2]
    assert len(notes) == 2
    assert f"{path}: column 'ra' data row 2: second of 60 in '12:34:60.00'" in notes[0]
    assert "column 'declination' data row 2" in notes[1] and "1 such value(s)" in notes[1]


def test_the_build_prints_the_quirk_as_a_warning(tmp_path, capsys):
    path = tmp_path / "tns.csv"
    path.write_text("name,ra,declination\nSN a,10:00:00.00,+20:00:00.0\nSN b,12:34:60.00,-05:06:00.0\n")
    spec = {"source": {"path": str(path), "idColumn": "name", "decColumn": "declination",
                       "coordUnits": "sexagesimal"},
            "catalogs": [{"name": "c", "path": str(path), "idColumn": "name", "decColumn": "declination",
                          "coordUnits": "sexagesimal", "label": "SN", "radiusArcsec": 1.0}],
            "output": {"path": "out.parquet"}}
    assert main(["build", _manifest(tmp_path, spec), "--output-dir", str(tmp_path)]) == 0
    err = capsys.readouterr().err
    assert err.count("alertops build: warning: ") == 2  # once for the source, once for the catalog
    assert "tns.csv: column 'ra' data row 2: second of 60" in err
