"""Vectorised positional crossmatch on the sphere.

A catalog is indexed once (`SkyIndex`): declination zones sorted by RA, searched with binary
search, which for arcsecond radii beats a KD-tree several times over (no tree walk, no heap; a
sort to build). Search boxes are widened exactly for declination (asin(sin r / cos dec)), cover
every RA when the circle holds a pole, and split across RA 0/360; candidates are then decided by
their exact separation (the Vincenty formula astropy uses, accurate at every angle, unlike
arccos of a dot product near zero), so separations agree with astropy far below a
micro-arcsecond. The index holds only the positions and the sort (32 bytes a row).

Units are in the names: `_deg`, `_rad`, `_arcsec`. No per-row Python runs in `nearest`.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

ARCSEC_PER_RAD = 180.0 * 3600.0 / np.pi


@dataclass(frozen=True)
class NearestMatch:
    """Per query position: its nearest catalog row within the radius.

    index: int64 catalog row, -1 when nothing lies within the radius.
    separation_arcsec: float64 separation to that row, NaN when unmatched.
    n_within: int64 number of catalog rows within the radius (0 when unmatched).
    second_separation_arcsec: float64 separation of the second-nearest row within the radius,
        NaN when there is none (an ambiguity signal: two catalog objects could be the match).
    """

    index: np.ndarray
    separation_arcsec: np.ndarray
    n_within: np.ndarray
    second_separation_arcsec: np.ndarray

    def __len__(self) -> int:
        return len(self.index)

    @property
    def matched(self) -> np.ndarray:
        """Boolean mask of query positions that have a match."""
        return self.index >= 0


def check_coordinates(ra_deg: np.ndarray, dec_deg: np.ndarray, what: str = "positions") -> None:
    """Raise ValueError naming the first bad row when a coordinate is not finite or |dec| > 90."""
    # The common case in two passes (a NaN dec fails the comparison); the rows only when needed.
    if np.isfinite(ra_deg).all() and (np.abs(dec_deg) <= 90.0).all():
        return
    bad = ~np.isfinite(ra_deg) | ~np.isfinite(dec_deg) | (np.abs(dec_deg) > 90.0)
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"{what}: {int(bad.sum())} bad coordinate(s), first at row {first} "
            f"(ra={float(ra_deg[first])!r}, dec={float(dec_deg[first])!r}); expected finite ra and -90 <= dec <= 90 degrees"
        )


def vincenty_rad(ra1: np.ndarray, dec1: np.ndarray, ra2: np.ndarray, dec2: np.ndarray) -> np.ndarray:
    """Angular separation (radians) of positions in radians: the Vincenty formula, as astropy uses.

    atan2 of two well-conditioned terms: full precision from zero to 180 degrees.
    """
    sin_dra, cos_dra = np.sin(ra2 - ra1), np.cos(ra2 - ra1)
    sin1, cos1 = np.sin(dec1), np.cos(dec1)
    sin2, cos2 = np.sin(dec2), np.cos(dec2)
    num1 = cos2 * sin_dra
    num2 = cos1 * sin2 - sin1 * cos2 * cos_dra
    den = sin1 * sin2 + cos1 * cos2 * cos_dra
    return np.arctan2(np.hypot(num1, num2), den)


def angular_separation_deg(ra1_deg: np.ndarray, dec1_deg: np.ndarray,
                           ra2_deg: np.ndarray, dec2_deg: np.ndarray) -> np.ndarray:
    """Angular separation in degrees between positions given in degrees (element-wise)."""
    return np.degrees(vincenty_rad(np.radians(ra1_deg), np.radians(dec1_deg),
                                   np.radians(ra2_deg), np.radians(dec2_deg)))


class SkyIndex:
    """A catalog's positions, indexed once for repeated nearest-neighbour queries.

    The index is a "zones" structure: declination bands of height twice the radius, each sorted
    by RA, all in one sorted key array (zone * 1024 + ra). A query position looks at the RA
    window its radius spans (wider near the poles, the whole band when the circle holds a pole,
    and split in two across RA 0/360) in the two or three bands it touches, using binary search.
    The candidate pairs are then decided by exact separation. Building the index for a radius is
    a sort, cached per radius; queries are a handful of whole-array operations.

    >>> idx = SkyIndex(np.array([359.9999]), np.array([0.0]))
    >>> m = idx.nearest(np.array([0.0001]), np.array([0.0]), radius_arcsec=1.0)
    >>> int(m.index[0]), round(float(m.separation_arcsec[0]), 3)
    (0, 0.72)
    """

    def __init__(self, ra_deg: np.ndarray, dec_deg: np.ndarray) -> None:
        ra_deg = np.asarray(ra_deg, dtype=np.float64).ravel()
        dec_deg = np.asarray(dec_deg, dtype=np.float64).ravel()
        if ra_deg.shape != dec_deg.shape:
            raise ValueError(f"ra and dec differ in length ({ra_deg.size} vs {dec_deg.size})")
        check_coordinates(ra_deg, dec_deg, "catalog")
        self.size = int(ra_deg.size)
        # Positions only (16 bytes a row): separations are computed for candidate pairs alone.
        self._ra = _ra_in_range(ra_deg)
        self._dec = dec_deg.copy()
        self._zones: dict[float, _Zones] = {}
        self._scans = 0  # queries answered without building the catalog's zones

    def __len__(self) -> int:
        return self.size

    def prepare(self, radius_arcsec: float) -> None:
        """Build the zones for `radius_arcsec` now, so every later `nearest` at it is a lookup.

        A long-lived index (a step answering many small batches) calls this once at start: its
        queries then cost O(query size * log(catalog)) from the first one, never a catalog sort
        or scan. A one-off caller need not: `nearest` builds (or scans) on demand.
        """
        radius_arcsec = _checked_radius(radius_arcsec)
        if self.size:
            self._zones_for(radius_arcsec / 3600.0)

    def _zones_for(self, radius_deg: float) -> "_Zones":
        height = _zone_height_deg(radius_deg)
        zones = self._zones.get(height)
        if zones is None:
            zones = _Zones.build(self._ra, self._dec, height)
            self._zones = {height: zones}  # one radius at a time is the common case; bound memory
        return zones

    def nearest(self, ra_deg: np.ndarray, dec_deg: np.ndarray, radius_arcsec: float) -> NearestMatch:
        """Nearest catalog row within `radius_arcsec` of each position (degrees)."""
        radius_arcsec = _checked_radius(radius_arcsec)
        ra_deg = np.asarray(ra_deg, dtype=np.float64).ravel()
        dec_deg = np.asarray(dec_deg, dtype=np.float64).ravel()
        if ra_deg.shape != dec_deg.shape:
            raise ValueError(f"ra and dec differ in length ({ra_deg.size} vs {dec_deg.size})")
        check_coordinates(ra_deg, dec_deg, "query")
        n = ra_deg.size
        if n == 0 or self.size == 0:
            return _no_matches(n)
        radius_deg = radius_arcsec / 3600.0
        query_ra = _ra_in_range(ra_deg)
        if (_zone_height_deg(radius_deg) not in self._zones and n * _SCAN_RATIO < self.size
                and self._scans < _MAX_SCANS):
            # A few positions against a big catalog, once (a one-off build): index the positions
            # and scan the catalog past them, instead of sorting the catalog. Every scan costs
            # O(catalog), so an index queried again builds its zones and answers from them.
            self._scans += 1
            pair_q, pair_c = self._pairs_by_scanning(query_ra, dec_deg, radius_deg)
            return self._decide(ra_deg, dec_deg, pair_q, pair_c, radius_arcsec)
        zones = self._zones_for(radius_deg)

        def search(start: int, stop: int) -> NearestMatch:
            pair_q, pair_pos = zones.candidates(query_ra[start:stop], dec_deg[start:stop], radius_deg)
            return self._decide(ra_deg[start:stop], dec_deg[start:stop], pair_q, zones.order[pair_pos],
                                radius_arcsec)

        # Big queries go in chunks: the per-position temporaries of a search (a dozen arrays)
        # then stay small next to the catalog, for the same answers. Chunks of a big query are
        # searched on several threads: numpy releases the GIL in the sorts, binary searches and
        # trigonometry that make up a search.
        threads = max(1, min(_threads(), n // _THREAD_MIN_QUERIES))
        chunk = min(_QUERY_CHUNK, -(-n // threads))
        spans = [(start, min(start + chunk, n)) for start in range(0, n, chunk)]
        if threads > 1:
            with ThreadPoolExecutor(threads) as pool:
                parts = list(pool.map(lambda span: search(*span), spans))
        else:
            parts = [search(*span) for span in spans]
        if len(parts) == 1:
            return parts[0]
        return NearestMatch(*(np.concatenate([getattr(part, f) for part in parts])
                              for f in ("index", "separation_arcsec", "n_within", "second_separation_arcsec")))

    def _decide(self, ra_deg: np.ndarray, dec_deg: np.ndarray, pair_q: np.ndarray, pair_c: np.ndarray,
                radius_arcsec: float) -> NearestMatch:
        """The nearest match per query from candidate pairs, by exact separation."""
        seps = np.degrees(vincenty_rad(np.radians(ra_deg[pair_q]), np.radians(dec_deg[pair_q]),
                                       np.radians(self._ra[pair_c]), np.radians(self._dec[pair_c]))) * 3600.0
        inside = seps <= radius_arcsec
        return _reduce_pairs(ra_deg.size, pair_q[inside], pair_c[inside], seps[inside])

    def _pairs_by_scanning(self, ra_deg: np.ndarray, dec_deg: np.ndarray, radius_deg: float
                           ) -> tuple[np.ndarray, np.ndarray]:
        """(query row, catalog row) candidate pairs from zones built on the queries.

        The catalog streams past the queries in chunks. A coarse grid of the cells the query
        circles touch first drops the catalog rows far from every query (nearly all of them: a
        few cells per query out of millions), so the exact zone search only sees the rest.
        """
        zones = _Zones.build(ra_deg, dec_deg, _zone_height_deg(radius_deg))
        cover = _Cover.build(ra_deg, dec_deg, radius_deg)
        queries, rows = [], []
        # In chunks, so the per-row temporaries stay small next to the catalog itself.
        for start in range(0, self.size, _SCAN_CHUNK):
            stop = min(start + _SCAN_CHUNK, self.size)
            ra, dec = self._ra[start:stop], self._dec[start:stop]
            near = np.flatnonzero(cover.contains(ra, dec))
            if near.size == 0:
                continue
            local, pos = zones.candidates(ra[near], dec[near], radius_deg)
            queries.append(zones.order[pos])
            rows.append(near[local] + start)
        if not queries:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        return np.concatenate(queries), np.concatenate(rows)


# Scan instead of building when the catalog has this many times more rows than the query...
_SCAN_RATIO = 8
# ... for the first call only; then the catalog's zones are built (a service's steady state;
# a service calls `prepare` at start and never scans).
_MAX_SCANS = 1
_SCAN_CHUNK = 1 << 20
# Query positions searched at a time against an index's zones ...
_QUERY_CHUNK = 1 << 18
# ... by threads with at least this many positions each (a step's batches use one thread).
_THREAD_MIN_QUERIES = 1 << 15


def _threads() -> int:
    """Threads for a big query: the CPUs this process may use, at most 4."""
    return max(1, min(4, len(os.sched_getaffinity(0))))


def _ra_in_range(ra_deg: np.ndarray) -> np.ndarray:
    """A copy of finite RAs in [0, 360). Catalogs nearly always are already: two quick passes and
    a copy then, instead of np.mod (a third of the cost of indexing 500,000 rows)."""
    if ra_deg.size and ra_deg.min() >= 0.0 and ra_deg.max() < 360.0:
        return ra_deg.copy()
    return np.mod(ra_deg, 360.0)


def _checked_radius(radius_arcsec: float) -> float:
    radius_arcsec = float(radius_arcsec)
    if not radius_arcsec > 0 or not np.isfinite(radius_arcsec):
        raise ValueError(f"radius_arcsec must be a finite number > 0, got {radius_arcsec!r}")
    return radius_arcsec


def _zone_height_deg(radius_deg: float) -> float:
    # Bands no thinner than 1 arcsec keep the key's float resolution well below the slack.
    return max(2.0 * radius_deg, 1.0 / 3600.0)


def _no_matches(n: int) -> NearestMatch:
    return NearestMatch(np.full(n, -1, dtype=np.int64), np.full(n, np.nan),
                        np.zeros(n, dtype=np.int64), np.full(n, np.nan))


def _reduce_pairs(n: int, pair_q: np.ndarray, pair_c: np.ndarray, seps: np.ndarray) -> NearestMatch:
    """Nearest, second nearest and count per query from its candidate pairs within the radius."""
    index = np.full(n, -1, dtype=np.int64)
    sep = np.full(n, np.nan)
    second = np.full(n, np.nan)
    n_within = np.bincount(pair_q, minlength=n).astype(np.int64)
    single = n_within[pair_q] == 1
    # Most matched queries have one candidate: no sort needed for them.
    index[pair_q[single]] = pair_c[single]
    sep[pair_q[single]] = seps[single]
    multi = ~single
    if multi.any():
        q, c, s = pair_q[multi], pair_c[multi], seps[multi]
        # Ties on separation go to the lower catalog row, so the answer is deterministic.
        order = np.lexsort((c, s, q))
        q, c, s = q[order], c[order], s[order]
        first = np.ones(q.size, dtype=bool)
        first[1:] = q[1:] != q[:-1]
        index[q[first]] = c[first]
        sep[q[first]] = s[first]
        second_pos = np.flatnonzero(first) + 1
        second[q[second_pos - 1]] = s[second_pos]
    return NearestMatch(index, sep, n_within, second)


_KEY_STRIDE = 1024.0  # > 360: RA never spills into the next zone's keys


@dataclass(frozen=True)
class _Zones:
    """Catalog rows sorted by (declination band, RA), as one float64 key array."""

    height_deg: float
    n_zones: int
    keys: np.ndarray   # sorted zone * _KEY_STRIDE + ra_deg
    order: np.ndarray  # catalog row of each sorted key
    slack_deg: float   # key resolution margin added to every window

    @staticmethod
    def build(ra_deg: np.ndarray, dec_deg: np.ndarray, height_deg: float) -> "_Zones":
        """Sort catalog positions (ra in [0, 360)) into bands of `height_deg`."""
        n_zones = int(np.ceil(180.0 / height_deg))
        keys = _zone_of(dec_deg, height_deg, n_zones).astype(np.float64)
        keys *= _KEY_STRIDE
        keys += ra_deg
        order = np.argsort(keys)  # ties need no order: pairs are decided by separation, then row
        # Float keys near n_zones * 1024 resolve RA only to a few ulps: widen windows by more.
        slack = float(np.spacing(n_zones * _KEY_STRIDE)) * 64 + 1e-9
        return _Zones(height_deg, n_zones, keys[order], order, slack)

    def candidates(self, ra_deg: np.ndarray, dec_deg: np.ndarray, radius_deg: float
                   ) -> tuple[np.ndarray, np.ndarray]:
        """(needle row, sorted position) of every indexed row in the search box of each needle.

        Needles are positions with ra in [0, 360). Binary searches for needles in sorted order
        run several times faster than for random ones (numpy starts each search where the last
        one ended, and memory is walked forwards), well worth one argsort of the needles.
        """
        n = ra_deg.size
        zlo = _zone_of(np.maximum(dec_deg - radius_deg, -90.0), self.height_deg, self.n_zones)
        perm = np.argsort(zlo * _KEY_STRIDE + ra_deg)
        ra_deg, dec_deg, zlo = ra_deg[perm], dec_deg[perm], zlo[perm]
        zhi = _zone_of(np.minimum(dec_deg + radius_deg, 90.0), self.height_deg, self.n_zones)
        half = _ra_half_width_deg(dec_deg, radius_deg) + self.slack_deg
        lo = ra_deg - half
        hi = ra_deg + half
        full = np.flatnonzero(half >= 180.0 - 2.0 * self.slack_deg)
        lo[full] = -self.slack_deg
        hi[full] = 360.0 + self.slack_deg
        # A box crossing RA 0/360 is split: its main part clipped to [0, 360] plus the wrapped rest.
        wrap_low = np.flatnonzero(lo < -self.slack_deg)
        wrap_high = np.flatnonzero(hi > 360.0 + self.slack_deg)
        windows = [
            (None, np.maximum(lo, -self.slack_deg), np.minimum(hi, 360.0 + self.slack_deg)),
            (wrap_low, lo[wrap_low] + 360.0, np.full(wrap_low.size, 360.0 + self.slack_deg)),
            (wrap_high, np.full(wrap_high.size, -self.slack_deg), hi[wrap_high] - 360.0),
        ]
        starts, counts, qids = [], [], []
        for offset in range(int((zhi - zlo).max()) + 1):
            active = None if offset == 0 else (zlo + offset <= zhi)
            for rows, wlo, whi in windows:
                if rows is None:
                    rows = np.arange(n) if active is None else np.flatnonzero(active)
                    if active is not None:
                        wlo, whi = wlo[rows], whi[rows]
                elif active is not None:
                    keep = active[rows]
                    rows, wlo, whi = rows[keep], wlo[keep], whi[keep]
                if rows.size == 0:
                    continue
                base = (zlo[rows] + offset) * _KEY_STRIDE
                start = np.searchsorted(self.keys, base + wlo, side="left")
                count = np.searchsorted(self.keys, base + whi, side="right") - start
                keep = count > 0
                starts.append(start[keep])
                counts.append(count[keep])
                qids.append(rows[keep])
        start = np.concatenate(starts)
        count = np.concatenate(counts)
        pair_q = np.repeat(perm[np.concatenate(qids)], count)
        # Position of each pair: its run's start plus its offset within the run.
        run_begin = np.cumsum(count) - count
        pair_pos = np.arange(int(count.sum()), dtype=np.int64) + np.repeat(start - run_begin, count)
        return pair_q, pair_pos


@dataclass(frozen=True)
class _Cover:
    """The cells of a coarse (dec, RA) grid that some query circle touches: a cheap first test.

    Cells are at least 3' (and at least a circle) wide, so the grid holds at most 3600 x 7200
    booleans (26 MB) and a query marks a handful of cells. Marks are conservative (every cell a
    circle, widened by a small slack, overlaps), so no pair is ever dropped; the exact search and
    separations decide the rest.
    """

    cell_deg: float
    n_dec: int
    n_ra: int
    grid: np.ndarray  # bool, n_dec * n_ra, row-major by dec cell

    @staticmethod
    def build(ra_deg: np.ndarray, dec_deg: np.ndarray, radius_deg: float) -> "_Cover":
        """The cells touched by circles of `radius_deg` around the positions (ra in [0, 360))."""
        # A whole number of cells around the sky, so that wrapping across RA 0/360 is exact.
        n_ra = max(1, int(360.0 // max(_COVER_CELL_DEG, 2.0 * radius_deg)))
        cell = 360.0 / n_ra
        n_dec = int(np.ceil(180.0 / cell))
        grid = np.zeros(n_dec * n_ra, dtype=bool)
        reach = radius_deg + _COVER_SLACK_DEG
        d0 = _cell_of(dec_deg - reach + 90.0, cell, n_dec)
        d1 = _cell_of(dec_deg + reach + 90.0, cell, n_dec)
        half = _ra_half_width_deg(dec_deg, radius_deg) + _COVER_SLACK_DEG
        r0 = np.floor((ra_deg - half) / cell).astype(np.int64)
        r1 = np.floor((ra_deg + half) / cell).astype(np.int64)
        full = (half >= 180.0) | (r1 - r0 + 1 >= n_ra)
        for q in np.flatnonzero(full):  # circles around a pole: whole rows (rare)
            grid[d0[q] * n_ra:(d1[q] + 1) * n_ra] = True
        part = ~full
        d0, d1, r0, r1 = d0[part], d1[part], r0[part], r1[part]
        width = r1 - r0 + 1
        count = (d1 - d0 + 1) * width
        # Every (dec cell, RA cell) of each query's box, wrapped across RA 0/360.
        k = np.arange(int(count.sum()), dtype=np.int64) - np.repeat(np.cumsum(count) - count, count)
        w = np.repeat(width, count)
        dec_cell = np.repeat(d0, count) + k // w
        ra_cell = np.mod(np.repeat(r0, count) + k % w, n_ra)
        grid[dec_cell * n_ra + ra_cell] = True
        return _Cover(cell, n_dec, n_ra, grid)

    def contains(self, ra_deg: np.ndarray, dec_deg: np.ndarray) -> np.ndarray:
        """Whether each position (ra in [0, 360)) lies in a marked cell."""
        flat = _cell_of(dec_deg + 90.0, self.cell_deg, self.n_dec)
        flat *= self.n_ra
        flat += _cell_of(ra_deg, self.cell_deg, self.n_ra)
        return self.grid[flat]


def _cell_of(offset_deg: np.ndarray, cell_deg: float, n_cells: int) -> np.ndarray:
    """Cell number of non-negative offsets (clipped into the grid)."""
    cells = np.floor(offset_deg / cell_deg).astype(np.int64)
    np.clip(cells, 0, n_cells - 1, out=cells)
    return cells


_COVER_CELL_DEG = 3.0 / 60.0
_COVER_SLACK_DEG = 1e-7  # far above float rounding of a cell number, far below any radius


def _ra_half_width_deg(dec_deg: np.ndarray, radius_deg: float) -> np.ndarray:
    """Half-width in RA of a circle of radius r at declination d: asin(sin r / cos d), exactly.

    A circle that holds a pole spans every RA (180).
    """
    cos_dec = np.cos(np.radians(dec_deg))
    with np.errstate(divide="ignore"):
        ratio = np.sin(np.radians(radius_deg)) / cos_dec
    ratio[np.abs(dec_deg) + radius_deg >= 90.0 - 1e-9] = 2.0
    half = np.degrees(np.arcsin(np.minimum(ratio, 1.0)))
    half[ratio >= 1.0] = 180.0
    half *= 1.0 + 1e-9
    return half


def _zone_of(dec_deg: np.ndarray, height_deg: float, n_zones: int) -> np.ndarray:
    return np.clip(np.floor((dec_deg + 90.0) / height_deg), 0, n_zones - 1).astype(np.int64)


def one_to_one(index: np.ndarray, separation_arcsec: np.ndarray) -> np.ndarray:
    """Keep each catalog row's match only for the nearest query position that chose it.

    Returns a copy of `index` where the losers of a shared catalog row get -1. Ties on
    separation go to the earlier query position, so the result does not depend on batching.
    """
    index = np.asarray(index, dtype=np.int64)
    out = np.full(index.shape, -1, dtype=np.int64)
    matched = np.flatnonzero(index >= 0)
    if matched.size == 0:
        return out
    order = np.lexsort((matched, separation_arcsec[matched], index[matched]))
    ordered = matched[order]
    first = np.ones(ordered.size, dtype=bool)
    first[1:] = index[ordered[1:]] != index[ordered[:-1]]
    winners = ordered[first]
    out[winners] = index[winners]
    return out
