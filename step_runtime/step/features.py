"""Light-curve features per alert and band, computed for a whole batch at once.

The core, `band_features`, takes flat detection arrays (one entry per detection, tagged with
the index of the light curve it belongs to) and returns one row of features per light curve,
using numpy group reductions only: no Python loop over alerts. `alert_detections` flattens a
batch of ZTF alerts into those arrays; the demo model's training script feeds the same core
with windows of archival ZTF light curves, so training and serving share one definition.

A feature that is undefined (too few detections, one epoch, a band without data) is NaN,
never an exception.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

BANDS: dict[int, str] = {1: "g", 2: "r"}  # ZTF fid -> band name; fid 3 (i) is not in public alerts
PER_BAND = ("n_det", "mean_mag", "median_mag", "std_mag", "amplitude", "min_mag", "max_mag",
            "slope", "time_span", "mean_magerr", "last_mag")
COLOUR = ("g_r_mean", "g_r_last")
FEATURE_NAMES: tuple[str, ...] = tuple(
    [f"{name}_{band}" for band in BANDS.values() for name in PER_BAND] + list(COLOUR))

# ALeRCE's rule of thumb: a detection within 1.4 arcsec of a reference-image source measures that
# source's variability, so its apparent magnitude comes from adding the difference flux to the
# reference flux. Further away, magpsf is the transient's own magnitude.
NEAR_REFERENCE_ARCSEC = 1.4


def apparent_magnitude(magpsf: np.ndarray, magnr: np.ndarray, distnr: np.ndarray,
                       sign: np.ndarray) -> np.ndarray:
    """Apparent magnitude of a detection: reference flux +/- difference flux where a reference
    source is near (distnr <= 1.4 arcsec), magpsf otherwise; NaN when the sum is not positive."""
    # Old packets use -999 for "no reference source"; treat any negative value as missing.
    near = (np.isfinite(magnr) & (magnr > 0) & np.isfinite(distnr) & (distnr >= 0)
            & (distnr <= NEAR_REFERENCE_ARCSEC))
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        flux = 10.0 ** (-0.4 * magnr) + sign * 10.0 ** (-0.4 * magpsf)
        corrected = np.where(flux > 0, -2.5 * np.log10(np.where(flux > 0, flux, 1.0)), np.nan)
    return np.where(near, corrected, magpsf)


def band_features(group: np.ndarray, fid: np.ndarray, t_days: np.ndarray, mag: np.ndarray,
                  magerr: np.ndarray, n_groups: int, min_detections: int = 1) -> dict[str, np.ndarray]:
    """Features of `n_groups` light curves from flat detection arrays.

    group: light-curve index of each detection (0..n_groups-1); fid: ZTF filter id; t_days:
    time in days (any origin); mag, magerr: magnitudes. Detections with a non-finite mag are
    ignored. Returns FEATURE_NAMES -> float64 array of length n_groups.
    """
    group = np.asarray(group, dtype=np.int64)
    fid = np.asarray(fid, dtype=np.int64)
    t = np.asarray(t_days, dtype=np.float64)
    m = np.asarray(mag, dtype=np.float64)
    e = np.asarray(magerr, dtype=np.float64)
    out: dict[str, np.ndarray] = {}
    last_by_band: dict[str, np.ndarray] = {}
    mean_by_band: dict[str, np.ndarray] = {}
    for band_fid, band in BANDS.items():
        keep = (fid == band_fid) & np.isfinite(m) & np.isfinite(t)
        feats = _one_band(group[keep], t[keep], m[keep], e[keep], n_groups, min_detections)
        for name, values in feats.items():
            out[f"{name}_{band}"] = values
        last_by_band[band] = feats["last_mag"]
        mean_by_band[band] = feats["mean_mag"]
    out["g_r_mean"] = mean_by_band["g"] - mean_by_band["r"]
    out["g_r_last"] = last_by_band["g"] - last_by_band["r"]
    return {name: out[name] for name in FEATURE_NAMES}


def _one_band(g: np.ndarray, t: np.ndarray, m: np.ndarray, e: np.ndarray, n: int,
              min_det: int) -> dict[str, np.ndarray]:
    """Group statistics of one band's detections (g = light-curve index)."""
    nan = np.full(n, np.nan)
    count = np.bincount(g, minlength=n).astype(np.float64)
    res = {name: nan.copy() for name in PER_BAND}
    res["n_det"] = count
    if g.size == 0:
        return res
    # Sort by (group, time) once: min/max/last/median all come from contiguous runs.
    order = np.lexsort((t, g))
    g, t, m, e = g[order], t[order], m[order], e[order]
    starts = np.flatnonzero(np.r_[True, g[1:] != g[:-1]])
    ends = np.r_[starts[1:], g.size]
    present = g[starts]
    cnt = count[present]
    ok = cnt >= min_det

    def put(name: str, values: np.ndarray, defined: np.ndarray) -> None:
        column = nan.copy()
        column[present[defined]] = values[defined]
        res[name] = column

    with np.errstate(invalid="ignore", divide="ignore"):
        s_m = np.add.reduceat(m, starts)
        mean = s_m / cnt
        put("mean_mag", mean, ok)
        put("mean_magerr", np.add.reduceat(np.where(np.isfinite(e), e, 0.0), starts)
            / np.maximum(np.add.reduceat(np.isfinite(e).astype(np.float64), starts), 1)
            + np.where(np.add.reduceat(np.isfinite(e).astype(np.float64), starts) > 0, 0, np.nan), ok)
        dm = m - np.repeat(mean, ends - starts)
        ss = np.add.reduceat(dm * dm, starts)
        put("std_mag", np.sqrt(ss / np.maximum(cnt - 1, 1)), ok & (cnt >= 2))
        mn = np.minimum.reduceat(m, starts)
        mx = np.maximum.reduceat(m, starts)
        put("min_mag", mn, ok)
        put("max_mag", mx, ok)
        put("amplitude", (mx - mn) / 2.0, ok)
        put("last_mag", m[ends - 1], ok)
        span = t[ends - 1] - t[starts]
        put("time_span", span, ok)
        # Least-squares slope in mag/day around each curve's mean time (numerically stable).
        mean_t = np.add.reduceat(t, starts) / cnt
        dt = t - np.repeat(mean_t, ends - starts)
        stt = np.add.reduceat(dt * dt, starts)
        stm = np.add.reduceat(dt * dm, starts)
        put("slope", stm / stt, ok & (cnt >= 2) & (stt > 0))
        # Median: sort magnitudes within each group, pick the middle one(s).
        morder = np.lexsort((m, g))
        ms = m[morder]
        lo = starts + (ends - starts - 1) // 2
        hi = starts + (ends - starts) // 2
        put("median_mag", (ms[lo] + ms[hi]) / 2.0, ok)
    return res


