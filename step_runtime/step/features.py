"""Light-curve features per alert and band, computed for a whole batch at once.

The core, `band_features`, takes flat detection arrays (one entry per detection, tagged with
the index of the light curve it belongs to) and returns one row of features per light curve,
using numpy group reductions only: no Python loop over alerts. `alert_detections` flattens a
batch of alerts (the alert model, any survey) into those arrays; the demo model's training script
feeds the same core with windows of archival ZTF light curves, so training and serving share one
definition.

Magnitudes: a survey that measures magnitudes (ZTF magpsf) gives the apparent magnitude, the
reference source's flux plus the difference flux when a reference source is near (as ALeRCE
does); a survey that measures difference-image fluxes (LSST psfFlux, nJy) gives the AB magnitude
of the flux, m = 31.4 - 2.5 log10(f / nJy). A negative difference (flux <= 0, isNegative) has no
magnitude: it is left out of the magnitude features and counted in `n_negative`.

A feature that is undefined (too few detections, one epoch, a band without data) is NaN,
never an exception.
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np

BANDS: dict[int, str] = {1: "g", 2: "r"}  # ZTF fid -> band name; fid 3 (i) is not in public alerts
PER_BAND = ("n_det", "mean_mag", "median_mag", "std_mag", "amplitude", "min_mag", "max_mag",
            "slope", "time_span", "mean_magerr", "last_mag")
COLOUR = ("g_r_mean", "g_r_last")
NEGATIVE = "n_negative"
AB_ZERO_POINT_NJY = 31.4  # m_AB = 31.4 - 2.5 log10(f / nJy)
# The alert fields the features read (the decoder builds exactly these).
READS = frozenset(f"{record}.{name}" for record in ("source", "detections")
                  for name in ("sourceId", "mjd", "band", "mag", "magErr", "flux", "fluxErr", "isNegative",
                               "refMag", "refDistArcsec"))


def feature_names(bands: Sequence[str], flux_survey: bool = False) -> tuple[str, ...]:
    """The feature columns over `bands`: per band, then g-r colours, then n_negative for a survey
    that measures fluxes."""
    names = [f"{name}_{band}" for band in bands for name in PER_BAND]
    if "g" in bands and "r" in bands:
        names += COLOUR
    if flux_survey:
        names.append(NEGATIVE)
    return tuple(names)


FEATURE_NAMES: tuple[str, ...] = feature_names(tuple(BANDS.values()))  # ZTF's, as the demo model knows them

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
                  magerr: np.ndarray, n_groups: int, min_detections: int = 1,
                  bands: Mapping[int, str] = BANDS) -> dict[str, np.ndarray]:
    """Features of `n_groups` light curves from flat detection arrays.

    group: light-curve index of each detection (0..n_groups-1); fid: band code of each detection
    (`bands` maps codes to names: ZTF fid by default); t_days: time in days (any origin); mag,
    magerr: magnitudes. Detections with a non-finite mag or another band code are ignored.
    Returns feature_names(bands) -> float64 array of length n_groups.
    """
    group = np.asarray(group, dtype=np.int64)
    fid = np.asarray(fid, dtype=np.int64)
    t = np.asarray(t_days, dtype=np.float64)
    m = np.asarray(mag, dtype=np.float64)
    e = np.asarray(magerr, dtype=np.float64)
    out: dict[str, np.ndarray] = {}
    last_by_band: dict[str, np.ndarray] = {}
    mean_by_band: dict[str, np.ndarray] = {}
    for band_fid, band in bands.items():
        keep = (fid == band_fid) & np.isfinite(m) & np.isfinite(t)
        feats = _one_band(group[keep], t[keep], m[keep], e[keep], n_groups, min_detections)
        for name, values in feats.items():
            out[f"{name}_{band}"] = values
        last_by_band[band] = feats["last_mag"]
        mean_by_band[band] = feats["mean_mag"]
    if "g" in mean_by_band and "r" in mean_by_band:
        out["g_r_mean"] = mean_by_band["g"] - mean_by_band["r"]
        out["g_r_last"] = last_by_band["g"] - last_by_band["r"]
    return {name: out[name] for name in feature_names(tuple(bands.values()))}


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


def alert_detections(alerts: Sequence[dict[str, Any]], bands: Sequence[str] = ("g", "r")
                     ) -> tuple[np.ndarray, ...]:
    """Flatten the detections of a batch of alerts (source + previous detections with a measurement).

    Returns (group, band, t_days, mag, magerr, negative) where group is the alert's index in the
    batch, band the index of the detection's band in `bands` (-1 for another band), t_days the MJD
    and mag the magnitude (see the module docstring; NaN for a negative difference, which
    `negative` flags). Upper limits (no measurement) are left out; a repeated source id within an
    alert counts once.
    """
    index = {b: i for i, b in enumerate(bands)}
    rows: list[tuple[Any, ...]] = []
    for i, alert in enumerate(alerts):
        seen: set[Any] = set()
        for s in (alert["source"], *(alert.get("detections") or ())):
            if s is None:
                continue
            mag, flux = s.get("mag"), s.get("flux")
            if flux is None and (mag is None or not mag > 0):  # an upper limit, or a -999/NaN sentinel
                continue
            sid = s.get("sourceId")
            if sid is not None:
                if sid in seen:
                    continue
                seen.add(sid)
            rows.append((i, index.get(s.get("band"), -1), s.get("mjd"), mag, s.get("magErr"), flux,
                         s.get("fluxErr"), s.get("refMag"), s.get("refDistArcsec"), s.get("isNegative")))
    if not rows:
        empty = np.zeros(0)
        return empty.astype(np.int64), empty.astype(np.int64), empty, empty, empty, empty.astype(bool)
    try:  # numpy turns None into NaN and booleans into 0/1 on its own, in C
        arr = np.array(rows, dtype=np.float64)
    except (TypeError, ValueError):  # a value that is not a number: NaN, one at a time
        arr = np.array([tuple(_num(v) for v in row) for row in rows], dtype=np.float64)
    mag, flux, flagged = arr[:, 3], arr[:, 5], arr[:, 9] > 0
    measured_mag = mag > 0  # a measured magnitude (ZTF-style); NaN when the survey measures flux
    apparent = apparent_magnitude(mag, arr[:, 7], arr[:, 8], np.where(flagged, -1.0, 1.0))
    # LSST-style: a difference flux; zero or negative has no magnitude
    negative = ~measured_mag & ((flux <= 0) | flagged)
    positive = ~measured_mag & (flux > 0) & ~flagged
    with np.errstate(divide="ignore", invalid="ignore"):
        flux_mag = AB_ZERO_POINT_NJY - 2.5 * np.log10(np.where(positive, flux, 1.0))
        flux_err = 2.5 / np.log(10.0) * np.abs(arr[:, 6] / np.where(positive, flux, 1.0))
    out_mag = np.where(measured_mag, apparent, np.where(positive, flux_mag, np.nan))
    out_err = np.where(measured_mag, arr[:, 4], np.where(positive, flux_err, np.nan))
    keep = measured_mag | positive | negative
    return (arr[keep, 0].astype(np.int64), arr[keep, 1].astype(np.int64), arr[keep, 2], out_mag[keep],
            out_err[keep], negative[keep])


def alert_features(alerts: Sequence[dict[str, Any]], min_detections: int = 1, bands: Sequence[str] = ("g", "r"),
                   flux_survey: bool = False) -> dict[str, np.ndarray]:
    """feature_names(bands, flux_survey) -> array over the batch, one row per alert."""
    group, band, t, mag, err, negative = alert_detections(alerts, bands)
    feats = band_features(group, band, t, mag, err, len(alerts), min_detections, dict(enumerate(bands)))
    if flux_survey:
        feats[NEGATIVE] = np.bincount(group[negative], minlength=len(alerts)).astype(np.float64)
    return feats
