"""Light-curve features: exact values on known curves, NaN where undefined, batch == one by one."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from step_runtime.step.decode import decode_ztf_avro
from step_runtime.step.features import FEATURE_NAMES, alert_features, apparent_magnitude, band_features

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
    alerts = [decode_ztf_avro(p.read_bytes()) for p in sorted(ALERTS.glob("[0-9]*.avro"))]
    batch = alert_features(alerts)
    for i, alert in enumerate(alerts):
        single = alert_features([alert])
        for name in FEATURE_NAMES:
            a, b = batch[name][i], single[name][0]
            assert (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b), name
    # ZTF17aaajnnn has 29 g and 34 r detections in its 30-day history
    idx = [a.get("objectId") for a in alerts].index("ZTF17aaajnnn")
    assert batch["n_det_g"][idx] == 29 and batch["n_det_r"][idx] == 34


def test_empty_batch() -> None:
    f = alert_features([])
    assert all(len(v) == 0 for v in f.values())
