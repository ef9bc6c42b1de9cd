"""The step's crossmatch processor keeps one prepared SkyIndex: batches are lookups, not scans."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from step_runtime.crossmatch import angular_separation_deg
from step_runtime.spec.pipelinestep import CrossmatchProcessor
from step_runtime.step.alert_model import ZTF
from step_runtime.step.processors import CrossmatchStep


def _alert(i: int, ra: float, dec: float) -> dict:
    return {"oid": f"ZTF{i:09d}", "source": {"sourceId": i, "ra": ra, "dec": dec, "mjd": 60000.0}}


def test_processor_prepares_its_index_and_matches(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    n = 5000  # > 8x a batch: an unprepared index would scan the catalog on its first call
    ra = rng.uniform(0.0, 360.0, n)
    dec = np.degrees(np.arcsin(rng.uniform(-1.0, 1.0, n)))
    lines = ["id,ra,dec,name"] + [f"{i},{float(ra[i])!r},{float(dec[i])!r},obj{i}" for i in range(n)]
    (tmp_path / "cat.csv").write_text("\n".join(lines) + "\n")
    step = CrossmatchStep(CrossmatchProcessor(catalog="cat.csv", id_column="id", columns=["name"],
                                              radius_arcsec=2.0), tmp_path, ZTF)
    assert step.index._zones  # built at start, not in the first batch

    # Alerts 1" north of catalog rows 0..99, then 100 alerts far (> 1 degree) from the catalog rows.
    near = [_alert(i, float(ra[i]), float(dec[i]) + 1.0 / 3600) for i in range(100)]
    out, failures = step.process(near)
    assert failures == []
    assert [o["xm_id"] for o in out] == list(range(100))
    assert [o["xm_name"] for o in out] == [f"obj{i}" for i in range(100)]
    np.testing.assert_allclose([o["xm_separation_arcsec"] for o in out], 1.0, rtol=1e-6)

    # Alerts 10" south of rows 100..199: the brute-force answer decides match or none.
    away = [_alert(i, float(ra[i]), float(dec[i]) - 10.0 / 3600) for i in range(100, 200)]
    out, _ = step.process(away)
    for o in out:
        sep_arcsec = angular_separation_deg(np.full(n, o["ra"]), np.full(n, o["dec"]), ra, dec) * 3600
        best = int(np.argmin(sep_arcsec))
        assert o["xm_id"] == (best if sep_arcsec[best] <= 2.0 else None)
        assert o["xm_n_within"] == int((sep_arcsec <= 2.0).sum())
    assert any(o["xm_id"] is None for o in out)
    assert step.index._scans == 0  # no batch paid an O(catalog) scan
