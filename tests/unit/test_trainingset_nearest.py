"""A source's label comes from its nearest catalog object (issue 9, item 5).

The nearest object within the radius is the match whether or not it has a label; when it has
none (blank, or a label the labelMap drops) the source gets no label from that catalog and is
counted as matched_unlabeled. labelFrom: nearest-labeled keeps the old behaviour (unlabeled rows
removed before matching). Both are checked against astropy's match_to_catalog_sky on real data.
"""
from __future__ import annotations

import json
from pathlib import Path

import astropy.units as u
import numpy as np
import pandas as pd
import pytest
import yaml
from astropy.coordinates import SkyCoord

from step_runtime.cli import main
from step_runtime.spec.trainingset import TableSpec
from step_runtime.trainingset.tables import read_table

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data" / "trainingset"
ARCSEC = 1.0 / 3600.0


def _build(tmp_path: Path, spec: dict, name: str = "t") -> tuple[dict, pd.DataFrame]:
    manifest = tmp_path / f"{name}.yaml"
    manifest.write_text(yaml.safe_dump({"apiVersion": "alertops.io/v1alpha1", "kind": "TrainingSetBuild",
                                        "metadata": {"name": name}, "spec": spec}))
    assert main(["build", str(manifest), "--output-dir", str(tmp_path / "out")]) == 0
    out = tmp_path / "out" / spec["output"]["path"]
    return json.loads(Path(str(out) + ".summary.json").read_text()), pd.read_parquet(out)


def _scene(tmp_path: Path, near_label: str) -> dict:
    """One source; its counterpart 0.1" away labeled `near_label` (blank: none), an RRL 1.8" away."""
    (tmp_path / "src.csv").write_text("oid,ra,dec\ns1,150.0,10.0\n")
    (tmp_path / "cat.csv").write_text(f"cid,ra,dec,cls\nnear,150.0,{10.0 + 0.1 * ARCSEC!r},{near_label}\n"
                                      f"far,150.0,{10.0 - 1.8 * ARCSEC!r},RRAB\n")
    return {
        "source": {"path": str(tmp_path / "src.csv"), "idColumn": "oid"},
        "catalogs": [{"name": "c", "path": str(tmp_path / "cat.csv"), "idColumn": "cid", "labelColumn": "cls",
                      "labelMap": {"RRAB": "RRL", "EW": "EB"}, "radiusArcsec": 2.0}],
        "combine": {"keepUnlabeled": True},
        "output": {"path": "out.parquet"},
    }


def test_a_blank_nearest_object_gives_no_label_not_the_farther_one(tmp_path):
    summary, frame = _build(tmp_path, _scene(tmp_path, ""))
    row = frame.iloc[0]
    assert row["c_id"] == "near" and abs(row["c_sep_arcsec"] - 0.1) < 1e-6 and row["c_n_within"] == 2
    assert pd.isna(row["c_label"]) and pd.isna(row["label"]) and row["n_catalogs"] == 0
    cat = summary["catalogs"]["c"]
    assert (cat["matches"], cat["matched_unlabeled"], cat["matched_unmapped"]) == (1, 1, 0)
    assert cat["rows_used"] == 2 and cat["rows_without_label"] == 1


def test_an_unmapped_nearest_object_gives_no_label_with_drop_and_its_own_with_keep(tmp_path):
    summary, frame = _build(tmp_path, _scene(tmp_path, "DSCT"))
    assert frame.iloc[0]["c_id"] == "near" and pd.isna(frame.iloc[0]["label"])
    cat = summary["catalogs"]["c"]
    assert (cat["matched_unlabeled"], cat["matched_unmapped"]) == (1, 1)
    spec = _scene(tmp_path, "DSCT")
    spec["catalogs"][0]["unmappedLabels"] = "keep"
    summary, frame = _build(tmp_path, spec, "keep")
    assert frame.iloc[0]["label"] == "DSCT" and frame.iloc[0]["c_id"] == "near"
    assert summary["catalogs"]["c"]["matched_unlabeled"] == 0


