"""The matcher agrees with astropy's match_to_catalog_sky, including RA 0/360 and both poles."""
from __future__ import annotations

import astropy.units as u
import numpy as np
import pytest
from astropy.coordinates import SkyCoord

from step_runtime.crossmatch import SkyIndex, angular_separation_deg, one_to_one

RADIUS_ARCSEC = 2.0


def _random_sky(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    ra = rng.uniform(0.0, 360.0, n)
    dec = np.degrees(np.arcsin(rng.uniform(-1.0, 1.0, n)))
    return ra, dec


def _near(rng: np.random.Generator, ra: np.ndarray, dec: np.ndarray, sigma_arcsec: float):
    """Points scattered around (ra, dec) by a few arcsec, in a way valid at the poles too."""
    n = ra.size
    offset = np.radians(np.abs(rng.normal(0.0, sigma_arcsec / 3600.0, n)))
    bearing = rng.uniform(0.0, 2 * np.pi, n)
    d0, a0 = np.radians(dec), np.radians(ra)
    d1 = np.arcsin(np.sin(d0) * np.cos(offset) + np.cos(d0) * np.sin(offset) * np.cos(bearing))
    a1 = a0 + np.arctan2(np.sin(bearing) * np.sin(offset) * np.cos(d0), np.cos(offset) - np.sin(d0) * np.sin(d1))
    return np.mod(np.degrees(a1), 360.0), np.degrees(d1)


def _hard_catalog(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Random sky plus dense clumps straddling RA 0/360 and around both poles."""
    ra_all, dec_all = [], []
    ra, dec = _random_sky(rng, 20_000)
    ra_all.append(ra)
    dec_all.append(dec)
    # Straddling RA 0/360 on the equator and at mid declinations.
    n = 3000
    ra_all.append(np.mod(rng.uniform(-0.01, 0.01, n), 360.0))
    dec_all.append(rng.uniform(-60.0, 60.0, n))
    # Within 30 arcsec of each pole, every RA, and a few exactly at the pole.
    for sign in (1.0, -1.0):
        ra_all.append(rng.uniform(0.0, 360.0, n))
        dec_all.append(sign * (90.0 - rng.uniform(0.0, 30.0 / 3600.0, n)))
        ra_all.append(np.array([0.0, 123.0]))
        dec_all.append(np.array([sign * 90.0, sign * 90.0]))
    return np.concatenate(ra_all), np.concatenate(dec_all)


def _astropy_nearest(src_ra, src_dec, cat_ra, cat_dec, radius_arcsec):
    src = SkyCoord(src_ra * u.deg, src_dec * u.deg)
    cat = SkyCoord(cat_ra * u.deg, cat_dec * u.deg)
    idx, sep2d, _ = src.match_to_catalog_sky(cat)
    sep = sep2d.arcsec
    within = sep <= radius_arcsec
    return np.where(within, idx, -1), np.where(within, sep, np.nan)


@pytest.fixture(scope="module")
def scene():
    rng = np.random.default_rng(20240601)
    cat_ra, cat_dec = _hard_catalog(rng)
    # Half the sources sit near a catalog object, half are random (mostly unmatched).
    pick = rng.choice(cat_ra.size, 15_000, replace=False)
    near_ra, near_dec = _near(rng, cat_ra[pick], cat_dec[pick], sigma_arcsec=1.2)
    rnd_ra, rnd_dec = _random_sky(rng, 15_000)
    src_ra = np.concatenate([near_ra, rnd_ra])
    src_dec = np.concatenate([near_dec, rnd_dec])
    return src_ra, src_dec, cat_ra, cat_dec


def test_same_matches_and_separations_as_astropy(scene):
    src_ra, src_dec, cat_ra, cat_dec = scene
    got = SkyIndex(cat_ra, cat_dec).nearest(src_ra, src_dec, RADIUS_ARCSEC)
    want_idx, want_sep = _astropy_nearest(src_ra, src_dec, cat_ra, cat_dec, RADIUS_ARCSEC)
    assert got.matched.sum() > 10_000  # the scene really exercises matching
    np.testing.assert_array_equal(got.index, want_idx)
    np.testing.assert_allclose(got.separation_arcsec, want_sep, rtol=0, atol=1e-6, equal_nan=True)


@pytest.mark.parametrize("region", ["ra_wrap", "north_pole", "south_pole"])
def test_hard_regions_match_astropy(scene, region):
    src_ra, src_dec, cat_ra, cat_dec = scene
    if region == "ra_wrap":
        sel = (src_ra < 0.02) | (src_ra > 359.98)
    elif region == "north_pole":
        sel = src_dec > 89.99
    else:
        sel = src_dec < -89.99
    got = SkyIndex(cat_ra, cat_dec).nearest(src_ra[sel], src_dec[sel], RADIUS_ARCSEC)
    want_idx, want_sep = _astropy_nearest(src_ra[sel], src_dec[sel], cat_ra, cat_dec, RADIUS_ARCSEC)
    assert sel.sum() > 500 and got.matched.sum() > 100
    np.testing.assert_array_equal(got.index, want_idx)
    np.testing.assert_allclose(got.separation_arcsec, want_sep, rtol=0, atol=1e-6, equal_nan=True)


def test_pairs_across_ra_zero():
    idx = SkyIndex(np.array([359.9997, 10.0]), np.array([0.0, 0.0]))
    m = idx.nearest(np.array([0.0002, 359.9999]), np.array([0.0, 0.0]), radius_arcsec=2.0)
    assert m.index.tolist() == [0, 0]
    np.testing.assert_allclose(m.separation_arcsec, [0.0005 * 3600, 0.0002 * 3600], atol=1e-6)


def test_poles_match_across_every_ra():
    # Two points 1 arcsec from the north pole on opposite meridians are 2 arcsec apart.
    idx = SkyIndex(np.array([0.0]), np.array([90.0 - 1 / 3600]))
    m = idx.nearest(np.array([180.0, 90.0, 0.0]), np.array([90.0 - 1 / 3600, 90.0, -90.0]), radius_arcsec=2.5)
    assert m.index.tolist() == [0, 0, -1]
    np.testing.assert_allclose(m.separation_arcsec[:2], [2.0, 1.0], atol=1e-6)


def test_counts_and_second_nearest_within_radius():
    # Five catalog objects 0.5", 1", 1.5", 2" and 3" east of the query on the equator.
    offsets = np.array([0.5, 1.0, 1.5, 2.0, 3.0]) / 3600
    idx = SkyIndex(100.0 + offsets, np.zeros(5))
    m = idx.nearest(np.array([100.0, 200.0]), np.array([0.0, 0.0]), radius_arcsec=2.2)
    assert m.index.tolist() == [0, -1]
    assert m.n_within.tolist() == [4, 0]
    np.testing.assert_allclose(m.separation_arcsec[0], 0.5, atol=1e-6)
    np.testing.assert_allclose(m.second_separation_arcsec[0], 1.0, atol=1e-6)
    assert np.isnan(m.separation_arcsec[1]) and np.isnan(m.second_separation_arcsec[1])


def test_many_neighbours_are_all_counted():
    # 100 catalog rows piled within 1" of the query: the count must not stop at a fixed k.
    rng = np.random.default_rng(3)
    idx = SkyIndex(50.0 + rng.uniform(-0.5, 0.5, 100) / 3600, 20.0 + rng.uniform(-0.5, 0.5, 100) / 3600)
    m = idx.nearest(np.array([50.0]), np.array([20.0]), radius_arcsec=1.0)
    assert m.n_within[0] == 100


def test_radius_boundary_is_inclusive_and_exact():
    sep_deg = angular_separation_deg(np.array([10.0]), np.array([45.0]), np.array([10.0]), np.array([45.0 + 2 / 3600]))
    assert abs(sep_deg[0] * 3600 - 2.0) < 1e-9
    idx = SkyIndex(np.array([10.0]), np.array([45.0 + 2 / 3600]))
    assert idx.nearest(np.array([10.0]), np.array([45.0]), 2.0 + 1e-7).index[0] == 0
    assert idx.nearest(np.array([10.0]), np.array([45.0]), 2.0 - 1e-7).index[0] == -1


def test_empty_catalog_and_empty_query():
    empty = SkyIndex(np.array([]), np.array([]))
    m = empty.nearest(np.array([1.0]), np.array([1.0]), 1.0)
    assert m.index.tolist() == [-1] and m.n_within.tolist() == [0]
    m = SkyIndex(np.array([1.0]), np.array([1.0])).nearest(np.array([]), np.array([]), 1.0)
    assert len(m) == 0


@pytest.mark.parametrize("ra,dec,message", [
    ([1.0, np.nan], [0.0, 0.0], "row 1"),
    ([1.0, 2.0], [0.0, 91.0], "dec=91.0"),
])
def test_bad_coordinates_are_named(ra, dec, message):
    with pytest.raises(ValueError, match=message):
        SkyIndex(np.array(ra), np.array(dec))


def test_bad_radius():
    with pytest.raises(ValueError, match="radius_arcsec must be"):
        SkyIndex(np.array([1.0]), np.array([1.0])).nearest(np.array([1.0]), np.array([1.0]), 0.0)


def test_one_to_one_keeps_the_nearest_claimant():
    index = np.array([3, 3, -1, 5, 3, 5])
    sep = np.array([1.0, 0.5, np.nan, 0.2, 0.5, 0.2])
    # Row 1 wins catalog 3 (0.5 ties with row 4; the earlier row wins); row 3 wins catalog 5 by tie order.
    assert one_to_one(index, sep).tolist() == [-1, 3, -1, 5, -1, -1]


def test_scanning_and_indexed_paths_agree(scene, monkeypatch):
    # A small query against a big catalog is first answered by scanning the catalog (in chunks)
    # past zones built on the query; the next call builds the catalog's own zones.
    import step_runtime.crossmatch as crossmatch

    monkeypatch.setattr(crossmatch, "_SCAN_CHUNK", 4096)
    src_ra, src_dec, cat_ra, cat_dec = scene
    small = slice(0, 2000)
    index = SkyIndex(cat_ra, cat_dec)
    answers = [index.nearest(src_ra[small], src_dec[small], RADIUS_ARCSEC) for _ in range(3)]
    assert index._scans == 1 and index._zones  # one scan, then the catalog index
    assert answers[0].matched.sum() > 500
    for other in answers[1:]:
        np.testing.assert_array_equal(answers[0].index, other.index)
        np.testing.assert_array_equal(answers[0].n_within, other.n_within)
        np.testing.assert_array_equal(answers[0].separation_arcsec, other.separation_arcsec)
        np.testing.assert_array_equal(answers[0].second_separation_arcsec, other.second_separation_arcsec)


def test_prepared_index_never_scans(scene, monkeypatch):
    # A long-lived index (the step's crossmatch processor) builds its zones at start: small
    # batches are then lookups in them, never an O(catalog) scan, and agree with a fresh index.
    import step_runtime.crossmatch as crossmatch

    monkeypatch.setattr(crossmatch, "_SCAN_CHUNK", 4096)
    src_ra, src_dec, cat_ra, cat_dec = scene
    prepared = SkyIndex(cat_ra, cat_dec)
    prepared.prepare(RADIUS_ARCSEC)
    assert prepared._zones
    for start in range(0, 2000, 500):
        batch = slice(start, start + 500)
        got = prepared.nearest(src_ra[batch], src_dec[batch], RADIUS_ARCSEC)
        want = SkyIndex(cat_ra, cat_dec).nearest(src_ra[batch], src_dec[batch], RADIUS_ARCSEC)
        np.testing.assert_array_equal(got.index, want.index)
        np.testing.assert_array_equal(got.n_within, want.n_within)
        np.testing.assert_array_equal(got.separation_arcsec, want.separation_arcsec)
    assert prepared._scans == 0


def test_prepare_checks_the_radius():
    with pytest.raises(ValueError, match="radius_arcsec"):
        SkyIndex(np.array([1.0]), np.array([1.0])).prepare(-1.0)
    SkyIndex(np.array([]), np.array([])).prepare(1.0)  # an empty catalog has nothing to build
