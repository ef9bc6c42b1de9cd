"""Sky partitions: declination bands of equal area, each widened by a margin for catalogs.

Every source belongs to exactly one band (by its declination); a catalog row belongs to every
band it lies within `margin` of. Since angular separation is never less than the difference in
declination, a band plus a margin of the match radius holds every catalog row that can match a
source in the band: no pair is lost at an edge and, as each source is in one band, none doubled.
"""
from __future__ import annotations

import numpy as np


def band_edges_deg(n_partitions: int) -> np.ndarray:
    """n+1 declination edges (degrees) splitting the sphere into n bands of equal area."""
    if n_partitions < 1:
        raise ValueError(f"n_partitions must be >= 1, got {n_partitions}")
    # Rounded so that round numbers (30 deg for n=4) sit exactly on an edge, not an ulp beside it.
    edges = np.round(np.degrees(np.arcsin(np.linspace(-1.0, 1.0, n_partitions + 1))), 9)
    edges[0], edges[-1] = -90.0, 90.0
    return edges


def source_partition(dec_deg: np.ndarray, n_partitions: int) -> np.ndarray:
    """Band number (0..n-1) of each declination; +90 belongs to the last band."""
    edges = band_edges_deg(n_partitions)
    band = np.searchsorted(edges, dec_deg, side="right") - 1
    return np.clip(band, 0, n_partitions - 1)


def catalog_rows_for(dec_deg: np.ndarray, k: int, n_partitions: int, margin_deg: float) -> np.ndarray:
    """Mask of catalog rows needed by band k: its declination range widened by margin_deg."""
    edges = band_edges_deg(n_partitions)
    lo, hi = edges[k] - margin_deg, edges[k + 1] + margin_deg
    return (dec_deg >= lo) & (dec_deg <= hi)


def margin_for_radius_deg(radius_arcsec: float) -> float:
    """Band margin for a match radius: the radius plus a little, so rounding cannot lose a pair."""
    return radius_arcsec / 3600.0 * (1.0 + 1e-6) + 1e-9
