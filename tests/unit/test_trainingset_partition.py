"""Sky partitions: a partitioned build gives exactly the unpartitioned result."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from step_runtime.spec.common import parse_spec
from step_runtime.spec.trainingset import TrainingSetBuildSpec
from step_runtime.trainingset.build import load_inputs, match_partition, merge_parts
from step_runtime.trainingset.partition import band_edges_deg, catalog_rows_for, source_partition


def test_bands_have_equal_area_and_cover_the_sphere():
    edges = band_edges_deg(4)
    assert edges[0] == -90.0 and edges[-1] == 90.0
    np.testing.assert_allclose(np.diff(np.sin(np.radians(edges))), 0.5, rtol=1e-9)
    dec = np.array([-90.0, -30.0, 0.0, 29.9, 30.0, 90.0])
    assert source_partition(dec, 4).tolist() == [0, 1, 2, 2, 3, 3]  # a band holds its lower edge
    assert source_partition(dec, 1).tolist() == [0] * 6


def test_catalog_margin_reaches_across_band_edges():
    edge = band_edges_deg(2)[1]  # 0 degrees
    dec = np.array([edge - 1.5 / 3600, edge + 1.5 / 3600, edge - 3 / 3600])
    margin = 2 / 3600
    assert catalog_rows_for(dec, 1, 2, margin).tolist() == [True, True, False]
    assert catalog_rows_for(dec, 0, 2, margin).tolist() == [True, True, True]


def _edge_heavy_scene(tmp_path: Path, n: int = 4000) -> None:
    """Sources and catalog rows crowded around the band edges of 2, 3 and 5 partitions and the poles."""
    rng = np.random.default_rng(11)
    edges = np.unique(np.concatenate([band_edges_deg(k) for k in (2, 3, 5)]))
    centre = rng.choice(edges, n)
    dec = np.clip(centre + rng.uniform(-3, 3, n) / 3600, -90, 90)
    ra = rng.uniform(0, 360, n)
    pd.DataFrame({"oid": np.arange(n), "ra": ra, "dec": dec}).to_csv(tmp_path / "src.csv", index=False)
    # Catalog rows within 0-2.5" of sources (many straddle an edge), some duplicated nearby.
    pick = rng.choice(n, n // 2, replace=False)
    off = rng.uniform(-2.5, 2.5, (2, pick.size)) / 3600
    cat_dec = np.clip(dec[pick] + off[1], -90, 90)
    cat_ra = np.mod(ra[pick] + off[0], 360)
    labels = rng.choice(["RRL", "EW", "DSCT"], pick.size)
    pd.DataFrame({"cid": np.arange(pick.size), "ra": cat_ra, "dec": cat_dec, "cls": labels}).to_csv(
        tmp_path / "cat1.csv", index=False)
    pd.DataFrame({"cid": np.arange(pick.size), "ra": np.mod(cat_ra + 1e-4, 360), "dec": cat_dec,
                  "cls": rng.choice(["RRL", "EW"], pick.size)}).to_csv(tmp_path / "cat2.csv", index=False)


def _spec(parallelism: int, matching: str) -> TrainingSetBuildSpec:
    return parse_spec(TrainingSetBuildSpec, {
        "source": {"path": "src.csv", "idColumn": "oid"},
        "catalogs": [{"name": "one", "path": "cat1.csv", "idColumn": "cid", "labelColumn": "cls", "radiusArcsec": 2.0},
                     {"name": "two", "path": "cat2.csv", "idColumn": "cid", "labelColumn": "cls", "radiusArcsec": 1.5,
                      "priority": 1}],
        "combine": {"policy": "priority", "matching": matching, "keepUnlabeled": True},
        "output": {"path": "out.parquet"}, "parallelism": parallelism}, "t.yaml")


@pytest.mark.parametrize("matching", ["best-per-source", "one-to-one"])
@pytest.mark.parametrize("parallelism", [2, 3, 5])
def test_partitioned_equals_unpartitioned(tmp_path, parallelism, matching):
    _edge_heavy_scene(tmp_path)
    whole_spec = _spec(1, matching)
    inputs = load_inputs(whole_spec, tmp_path)
    whole = merge_parts([match_partition(inputs, 0, 1)], whole_spec)
    spec = _spec(parallelism, matching)
    parts = [match_partition(inputs, k, parallelism) for k in range(parallelism)]
    assert sum(len(p) for p in parts) == len(inputs.source.frame)  # every source in exactly one part
    assert all(len(p) > 0 for p in parts)
    split = merge_parts(parts, spec)
    assert whole.stats["catalogs"]["one"]["matches"] > 1000  # the scene exercises edges for real
    assert whole.frame.equals(split.frame)
    assert whole.stats == split.stats
