"""Crossmatch benchmark: alertops SkyIndex vs astropy, same machine, same data, one run.

Cases (radius 1.5"): 1e6 sources x 1e6 catalog, and 1e5 sources x 1e7 catalog. The catalog is
uniform on the sphere; half the sources are a catalog object moved by a Gaussian offset (sigma
0.5" per axis), half are uniform random. Each matcher runs in its own subprocess, which makes
the same data from the same seed, so its peak RSS (ru_maxrss) is its own. Timed: from the
arrays in memory (libraries imported) to "nearest catalog row within the radius for every
source", index included.

  astropy match   SkyCoord(...).match_to_catalog_sky(SkyCoord(...)), then sep <= radius
  astropy search  search_around_sky(sources, catalog, radius), then the nearest pair per source
  alertops        SkyIndex(ra, dec).nearest(ra, dec, radius)

The parent checks the three agree exactly on the matched catalog row (and separations to
1e-6"), prints a table, and ends with
  RESULT crossmatch speedup_vs_astropy=<x> rss_ratio=<y> identical=<true|false>
for the 1e6 x 1e6 case, and
  RESULT crossmatch_few_sources speedup_vs_astropy=<x> rss_ratio=<y> identical=<true|false>
for 1e5 sources x 1e7 catalog rows, the shape of real training sets (a broker's labelled objects
against a Gaia-sized catalog); speedup and RSS against astropy match_to_catalog_sky. Peak RSS is
the whole process's, generated input arrays included (every process holds the same ones).

  python benchmarks/crossmatch.py                  # both cases
  python benchmarks/crossmatch.py --cases few      # 1e5 x 1e7 only
  python benchmarks/crossmatch.py --quick          # 1e5 x 1e5 only, a smoke run
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

RADIUS_ARCSEC = 1.5
SEED = 20260601
MATCHERS = ("alertops", "astropy-match", "astropy-search")


def make_data(n_src: int, n_cat: int, seed: int = SEED) -> tuple[np.ndarray, ...]:
    """Uniform catalog; half the sources near a catalog object (sigma 0.5"), half uniform."""
    rng = np.random.default_rng(seed)
    cat_ra = rng.uniform(0.0, 360.0, n_cat)
    cat_dec = np.degrees(np.arcsin(rng.uniform(-1.0, 1.0, n_cat)))
    n_true = n_src // 2
    pick = rng.integers(0, n_cat, n_true)
    d_dec = rng.normal(0.0, 0.5 / 3600, n_true)
    d_ra = rng.normal(0.0, 0.5 / 3600, n_true) / np.maximum(np.cos(np.radians(cat_dec[pick])), 1e-6)
    src_dec = np.clip(cat_dec[pick] + d_dec, -90.0, 90.0)
    src_ra = np.mod(cat_ra[pick] + d_ra, 360.0)
    rnd_ra = rng.uniform(0.0, 360.0, n_src - n_true)
    rnd_dec = np.degrees(np.arcsin(rng.uniform(-1.0, 1.0, n_src - n_true)))
    return (np.concatenate([src_ra, rnd_ra]), np.concatenate([src_dec, rnd_dec]), cat_ra, cat_dec)


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux reports KiB


def run_worker(matcher: str, n_src: int, n_cat: int, out: Path) -> None:
    """One matcher on one case; writes its result arrays and timings to `out` (.npz)."""
    src_ra, src_dec, cat_ra, cat_dec = make_data(n_src, n_cat)
    # Imports are not timed: astropy's take about a second, which would flatter alertops.
    if matcher == "alertops":
        from step_runtime.crossmatch import SkyIndex
    else:
        import astropy.units as u
        from astropy.coordinates import SkyCoord, search_around_sky
    rss_data = _peak_rss_mib()
    t0, c0 = time.perf_counter(), time.process_time()
    if matcher == "alertops":
        match = SkyIndex(cat_ra, cat_dec).nearest(src_ra, src_dec, RADIUS_ARCSEC)
        index, sep, n_within = match.index, match.separation_arcsec, match.n_within
    else:
        src = SkyCoord(src_ra * u.deg, src_dec * u.deg)
        cat = SkyCoord(cat_ra * u.deg, cat_dec * u.deg)
        if matcher == "astropy-match":
            idx, sep2d, _ = src.match_to_catalog_sky(cat)
            sep_all = sep2d.arcsec
            inside = sep_all <= RADIUS_ARCSEC
            index = np.where(inside, idx, -1)
            sep = np.where(inside, sep_all, np.nan)
            n_within = np.full(n_src, -1)  # not available from match_to_catalog_sky
        else:
            i_src, i_cat, sep2d, _ = search_around_sky(src, cat, RADIUS_ARCSEC * u.arcsec)
            pair_sep = sep2d.arcsec
            order = np.lexsort((i_cat, pair_sep, i_src))
            i_src, i_cat, pair_sep = i_src[order], i_cat[order], pair_sep[order]
            first = np.ones(i_src.size, dtype=bool)
            first[1:] = i_src[1:] != i_src[:-1]
            index = np.full(n_src, -1, dtype=np.int64)
            sep = np.full(n_src, np.nan)
            index[i_src[first]] = i_cat[first]
            sep[i_src[first]] = pair_sep[first]
            n_within = np.bincount(i_src, minlength=n_src)
    seconds, cpu_seconds = time.perf_counter() - t0, time.process_time() - c0
    rss_peak = _peak_rss_mib()
    np.savez(out, index=index, sep=sep, n_within=n_within,
             meta=json.dumps({"seconds": seconds, "cpu_seconds": cpu_seconds, "rss_peak_mib": rss_peak,
                             "rss_data_mib": rss_data}))


def _run_in_subprocess(matcher: str, n_src: int, n_cat: int, tmp: Path, timeout: float) -> dict:
    out = tmp / f"{matcher}-{n_src}-{n_cat}.npz"
    cmd = [sys.executable, __file__, "--worker", matcher, "--n-src", str(n_src), "--n-cat", str(n_cat),
           "--out", str(out)]
    subprocess.run(cmd, check=True, timeout=timeout)
    with np.load(out) as data:
        result = {k: data[k] for k in ("index", "sep", "n_within")}
        result.update(json.loads(str(data["meta"])))
    return result


def compare(a: dict, b: dict) -> tuple[bool, int, float]:
    """(identical, number of differing matches, max separation difference in arcsec)."""
    differ = int((a["index"] != b["index"]).sum())
    both = (a["index"] >= 0) & (b["index"] >= 0)
    max_dsep = float(np.max(np.abs(a["sep"][both] - b["sep"][both]))) if both.any() else 0.0
    return differ == 0 and max_dsep <= 1e-6, differ, max_dsep


def run_case(n_src: int, n_cat: int, tmp: Path, timeout: float) -> dict:
    """All matchers on one case, checked against each other."""
    results = {m: _run_in_subprocess(m, n_src, n_cat, tmp, timeout) for m in MATCHERS}
    ours = results["alertops"]
    checks = {}
    for other in ("astropy-match", "astropy-search"):
        checks[other] = compare(ours, results[other])
    counts_ok = bool(np.array_equal(ours["n_within"], results["astropy-search"]["n_within"]))
    identical = all(c[0] for c in checks.values()) and counts_ok
    print(f"\ncase {n_src:.0e} sources x {n_cat:.0e} catalog, radius {RADIUS_ARCSEC}\" "
          f"({int((ours['index'] >= 0).sum())} matched)")
    print(f"  {'matcher':<16}{'seconds':>10}{'CPU s':>8}{'peak RSS MiB':>15}{'RSS of data MiB':>17}{'vs alertops':>13}")
    for m in MATCHERS:
        r = results[m]
        print(f"  {m:<16}{r['seconds']:>10.2f}{r['cpu_seconds']:>8.2f}{r['rss_peak_mib']:>15.0f}{r['rss_data_mib']:>17.0f}"
              f"{r['seconds'] / ours['seconds']:>12.2f}x")
    for other, (ok, differ, dsep) in checks.items():
        print(f"  alertops vs {other}: identical={ok} differing matches={differ} max |dsep|={dsep:.2e}\"")
    print(f"  n_within equals search_around_sky pair counts: {counts_ok}")
    return {"results": results, "identical": identical}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--worker", choices=MATCHERS)
    parser.add_argument("--n-src", type=int)
    parser.add_argument("--n-cat", type=int)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--quick", action="store_true", help="1e5 x 1e5 only")
    parser.add_argument("--cases", default="all", choices=["all", "square", "few"],
                        help="square: 1e6 x 1e6; few: 1e5 sources x 1e7 catalog rows (default: both)")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds allowed per matcher run")
    args = parser.parse_args()
    if args.worker:
        run_worker(args.worker, args.n_src, args.n_cat, args.out)
        return 0
    named = {"square": ("crossmatch", (1_000_000, 1_000_000)), "few": ("crossmatch_few_sources", (100_000, 10_000_000))}
    if args.quick:
        cases = [("crossmatch", (100_000, 100_000))]
    else:
        cases = [named[c] for c in (("square", "few") if args.cases == "all" else (args.cases,))]
    print(f"crossmatch benchmark on {platform.node()}: {os.cpu_count()} CPU(s), "
          f"{platform.processor() or platform.machine()}, load average {os.getloadavg()[0]:.1f}")
    identical = True
    with tempfile.TemporaryDirectory(prefix="alertops-bench-") as tmp:
        outcomes = [(label, run_case(n_src, n_cat, Path(tmp), args.timeout)) for label, (n_src, n_cat) in cases]
    for label, outcome in outcomes:
        ours, theirs = outcome["results"]["alertops"], outcome["results"]["astropy-match"]
        speedup = theirs["seconds"] / ours["seconds"]
        rss_ratio = ours["rss_peak_mib"] / theirs["rss_peak_mib"]
        identical &= outcome["identical"]
        print(f"RESULT {label} speedup_vs_astropy={speedup:.2f} rss_ratio={rss_ratio:.2f} "
              f"identical={'true' if outcome['identical'] else 'false'}")
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
