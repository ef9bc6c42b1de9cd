"""Few queries, big catalog: the catalog streams past the queries through a coarse cell grid.

The grid may only ever drop catalog rows that no query can match: checked against astropy at
radii whose cells do not divide the sky evenly, across RA 0/360 and around both poles.
"""
from __future__ import annotations

import astropy.units as u
import numpy as np
import pytest
from astropy.coordinates import SkyCoord

import step_runtime.crossmatch as crossmatch
from step_runtime.crossmatch import SkyIndex


def _astropy_nearest(src_ra, src_dec, cat_ra, cat_dec, radius_arcsec):
    idx, sep2d, _ = SkyCoord(src_ra * u.deg, src_dec * u.deg).match_to_catalog_sky(
        SkyCoord(cat_ra * u.deg, cat_dec * u.deg))
    within = sep2d.arcsec <= radius_arcsec
    return np.where(within, idx, -1)


def _scene(rng: np.random.Generator, radius_arcsec: float, n_cat: int = 60_000, n_src: int = 1_500):
    """Queries on the RA seam, near both poles, at the poles and at random; catalog rows around
    each query up to 1.3 radii away (so some fall just outside), plus a random sky."""
    r = radius_arcsec / 3600.0
    src_ra = np.concatenate([rng.uniform(-3 * r, 3 * r, 400) % 360.0, rng.uniform(0, 360, 400),
                             rng.uniform(0, 360, 300), [0.0, 180.0, 45.0]])
    src_dec = np.concatenate([rng.uniform(-60, 60, 400), 90.0 - rng.uniform(0, 3 * r, 200),
                              -90.0 + rng.uniform(0, 3 * r, 200),
                              np.degrees(np.arcsin(rng.uniform(-1, 1, 300))), [90.0, -90.0, 0.0]])
    n_src = src_ra.size
    near = rng.integers(0, n_src, n_cat // 2)
    # Offsets in a local tangent frame, so that points near a pole stay near it.
    dist = np.radians(rng.uniform(0, 1.3 * r, near.size))
    bearing = rng.uniform(0, 2 * np.pi, near.size)
    d0, a0 = np.radians(src_dec[near]), np.radians(src_ra[near])
    d1 = np.arcsin(np.clip(np.sin(d0) * np.cos(dist) + np.cos(d0) * np.sin(dist) * np.cos(bearing), -1, 1))
    a1 = a0 + np.arctan2(np.sin(bearing) * np.sin(dist) * np.cos(d0), np.cos(dist) - np.sin(d0) * np.sin(d1))
    cat_ra = np.concatenate([np.mod(np.degrees(a1), 360.0), rng.uniform(0, 360, n_cat - near.size)])
    cat_dec = np.concatenate([np.degrees(d1), np.degrees(np.arcsin(rng.uniform(-1, 1, n_cat - near.size)))])
    return src_ra, src_dec, cat_ra, cat_dec


@pytest.mark.parametrize("radius_arcsec", [1.5, 2.0, 97.0, 1000.0, 3600.0])
def test_scanning_matches_astropy_at_any_radius(radius_arcsec, monkeypatch):
    monkeypatch.setattr(crossmatch, "_SCAN_CHUNK", 7919)  # many chunks, of an odd size
    rng = np.random.default_rng(int(radius_arcsec * 10))
    src_ra, src_dec, cat_ra, cat_dec = _scene(rng, radius_arcsec)
    index = SkyIndex(cat_ra, cat_dec)
    got = index.nearest(src_ra, src_dec, radius_arcsec)
    assert index._scans == 1 and not index._zones  # answered by scanning
    want = _astropy_nearest(src_ra, src_dec, cat_ra, cat_dec, radius_arcsec)
    assert (want >= 0).sum() > 1000
    np.testing.assert_array_equal(got.index, want)
    # ... and the same counts as the catalog's own zones give.
    again = SkyIndex(cat_ra, cat_dec)
    again.prepare(radius_arcsec)
    zoned = again.nearest(src_ra, src_dec, radius_arcsec)
    np.testing.assert_array_equal(got.n_within, zoned.n_within)
    np.testing.assert_array_equal(got.second_separation_arcsec, zoned.second_separation_arcsec)


def test_the_cover_holds_every_point_within_the_radius():
    rng = np.random.default_rng(5)
    for radius_arcsec in (0.3, 1.5, 180.0, 777.0):
        src_ra, src_dec, cat_ra, cat_dec = _scene(rng, radius_arcsec, n_cat=40_000)
        cover = crossmatch._Cover.build(np.mod(src_ra, 360.0), src_dec, radius_arcsec / 3600.0)
        held = cover.contains(np.mod(cat_ra, 360.0), cat_dec)
        want = _astropy_nearest(cat_ra, cat_dec, src_ra, src_dec, radius_arcsec) >= 0
        assert want.sum() > 1000
        assert held[want].all(), radius_arcsec  # never drops a point some query reaches
        assert held.mean() < 0.9  # and drops most of the rest


def test_a_catalog_far_from_every_query_gives_no_pairs(monkeypatch):
    monkeypatch.setattr(crossmatch, "_SCAN_CHUNK", 1000)
    index = SkyIndex(np.full(20_000, 200.0), np.linspace(-10, 10, 20_000))
    m = index.nearest(np.array([10.0, 20.0]), np.array([0.0, 1.0]), 1.5)
    assert m.index.tolist() == [-1, -1] and index._scans == 1


@pytest.mark.parametrize("threads", [1, 3])
def test_chunks_and_threads_give_the_answers_of_one_search(threads, monkeypatch):
    rng = np.random.default_rng(7)
    src_ra, src_dec, cat_ra, cat_dec = _scene(rng, 2.0, n_cat=20_000)
    whole = SkyIndex(cat_ra, cat_dec)
    whole.prepare(2.0)
    want = whole.nearest(src_ra, src_dec, 2.0)
    monkeypatch.setattr(crossmatch, "_QUERY_CHUNK", 97)  # many chunks, of an odd size
    monkeypatch.setattr(crossmatch, "_THREAD_MIN_QUERIES", 50)
    monkeypatch.setattr(crossmatch, "_threads", lambda: threads)
    got = whole.nearest(src_ra, src_dec, 2.0)
    assert (want.index >= 0).sum() > 500
    for field in ("index", "separation_arcsec", "n_within", "second_separation_arcsec"):
        np.testing.assert_array_equal(getattr(got, field), getattr(want, field))
