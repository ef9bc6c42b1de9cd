"""Light-curve features: exact values on known curves, NaN where undefined, batch == one by one."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from step_runtime.step.decode import alerts_of
from step_runtime.step.features import FEATURE_NAMES, alert_features, apparent_magnitude, band_features, feature_names

ALERTS = Path(__file__).resolve().parents[2] / "examples" / "data" / "alerts"


def test_known_linear_curve_in_g() -> None:
    t = np.array([0.0, 1.0, 2.0, 3.0])
    mag = 18.0 + 0.5 * t  # fading half a magnitude per day
    f = band_features(np.zeros(4, int), np.ones(4, int), t, mag, np.full(4, 0.1), 1)
    assert f["n_det_g"][0] == 4
    assert f["mean_mag_g"][0] == pytest.approx(18.75)
    assert f["median_mag_g"][0] == pytest.approx(18.75)
    assert f["std_mag_g"][0] == pytest.approx(np.std(mag, ddof=1))
    assert f["slope_g"][0] == pytest.approx(0.5)
    assert f["amplitude_g"][0] == pytest.approx(0.75)
    assert f["time_span_g"][0] == pytest.approx(3.0)
    assert f["last_mag_g"][0] == pytest.approx(19.5)
    assert f["mean_magerr_g"][0] == pytest.approx(0.1)
    # no r band: every r feature undefined, count zero, colours undefined
    assert f["n_det_r"][0] == 0
    assert all(math.isnan(f[n][0]) for n in FEATURE_NAMES if n.endswith("_r") and n != "n_det_r")
    assert math.isnan(f["g_r_mean"][0]) and math.isnan(f["g_r_last"][0])


def test_colours_and_unsorted_input() -> None:
    group = np.array([0, 0, 0, 0])
    fid = np.array([2, 1, 2, 1])
    t = np.array([3.0, 0.0, 1.0, 2.0])
    mag = np.array([17.0, 18.0, 16.0, 18.4])
    f = band_features(group, fid, t, mag, np.full(4, 0.1), 1)
    assert f["g_r_last"][0] == pytest.approx(18.4 - 17.0)
    assert f["g_r_mean"][0] == pytest.approx(18.2 - 16.5)
    assert f["median_mag_r"][0] == pytest.approx(16.5)


def test_single_detection_and_min_detections() -> None:
    f = band_features(np.array([0]), np.array([1]), np.array([5.0]), np.array([18.0]), np.array([0.1]), 2)
    assert f["mean_mag_g"][0] == 18.0
    assert math.isnan(f["std_mag_g"][0]) and math.isnan(f["slope_g"][0])
    assert f["n_det_g"][1] == 0 and math.isnan(f["mean_mag_g"][1])  # a curve with no data at all
    g = band_features(np.array([0]), np.array([1]), np.array([5.0]), np.array([18.0]), np.array([0.1]), 1,
                      min_detections=2)
    assert math.isnan(g["mean_mag_g"][0]) and g["n_det_g"][0] == 1


def test_nan_magnitudes_are_ignored_not_fatal() -> None:
    f = band_features(np.array([0, 0]), np.array([1, 1]), np.array([0.0, 1.0]), np.array([np.nan, 18.0]),
                      np.array([0.1, np.nan]), 1)
    assert f["n_det_g"][0] == 1 and f["mean_mag_g"][0] == 18.0


def test_apparent_magnitude_uses_reference_flux_only_when_near() -> None:
    magpsf = np.array([18.0, 18.0, 18.0])
    magnr = np.array([17.0, 17.0, -999.0])
    distnr = np.array([0.5, 3.0, -999.0])
    sign = np.array([1.0, 1.0, 1.0])
    out = apparent_magnitude(magpsf, magnr, distnr, sign)
    assert out[0] == pytest.approx(-2.5 * np.log10(10 ** (-0.4 * 17) + 10 ** (-0.4 * 18)))
    assert out[1] == 18.0 and out[2] == 18.0
    # a negative difference larger than the reference flux has no magnitude
    assert math.isnan(apparent_magnitude(np.array([17.0]), np.array([18.0]), np.array([0.1]), np.array([-1.0]))[0])


def test_batch_equals_one_alert_at_a_time_on_real_packets() -> None:
    alerts = [alerts_of(p.read_bytes())[0] for p in sorted(ALERTS.glob("[0-9]*.avro"))]
    batch = alert_features(alerts)
    for i, alert in enumerate(alerts):
        single = alert_features([alert])
        for name in FEATURE_NAMES:
            a, b = batch[name][i], single[name][0]
            assert (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b), name
    # ZTF17aaajnnn has 29 g and 34 r detections in its 30-day history
    idx = [a["oid"] for a in alerts].index("ZTF17aaajnnn")
    assert batch["n_det_g"][idx] == 29 and batch["n_det_r"][idx] == 34


def test_empty_batch() -> None:
    f = alert_features([])
    assert all(len(v) == 0 for v in f.values())


def _lsst(fluxes: list[tuple[str, float, float]], negative: list[bool] | None = None) -> dict:
    """An LSST alert whose detections (band, mjd, flux in nJy) are given, the last one triggering."""
    srcs = [{"sourceId": i, "mjd": t, "band": b, "mag": None, "magErr": None, "flux": f, "fluxErr": 0.1 * abs(f) or 1.0,
             "isNegative": (negative or [False] * len(fluxes))[i], "refMag": None, "refDistArcsec": None}
            for i, (b, t, f) in enumerate(fluxes)]
    return {"survey": "lsst", "oid": "1", "source": srcs[-1], "detections": srcs[:-1]}


def test_lsst_fluxes_become_ab_magnitudes_over_ugrizy() -> None:
    names = feature_names("ugrizy", flux_survey=True)
    assert names[:2] == ("n_det_u", "mean_mag_u") and "g_r_mean" in names and names[-1] == "n_negative"
    # 3631 Jy = 3.631e12 nJy is AB magnitude 0; 1e4 nJy is 21.4
    alert = _lsst([("g", 60000.0, 1e4), ("g", 60001.0, 3.631e12), ("y", 60002.0, 1e4)])
    f = alert_features([alert], bands="ugrizy", flux_survey=True)
    assert set(f) == set(names)
    assert f["n_det_g"][0] == 2 and f["n_det_y"][0] == 1 and f["n_det_u"][0] == 0
    assert f["min_mag_g"][0] == pytest.approx(31.4 - 2.5 * math.log10(3.631e12), abs=1e-9)
    assert f["max_mag_g"][0] == pytest.approx(21.4) and f["last_mag_y"][0] == pytest.approx(21.4)
    # magErr = 2.5 / ln 10 * fluxErr / flux = 1.0857 * 0.1
    assert f["mean_magerr_y"][0] == pytest.approx(2.5 / math.log(10) * 0.1)
    assert f["n_negative"][0] == 0 and math.isnan(f["mean_mag_u"][0])


def test_negative_differences_are_left_out_of_magnitudes_and_counted() -> None:
    alert = _lsst([("r", 60000.0, -500.0), ("r", 60001.0, 0.0), ("r", 60002.0, 800.0), ("r", 60003.0, 900.0)],
                  negative=[True, False, True, False])
    f = alert_features([alert], bands="ugrizy", flux_survey=True)
    assert f["n_det_r"][0] == 1  # 800 nJy is flagged isNegative: not trusted either
    assert f["n_negative"][0] == 3
    assert f["last_mag_r"][0] == pytest.approx(31.4 - 2.5 * math.log10(900.0))


def test_ztf_features_are_unchanged_by_the_alert_model() -> None:
    # the features of ZTF alerts keep their names, and no n_negative column appears
    alerts = [alerts_of(p.read_bytes())[0] for p in sorted(ALERTS.glob("[0-9]*.avro"))]
    assert tuple(alert_features(alerts)) == FEATURE_NAMES
