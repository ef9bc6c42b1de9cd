"""Builds over real catalogs shipped in the repo, with counts checked two ways.

Expected counts come from the shared data's SOURCES note (measured overlaps at 2"): SCoPe x
LINEAR 20, Stripe-82 RR Lyrae x LINEAR targets 121; every per-catalog count is also checked
against astropy's search_around_sky on the same files, an independent implementation.
"""
from __future__ import annotations

import json
from pathlib import Path

import astropy.units as u
import numpy as np
import pandas as pd
import pytest
import yaml
from astropy.coordinates import SkyCoord, search_around_sky

from step_runtime.cli import main
from step_runtime.spec.trainingset import TableSpec
from step_runtime.trainingset.tables import read_table

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data" / "trainingset"
GOLDEN = ROOT / "examples" / "data" / "catalogs" / "scope-golden"
SCOPE_MAP = {"rr_lyr": "RRL", "w_uma": "EW", "beta_lyr": "EB", "delta_scuti": "DSCT"}
LINEAR_MAP = {"1": "RRL", "2": "RRL", "4": "EA", "5": "EW", "6": "DSCT"}


def _scope_catalogs(priority: int) -> list[dict]:
    return [{"name": f"scope_{p.stem}", "path": str(p), "label": SCOPE_MAP.get(p.stem, p.stem),
             "radiusArcsec": 2.0, "priority": priority} for p in sorted(GOLDEN.glob("*.csv"))]


def _run(tmp_path: Path, spec: dict, name: str) -> tuple[dict, pd.DataFrame]:
    manifest = tmp_path / f"{name}.yaml"
    manifest.write_text(yaml.safe_dump({"apiVersion": "alertops.io/v1alpha1", "kind": "TrainingSetBuild",
                                        "metadata": {"name": name}, "spec": spec}))
    assert main(["build", str(manifest), "--output-dir", str(tmp_path / "out")]) == 0
    out = tmp_path / "out" / spec["output"]["path"]
    summary = json.loads(Path(str(out) + ".summary.json").read_text())
    return summary, pd.read_parquet(out)


def _astropy_sources_matched(src: tuple, cat: tuple, radius_arcsec: float) -> int:
    a = SkyCoord(np.asarray(src[0], float) * u.deg, np.asarray(src[1], float) * u.deg)
    b = SkyCoord(np.asarray(cat[0], float) * u.deg, np.asarray(cat[1], float) * u.deg)
    idx_src, _, _, _ = search_around_sky(a, b, radius_arcsec * u.arcsec)
    return int(np.unique(idx_src).size)


def _positions(path: Path, ra: str, dec: str) -> tuple:
    frame, _ = read_table(TableSpec(path=str(path)), path.parent, {ra: "ra", dec: "dec"})
    return np.asarray(frame[ra], float), np.asarray(frame[dec], float)


@pytest.fixture(scope="module")
def linear_with_scope(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("linear_scope")
    spec = {
        "source": {"path": str(DATA / "LINEARattributesFinalApr2013.dat.gz"), "idColumn": "LINEARobjectID"},
        "catalogs": _scope_catalogs(priority=0) + [
            {"name": "linear", "path": str(DATA / "LINEARattributesFinalApr2013.dat.gz"), "idColumn": "LINEARobjectID",
             "labelColumn": "LCtype", "labelMap": LINEAR_MAP, "radiusArcsec": 1.0, "priority": 1}],
        "combine": {"policy": "priority"},
        "output": {"path": "linear_scope.parquet"},
    }
    return _run(tmp, spec, "linear-scope")


def test_scope_golden_lists_match_20_linear_variables(linear_with_scope):
    summary, frame = linear_with_scope
    scope = {k: v for k, v in summary["catalogs"].items() if k.startswith("scope_")}
    assert sum(c["matches"] for c in scope.values()) == 20
    linear = _positions(DATA / "LINEARattributesFinalApr2013.dat.gz", "ra", "dec")
    golden = [pd.read_csv(p) for p in sorted(GOLDEN.glob("*.csv"))]
    allgold = pd.concat(golden)
    assert _astropy_sources_matched(linear, (allgold["ra"], allgold["dec"]), 2.0) == 20
    # Every LINEAR row matches itself at 0", so every row is labeled.
    assert summary["rows_in"] == 6146 and summary["rows_out"] == 6146
    assert summary["catalogs"]["linear"]["matches"] == 6146


def test_scope_and_linear_labels_agree_or_conflict_as_catalogued(linear_with_scope):
    summary, frame = linear_with_scope
    both = frame[frame["n_catalogs"] == 2]
    assert len(both) == 20
    # From the 20 pairs: 11 RRab <-> rr_lyr, 1 EW <-> w_uma, 1 DSCT <-> delta_scuti agree; 5 EW <-> beta_lyr,
    # 1 EA <-> periodic, 1 EW <-> variable disagree. SCoPe is trusted first, so it wins those.
    assert int(both["conflict"].sum()) == 7 == summary["conflicts"]
    agree = both[~both["conflict"]]
    assert agree["label"].value_counts().to_dict() == {"RRL": 11, "EW": 1, "DSCT": 1}
    assert set(both.loc[both["conflict"], "label"]) == {"EB", "periodic", "variable"}
    assert (both["label_catalog"].str.startswith("scope_")).all()
    assert (both["separation_arcsec"] <= 2.0).all()


def test_stripe82_rr_lyrae_match_121_linear_targets(tmp_path):
    spec = {
        "source": {"path": str(DATA / "allLINEARfinal_targets.dat.gz"), "idColumn": "objectID",
                   "raColumn": "raSDSS", "decColumn": "decSDSS"},
        "catalogs": [
            {"name": "s82", "path": str(DATA / "table3.dat.gz"), "idColumn": "id", "label": "RRL",
             "radiusArcsec": 2.0, "priority": 0, "carry": ["d"]},
            {"name": "linear", "path": str(DATA / "LINEARattributesFinalApr2013.dat.gz"),
             "idColumn": "LINEARobjectID", "labelColumn": "LCtype", "labelMap": LINEAR_MAP,
             "radiusArcsec": 2.0, "priority": 1},
        ],
        "combine": {"policy": "agree"},
        "output": {"path": "targets.parquet"},
        "parallelism": 3,
    }
    summary, _ = _run(tmp_path, spec, "targets")
    assert summary["catalogs"]["s82"]["matches"] == 121
    targets = _positions(DATA / "allLINEARfinal_targets.dat.gz", "raSDSS", "decSDSS")
    s82 = _positions(DATA / "table3.dat.gz", "ra", "dec")
    linear = _positions(DATA / "LINEARattributesFinalApr2013.dat.gz", "ra", "dec")
    assert _astropy_sources_matched(targets, s82, 2.0) == 121
    assert summary["catalogs"]["linear"]["matches"] == _astropy_sources_matched(targets, linear, 2.0) == 5204
    # Stripe-82 RR Lyrae are RR Lyrae: rows labeled by both catalogs and not RRL in LINEAR conflict.
    out = pd.read_parquet(tmp_path / "out" / "targets.parquet")
    both = out[out["n_catalogs"] == 2]
    expected_conflicts = int((both["linear_label"] != "RRL").sum())
    assert summary["conflicts"] == expected_conflicts
    assert out.loc[out["conflict"], "label"].isna().all()  # agree: no label where they disagree
    assert out["s82_d"].notna().sum() == 121  # carried column (distance, kpc) follows the match
