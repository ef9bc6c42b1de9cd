"""Crossmatch processor benchmark: alerts/s through `CrossmatchStep.process` alone.

A 1,000,000-row catalog uniform on the sphere (written to Parquet under ~/.cache/alertops, read
back by the processor as in a step) plus a planted counterpart near every 10th alert; alerts are
minimal decoded-ZTF records (objectId, candid, candidate.ra/dec/jd) uniform on the sphere. The
processor is built once (catalog read and indexed: timed separately as "start"), then the same
alerts are pushed through it in batches of 100, 500 and 1000; every batch is timed, the first
included (a long-lived step must not pay for its index in its first batches).

  python benchmarks/crossmatch_processor.py [--alerts 50000] [--catalog 1000000]

Last line: RESULT crossmatch_processor alerts_per_s=<alerts/s at batch 500>
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RADIUS_ARCSEC = 2.0
BATCHES = (100, 500, 1000)


def make_alerts(n: int, rng: np.random.Generator) -> list[dict[str, Any]]:
    """Minimal decoded alerts: the fields the crossmatch processor reads."""
    ra = rng.uniform(0.0, 360.0, n)
    dec = np.degrees(np.arcsin(rng.uniform(-1.0, 1.0, n)))
    return [{"objectId": f"ZTF{i:09d}", "candid": 10_000_000 + i,
             "candidate": {"ra": float(ra[i]), "dec": float(dec[i]), "jd": 2460000.5 + i * 1e-5}}
            for i in range(n)]


def write_catalog(path: Path, n: int, alerts: list[dict[str, Any]], rng: np.random.Generator) -> int:
    """Uniform catalog plus one object 0.5" from every 10th alert; returns its row count."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    planted = alerts[::10]
    ra = np.concatenate([rng.uniform(0.0, 360.0, n),
                         [np.mod(a["candidate"]["ra"], 360.0) for a in planted]])
    dec = np.concatenate([np.degrees(np.arcsin(rng.uniform(-1.0, 1.0, n))),
                          [np.clip(a["candidate"]["dec"] + 0.5 / 3600, -90, 90) for a in planted]])
    pq.write_table(pa.table({"id": np.arange(ra.size), "ra": ra, "dec": dec}), path)
    return int(ra.size)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alerts", type=int, default=50_000, help="alerts per batch size")
    parser.add_argument("--catalog", type=int, default=1_000_000, help="random catalog rows")
    args = parser.parse_args()

    from step_runtime.spec.pipelinestep import CrossmatchProcessor
    from step_runtime.step.processors import CrossmatchStep

    rng = np.random.default_rng(20260601)
    alerts = make_alerts(args.alerts, rng)
    cache = Path.home() / ".cache" / "alertops"
    cache.mkdir(parents=True, exist_ok=True)
    rates: dict[int, float] = {}
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        path = Path(tmp) / "catalog.parquet"
        n_cat = write_catalog(path, args.catalog, alerts, rng)
        for batch in BATCHES:
            t0 = time.perf_counter()
            step = CrossmatchStep(CrossmatchProcessor(catalog=str(path), id_column="id",
                                                      radius_arcsec=RADIUS_ARCSEC), ROOT)
            start_s = time.perf_counter() - t0
            times, matched = [], 0
            for i in range(0, len(alerts), batch):
                t = time.perf_counter()
                out, failures = step.process(alerts[i:i + batch])
                times.append(time.perf_counter() - t)
                assert not failures
                matched += sum(o["xm_id"] is not None for o in out)
            ms = np.array(times) * 1e3
            rates[batch] = len(alerts) / float(np.sum(times))
            print(f"batch {batch:5d}: {len(alerts)} alerts vs {n_cat} rows, {matched} matched, "
                  f"{rates[batch]:,.0f} alerts/s; batch ms first {ms[0]:.2f} p50 {np.median(ms):.2f} "
                  f"max {ms.max():.2f}; start {start_s:.2f} s", flush=True)
    print(f"RESULT crossmatch_processor alerts_per_s={rates[500]:.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