def test_without_keep_unlabeled_the_source_is_left_out(tmp_path):
    spec = _scene(tmp_path, "")
    spec["combine"] = {}
    summary, frame = _build(tmp_path, spec)
    assert len(frame) == 0 and summary["rows_out"] == 0 and summary["catalogs"]["c"]["matched_unlabeled"] == 1


def test_nearest_labeled_is_the_old_behaviour_on_request(tmp_path):
    spec = _scene(tmp_path, "")
    spec["catalogs"][0]["labelFrom"] = "nearest-labeled"
    summary, frame = _build(tmp_path, spec)
    row = frame.iloc[0]
    assert row["label"] == "RRL" and row["c_id"] == "far" and abs(row["c_sep_arcsec"] - 1.8) < 1e-6
    assert summary["catalogs"]["c"]["matched_unlabeled"] == 0 and summary["catalogs"]["c"]["rows_used"] == 1


def test_one_to_one_clears_the_state_of_a_lost_unlabeled_match(tmp_path):
    (tmp_path / "src.csv").write_text(f"oid,ra,dec\ns1,150.0,10.0\ns2,150.0,{10.0 + 0.5 * ARCSEC!r}\n")
    (tmp_path / "cat.csv").write_text(f"cid,ra,dec,cls\nnear,150.0,{10.0 + 0.1 * ARCSEC!r},\nelsewhere,20.0,20.0,X\n")
    (tmp_path / "lab.csv").write_text("cid,ra,dec,cls\nx,150.0,10.0,RRAB\n"
                                      f"y,150.0,{10.0 + 0.5 * ARCSEC!r},RRC\n")
    spec = {
        "source": {"path": str(tmp_path / "src.csv"), "idColumn": "oid"},
        "catalogs": [{"name": "c", "path": str(tmp_path / "cat.csv"), "idColumn": "cid", "labelColumn": "cls",
                      "radiusArcsec": 2.0},
                     {"name": "d", "path": str(tmp_path / "lab.csv"), "idColumn": "cid", "labelColumn": "cls",
                      "radiusArcsec": 2.0}],
        "combine": {"matching": "one-to-one", "keepUnlabeled": True},
        "output": {"path": "out.parquet"},
    }
    # "near" is 0.1" from s1 and 0.4" from s2: s1 keeps it, s2 loses it.
    summary, frame = _build(tmp_path, spec)
    by_id = frame.set_index("id")
    assert by_id.loc["s1", "c_id"] == "near" and pd.isna(by_id.loc["s2", "c_id"])
    cat = summary["catalogs"]["c"]
    assert (cat["matches"], cat["matched_unlabeled"], cat["lost_one_to_one"]) == (1, 1, 1)


# --- against astropy, on real catalogs ---------------------------------------------------------

RRL_ONLY = {"1": "RRL", "2": "RRL"}  # EA, EW and DSCT (LCtype 4, 5, 6) are left unmapped on purpose


def _positions(path: Path, columns: list[str]) -> pd.DataFrame:
    frame, _ = read_table(TableSpec(path=str(path)), path.parent, {c: c for c in columns})
    return frame.to_pandas()


def _astropy_labels(src: pd.DataFrame, cat: pd.DataFrame, labels: np.ndarray, ids: np.ndarray,
                    radius_arcsec: float) -> tuple[np.ndarray, np.ndarray]:
    """(catalog id, label) per source: the nearest catalog row over the rows given, as astropy finds it."""
    a = SkyCoord(src["raLIN"].to_numpy(float) * u.deg, src["decLIN"].to_numpy(float) * u.deg)
    b = SkyCoord(cat["ra"].to_numpy(float) * u.deg, cat["dec"].to_numpy(float) * u.deg)
    idx, sep, _ = a.match_to_catalog_sky(b)
    inside = sep.arcsec <= radius_arcsec
    matched_id = np.where(inside, ids[idx], -1)
    matched_label = np.where(inside, labels[idx], None)
    return matched_id, matched_label