def _num(value: Any) -> float:
    """A float from an Avro/JSON value; None and non-numbers become NaN."""
    if value is None:
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _sign(isdiffpos: Any) -> float:
    """+1 for a positive difference ('t' or '1'), -1 for a negative one."""
    return -1.0 if str(isdiffpos).lower() in ("f", "0", "false") else 1.0


def alert_detections(alerts: Sequence[dict[str, Any]]) -> tuple[np.ndarray, ...]:
    """Flatten the detections of a batch of alerts (candidate + prv_candidates with a magpsf).

    Returns (group, fid, t_days, mag, magerr) where group is the alert's index in the batch,
    t_days the Julian date and mag the apparent magnitude (see `apparent_magnitude`).
    Upper limits (no magpsf) are left out; a repeated candid within an alert counts once.
    """
    rows: list[tuple[int, float, float, float, float, float, float, float]] = []
    for i, alert in enumerate(alerts):
        seen: set[Any] = set()
        cands = [alert["candidate"], *(alert.get("prv_candidates") or [])]
        for c in cands:
            mag = c.get("magpsf")
            if mag is None or not mag > 0:  # upper limit, or a -999/NaN sentinel
                continue
            cid = c.get("candid")
            if cid is not None:
                if cid in seen:
                    continue
                seen.add(cid)
            rows.append((i, _num(c.get("fid")), _num(c.get("jd")), _num(mag), _num(c.get("sigmapsf")),
                         _num(c.get("magnr")), _num(c.get("distnr")), _sign(c.get("isdiffpos"))))
    if not rows:
        empty = np.zeros(0)
        return empty.astype(np.int64), empty, empty, empty, empty
    arr = np.array(rows, dtype=np.float64)
    mag = apparent_magnitude(arr[:, 3], arr[:, 5], arr[:, 6], arr[:, 7])
    return arr[:, 0].astype(np.int64), arr[:, 1], arr[:, 2], mag, arr[:, 4]


def alert_features(alerts: Sequence[dict[str, Any]], min_detections: int = 1) -> dict[str, np.ndarray]:
    """FEATURE_NAMES -> array over the batch, one row per alert."""
    group, fid, t, mag, err = alert_detections(alerts)
    return band_features(group, fid, t, mag, err, len(alerts), min_detections)