@pytest.mark.parametrize("label_from", ["nearest", "nearest-labeled"])
def test_labels_equal_astropy_match_to_catalog_sky(tmp_path, label_from):
    """LINEAR targets (positions from LINEAR) x LINEAR variables (SDSS positions), only RR Lyrae mapped.

    At 0.5 deg (absurd for a real build, but it puts several variables within reach) many targets
    have a nearest variable that is not an RR Lyra and an RR Lyra farther away: exactly the case
    where the old behaviour gave a wrong label.
    """
    radius = 1800.0
    targets_path = DATA / "allLINEARfinal_targets.dat.gz"
    linear_path = DATA / "LINEARattributesFinalApr2013.dat.gz"
    spec = {
        "source": {"path": str(targets_path), "idColumn": "objectID", "raColumn": "raLIN", "decColumn": "decLIN"},
        "catalogs": [{"name": "linear", "path": str(linear_path), "idColumn": "LINEARobjectID",
                      "labelColumn": "LCtype", "labelMap": RRL_ONLY, "radiusArcsec": radius,
                      "labelFrom": label_from}],
        "combine": {"keepUnlabeled": True},
        "output": {"path": "out.parquet"},
        "parallelism": 2,
    }
    summary, frame = _build(tmp_path, spec, label_from)
    src = _positions(targets_path, ["objectID", "raLIN", "decLIN"])
    cat = _positions(linear_path, ["ra", "dec", "LCtype", "LINEARobjectID"])
    mapped = cat["LCtype"].astype(str).map(RRL_ONLY).to_numpy(dtype=object)
    ids = cat["LINEARobjectID"].to_numpy()
    if label_from == "nearest-labeled":
        keep = pd.notna(mapped)
        cat, mapped, ids = cat[keep], mapped[keep], ids[keep]
    want_id, want_label = _astropy_labels(src, cat, mapped, ids, radius)
    by_id = frame.set_index("id").loc[src["objectID"].to_numpy()]
    got_id = by_id["linear_id"].fillna(-1).to_numpy(dtype=np.int64)
    got_label = by_id["linear_label"].to_numpy(dtype=object)
    assert np.array_equal(got_id, want_id.astype(np.int64))
    assert [None if pd.isna(v) else v for v in got_label] == [None if pd.isna(v) else v for v in want_label]
    cat_summary = summary["catalogs"]["linear"]
    assert cat_summary["matches"] == int((want_id >= 0).sum())
    unlabeled = int(((want_id >= 0) & pd.isna(want_label)).sum())
    assert cat_summary["matched_unlabeled"] == cat_summary["matched_unmapped"] == unlabeled
    if label_from == "nearest":
        assert unlabeled > 2000  # EW/EA/DSCT nearest: no label, as astropy over all rows says
    else:
        assert unlabeled == 0


def test_the_two_behaviours_differ_where_the_nearest_object_is_unlabeled(tmp_path):
    """The sources the old behaviour labels although their nearest object has no mapped label."""
    spec = {
        "source": {"path": str(DATA / "allLINEARfinal_targets.dat.gz"), "idColumn": "objectID",
                   "raColumn": "raLIN", "decColumn": "decLIN"},
        "catalogs": [{"name": "linear", "path": str(DATA / "LINEARattributesFinalApr2013.dat.gz"),
                      "idColumn": "LINEARobjectID", "labelColumn": "LCtype", "labelMap": RRL_ONLY,
                      "radiusArcsec": 1800.0}],
        "combine": {"keepUnlabeled": True},
        "output": {"path": "out.parquet"},
    }
    _, new = _build(tmp_path, spec, "new")
    spec["catalogs"][0]["labelFrom"] = "nearest-labeled"
    _, old = _build(tmp_path, spec, "old")
    new, old = new.set_index("id"), old.loc[:, ["id", "linear_id", "label"]].set_index("id").loc[new["id"]]
    relabeled = new["label"].isna() & old["label"].notna()
    assert relabeled.sum() > 0
    # Each of them took the label of an object other than its nearest one.
    assert (old.loc[relabeled, "linear_id"] != new.loc[relabeled, "linear_id"]).all()
