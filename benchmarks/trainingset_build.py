"""Training-set build benchmark: whole `alertops build` runs vs the astropy + pandas script a broker
engineer would write, side by side in one run, on the same files.

Cases (generated once, deterministically, under ~/.cache/alertops/bench/trainingset/):

  a  sexagesimal CSV, 14,000 sources (BTS-like: "RA" 01:02:03.45, "Dec" +01:02:03.4) x 15,500
     catalog rows (TNS-like: quoted CSV, "ra" 01:02:03.456, "declination" +01:02:03.45, a type
     for 2,100 of them), radius 2"
  b  whitespace table in radians, gzip, 120,000 sources x Parquet catalog of 500,000 rows (degrees,
     a class for 70%), radius 1.5"
  c  Parquet 1,000,000 sources x Parquet 1,000,000 catalog rows, radius 1.5"

Positions are uniform over the sky north of -30 deg; a share of sources has a counterpart within
0.6" (some unlabeled, some with a labeled object farther away), so nearest-first labelling
matters. The sexagesimal text is formatted as naive writers do (rounding 59.996 s to "60.00"):
real files have those, and astropy reads them with an IllegalSecondWarning.

Both sides, each in its own process, timed from process start to exit (imports included):
  alertops  `python -m step_runtime build <manifest>` (parallelism 1): what `alertops build` runs
  astropy   read with pandas, SkyCoord, match_to_catalog_sky over every catalog row, label from
            the nearest row when within the radius (none when it has no mapped label), write the
            labeled rows to Parquet (this file's `peer` function; it is the whole script)
Both run from compiled bytecode, as an installed package and its libraries do (pip compiles them
at install): the benchmark compiles this checkout's modules first, which a shell with
PYTHONDONTWRITEBYTECODE=1 would otherwise recompile at every start (30 ms of a 1-second build).
Peak RSS is each process's own (os.wait4). The outputs are compared: the same source -> catalog
id pairs and labels, and the same match counts. Per case the last lines are
  RESULT trainingset_build case=<c> speedup_vs_astropy=<x> rss_ratio=<y> identical=<true|false>
(medians of --repeat alternating runs).

  python benchmarks/trainingset_build.py                 # all cases, 3 runs each
  python benchmarks/trainingset_build.py --cases a --repeat 1
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CACHE = Path.home() / ".cache" / "alertops" / "bench" / "trainingset"
SEED = 20260612
DATA_VERSION = "2"  # bump when the generated data change

TNS_TYPES = ["SN Ia", "SN II", "SN Ib/c", "SN IIn", "TDE", "SLSN-I", "SN Ia-91T-like", "CV", "AGN", "Other"]
TNS_MAP = {"SN Ia": "SNIa", "SN Ia-91T-like": "SNIa", "SN II": "SNII", "SN IIn": "SNII", "SN Ib/c": "SNIbc",
           "TDE": "TDE", "SLSN-I": "SLSN"}  # CV, AGN, Other: unmapped, dropped
VAR_CLASSES = ["RRL", "EB", "EW", "CEP", "DSCT", "LPV", "YSO", "ROT", "QSO", "UNKNOWN"]
VAR_MAP = {"RRL": "RRL", "EB": "EB", "EW": "EB", "CEP": "CEP", "DSCT": "DSCT", "LPV": "LPV", "QSO": "QSO"}

CASES = {
    "a": dict(n_src=14_000, n_cat=15_500, radius=2.0),
    "b": dict(n_src=120_000, n_cat=500_000, radius=1.5),
    "c": dict(n_src=1_000_000, n_cat=1_000_000, radius=1.5),
}


# --- data ------------------------------------------------------------------------------------

def _sky(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Uniform positions (degrees) north of dec -30."""
    ra = rng.uniform(0.0, 360.0, n)
    dec = np.degrees(np.arcsin(rng.uniform(-0.5, 1.0, n)))
    return ra, dec


def _near(rng: np.random.Generator, ra: np.ndarray, dec: np.ndarray, sigma_arcsec: float
          ) -> tuple[np.ndarray, np.ndarray]:
    """Positions moved by a Gaussian offset of sigma_arcsec per axis."""
    d_dec = rng.normal(0.0, sigma_arcsec / 3600.0, ra.size)
    d_ra = rng.normal(0.0, sigma_arcsec / 3600.0, ra.size) / np.cos(np.radians(dec))
    return np.mod(ra + d_ra, 360.0), np.clip(dec + d_dec, -90.0, 90.0)


def _scene(rng: np.random.Generator, n_src: int, n_cat: int) -> dict[str, np.ndarray]:
    """Catalog and sources: 60% of sources sit 0.3" from a catalog row; 5% of those also have a
    second catalog row 1.2" away (the nearest may be unlabeled while the farther one is labeled)."""
    cat_ra, cat_dec = _sky(rng, n_cat)
    n_true = int(n_src * 0.6)
    pick = rng.choice(n_cat, size=n_true, replace=False)
    src_ra, src_dec = _near(rng, cat_ra[pick], cat_dec[pick], 0.3)
    n_pair = n_true // 20
    near_ra, near_dec = _near(rng, src_ra[:n_pair], src_dec[:n_pair], 1.2)
    cat_ra[pick[-n_pair:]], cat_dec[pick[-n_pair:]] = near_ra, near_dec  # reuse rows: sizes stay put
    rest_ra, rest_dec = _sky(rng, n_src - n_true)
    order = rng.permutation(n_src)
    return {"src_ra": np.concatenate([src_ra, rest_ra])[order], "src_dec": np.concatenate([src_dec, rest_dec])[order],
            "cat_ra": cat_ra, "cat_dec": cat_dec, "matched_rows": pick}


def _naive_sexagesimal(value: np.ndarray, hours: bool, decimals: int, sign: bool) -> list[str]:
    """hh:mm:ss.ss as a naive writer formats it: each field rounded on its own (so 59.996 -> 60.00)."""
    units = value / 15.0 if hours else value
    negative = units < 0
    a = np.abs(units)
    whole = np.floor(a)
    minutes = np.floor((a - whole) * 60.0)
    seconds = ((a - whole) * 60.0 - minutes) * 60.0
    width = 3 + decimals
    out = []
    for neg, w, m, s in zip(negative, whole.astype(int), minutes.astype(int), seconds):
        head = ("-" if neg else "+") if sign else ""
        out.append(f"{head}{w:02d}:{m:02d}:{s:0{width}.{decimals}f}")
    return out


def _csv_quote(values: list[str]) -> list[str]:
    return ['"' + v.replace('"', '""') + '"' for v in values]


def generate_a(folder: Path) -> None:
    import pandas as pd

    cfg = CASES["a"]
    rng = np.random.default_rng(SEED)
    scene = _scene(rng, cfg["n_src"], cfg["n_cat"])
    n_src, n_cat = cfg["n_src"], cfg["n_cat"]
    # The BTS explorer's CSV (a subset of its columns, its formats).
    bts = pd.DataFrame({
        "ZTFID": [f"ZTF{18 + i % 7}{chr(97 + i % 26)}{i:07d}" for i in range(n_src)],
        "IAUID": [f"SN20{18 + i % 7}{chr(97 + i % 26)}{chr(97 + (i // 26) % 26)}{chr(97 + (i // 676) % 26)}"
                  for i in range(n_src)],
        "RA": _naive_sexagesimal(scene["src_ra"], True, 2, False),
        "Dec": _naive_sexagesimal(scene["src_dec"], False, 1, True),
        "peakt": np.round(rng.uniform(1200, 3000, n_src), 2),
        "peakfilt": rng.choice(["g", "r", "i"], n_src),
        "peakmag": np.round(rng.uniform(14, 19.5, n_src), 2),
        "peakabs": np.round(rng.uniform(-22, -15, n_src), 2),
        "duration": np.round(rng.uniform(5, 200, n_src), 1),
        "rise": np.round(rng.uniform(2, 40, n_src), 1),
        "fade": np.round(rng.uniform(5, 120, n_src), 1),
        "type": rng.choice(["SN Ia", "SN II", "-", "SN Ic", "CV"], n_src),
        "redshift": np.round(rng.uniform(0.001, 0.2, n_src), 4),
        "b": np.round(rng.uniform(-90, 90, n_src), 2),
        "A_V": np.round(rng.uniform(0, 2, n_src), 3),
        "hostdist": np.round(rng.uniform(0, 30, n_src), 2),
        "host_sep": np.round(rng.uniform(0, 30, n_src), 2),
        "vis": rng.integers(0, 2, n_src),
        "poor_lc": rng.integers(0, 2, n_src),
        "lcfit": rng.choice(["SALT2", "-", ""], n_src),
    })
    bts.to_csv(folder / "bts.csv", index=False)
    # The TNS public objects CSV: every field quoted, ~13% with a type.
    labeled = np.zeros(n_cat, dtype=bool)
    labeled[rng.choice(scene["matched_rows"], size=int(n_cat * 0.12), replace=False)] = True
    labeled[rng.choice(n_cat, size=int(n_cat * 0.015), replace=False)] = True
    types = np.where(labeled, rng.choice(TNS_TYPES, n_cat, p=[.45, .2, .08, .05, .02, .02, .03, .05, .05, .05]), "")
    names = [f"20{18 + i % 7}{chr(97 + i % 26)}{chr(97 + (i // 26) % 26)}{chr(97 + (i // 676) % 26)}"
             for i in range(n_cat)]
    columns = {
        "objid": [str(100000 + i) for i in range(n_cat)],
        "name_prefix": ["SN" if t else "AT" for t in types],
        "name": names,
        "ra": _naive_sexagesimal(scene["cat_ra"], True, 3, False),
        "declination": _naive_sexagesimal(scene["cat_dec"], False, 2, True),
        "redshift": [f"{z:.4f}" if t else "" for z, t in zip(rng.uniform(0.001, 0.3, n_cat), types)],
        "typeid": [str(TNS_TYPES.index(t) + 1) if t else "" for t in types],
        "type": list(types),
        "reporting_group": rng.choice(["ZTF", "ATLAS", "Pan-STARRS", "GOTO", "ALeRCE"], n_cat).tolist(),
        "discoverydate": [f"20{18 + i % 7}-0{1 + i % 9}-1{i % 10} 0{i % 10}:1{i % 6}:2{i % 10}.000" for i in range(n_cat)],
        "discoverymag": [f"{m:.2f}" for m in rng.uniform(16, 21, n_cat)],
        "discmagfilter": rng.choice(["10", "11", "12", "71"], n_cat).tolist(),
        "filter": rng.choice(["g-ZTF", "r-ZTF", "orange-ATLAS", "cyan-ATLAS"], n_cat).tolist(),
        "reporters": [f"A. Author, B. Author{i % 13}, C. Author on behalf of the survey" for i in range(n_cat)],
        "time_received": [f"20{18 + i % 7}-0{1 + i % 9}-1{i % 10} 1{i % 10}:2{i % 6}:3{i % 10}.123" for i in range(n_cat)],
        "internal_names": [f"ZTF{18 + i % 7}xyz{i:05d}, ATLAS{i % 99}abc" for i in range(n_cat)],
        "creationdate": [f"20{18 + i % 7}-0{1 + i % 9}-1{i % 10} 1{i % 10}:2{i % 6}:3{i % 10}" for i in range(n_cat)],
        "lastmodified": [f"20{19 + i % 6}-0{1 + i % 9}-2{i % 10} 0{i % 10}:0{i % 6}:0{i % 10}" for i in range(n_cat)],
    }
    lines = [",".join(_csv_quote(list(columns)))]
    rows = zip(*[_csv_quote(v) for v in columns.values()])
    lines += [",".join(r) for r in rows]
    (folder / "tns_public_objects.csv").write_text("\n".join(lines) + "\n")


def _variable_labels(rng: np.random.Generator, n: int) -> np.ndarray:
    labels = rng.choice(VAR_CLASSES, n).astype(object)
    labels[rng.uniform(size=n) < 0.3] = None
    return labels


def generate_b(folder: Path) -> None:
    import gzip

    import pyarrow as pa
    import pyarrow.parquet as pq

    cfg = CASES["b"]
    rng = np.random.default_rng(SEED + 1)
    scene = _scene(rng, cfg["n_src"], cfg["n_cat"])
    n_src, n_cat = cfg["n_src"], cfg["n_cat"]
    ra, dec = np.radians(scene["src_ra"]), np.radians(scene["src_dec"])
    # The columns of LINEARattributesFinalApr2013.dat (tests/data/trainingset), positions in radians.
    feats = rng.normal(0, 1, (n_src, 8))
    nobs = rng.integers(50, 500, n_src)
    text = ["# A periodic-variable attribute table in the LINEAR format: positions in radians (J2000)",
            "#    ra            dec            ug      gi      iK      JK         logP       Ampl   skew    kurt"
            "   magMed nObs LCtype  objid"]
    for i in range(n_src):
        f = feats[i]
        text.append(f" {ra[i]:13.10f} {dec[i]:13.10f} {f[0]:7.3f} {f[1]:7.3f} {f[2]:7.3f} {f[3]:7.3f} "
                    f"{f[4]:14.7f} {f[5]:7.3f} {f[6]:7.3f} {f[7]:7.3f} {15 + f[0]:6.2f} {nobs[i]:5d} "
                    f"{1 + i % 6:3d} {1_000_000 + i:14d}")
    (folder / "variability.dat.gz").write_bytes(gzip.compress(("\n".join(text) + "\n").encode(), 6))
    table = pa.table({"source_id": np.arange(n_cat, dtype=np.int64) * 7 + 4_000_000_000,
                      "ra": scene["cat_ra"], "dec": scene["cat_dec"],
                      "phot_g_mean_mag": rng.uniform(10, 21, n_cat).astype(np.float32),
                      "best_class_name": pa.array(_variable_labels(rng, n_cat), pa.string()),
                      "best_class_score": rng.uniform(0, 1, n_cat).astype(np.float32)})
    pq.write_table(table, folder / "vari_classifier.parquet")


def generate_c(folder: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    cfg = CASES["c"]
    rng = np.random.default_rng(SEED + 2)
    scene = _scene(rng, cfg["n_src"], cfg["n_cat"])
    n_src, n_cat = cfg["n_src"], cfg["n_cat"]
    pq.write_table(pa.table({"oid": pa.array([f"ZTF{i:09d}" for i in range(n_src)]),
                             "meanra": scene["src_ra"], "meandec": scene["src_dec"],
                             "ndet": rng.integers(1, 500, n_src).astype(np.int32)}), folder / "objects.parquet")
    pq.write_table(pa.table({"source_id": np.arange(n_cat, dtype=np.int64) * 11 + 10**15,
                             "ra": scene["cat_ra"], "dec": scene["cat_dec"],
                             "best_class_name": pa.array(_variable_labels(rng, n_cat), pa.string())}),
                   folder / "catalog.parquet")


GENERATORS = {"a": generate_a, "b": generate_b, "c": generate_c}


def data_folder(case: str) -> Path:
    """The case's input files, generated when missing."""
    folder = CACHE / f"case-{case}-v{DATA_VERSION}"
    stamp = folder / ".complete"
    if not stamp.exists():
        folder.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        GENERATORS[case](folder)
        stamp.write_text("ok\n")
        print(f"  generated case {case} data in {time.perf_counter() - t0:.1f}s under {folder}", flush=True)
    return folder


# --- the two sides ---------------------------------------------------------------------------

def manifest(case: str, folder: Path) -> dict:
    """The TrainingSetBuild for a case (inputs by absolute path; output relative to --output-dir)."""
    radius = CASES[case]["radius"]
    if case == "a":
        source = {"path": str(folder / "bts.csv"), "idColumn": "ZTFID", "raColumn": "RA", "decColumn": "Dec",
                  "coordUnits": "sexagesimal"}
        catalog = {"name": "tns", "path": str(folder / "tns_public_objects.csv"), "idColumn": "name",
                   "raColumn": "ra", "decColumn": "declination", "coordUnits": "sexagesimal",
                   "labelColumn": "type", "labelMap": TNS_MAP}
    elif case == "b":
        source = {"path": str(folder / "variability.dat.gz"), "idColumn": "objid", "coordUnits": "rad"}
        catalog = {"name": "gaia", "path": str(folder / "vari_classifier.parquet"), "idColumn": "source_id",
                   "labelColumn": "best_class_name", "labelMap": VAR_MAP}
    else:
        source = {"path": str(folder / "objects.parquet"), "idColumn": "oid", "raColumn": "meanra",
                  "decColumn": "meandec"}
        catalog = {"name": "gaia", "path": str(folder / "catalog.parquet"), "idColumn": "source_id",
                   "labelColumn": "best_class_name", "labelMap": VAR_MAP}
    catalog["radiusArcsec"] = radius
    return {"apiVersion": "alertops.io/v1alpha1", "kind": "TrainingSetBuild", "metadata": {"name": f"bench-{case}"},
            "spec": {"parallelism": 1, "source": source, "catalogs": [catalog], "output": {"path": "out.parquet"}}}


def peer(case: str, folder: Path, out: Path) -> None:
    """The plain astropy + pandas script: read, parse, match, label (nearest first), write."""
    import warnings

    import astropy.units as u
    import pandas as pd
    from astropy.coordinates import SkyCoord
    from astropy.utils.exceptions import AstropyWarning

    radius = CASES[case]["radius"]
    if case == "a":
        src = pd.read_csv(folder / "bts.csv")
        cat = pd.read_csv(folder / "tns_public_objects.csv")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", AstropyWarning)  # the "60.00" seconds
            src_coord = SkyCoord(src["RA"].to_numpy(), src["Dec"].to_numpy(), unit=(u.hourangle, u.deg))
            cat_coord = SkyCoord(cat["ra"].to_numpy(), cat["declination"].to_numpy(), unit=(u.hourangle, u.deg))
        src_id, cat_id, labels, label_map = src["ZTFID"], cat["name"], cat["type"], TNS_MAP
    elif case == "b":
        names = ["ra", "dec", "ug", "gi", "iK", "JK", "logP", "Ampl", "skew", "kurt", "magMed", "nObs", "LCtype", "objid"]
        src = pd.read_csv(folder / "variability.dat.gz", sep=r"\s+", comment="#", header=None, names=names)
        cat = pd.read_parquet(folder / "vari_classifier.parquet", columns=["source_id", "ra", "dec", "best_class_name"])
        src_coord = SkyCoord(src["ra"].to_numpy() * u.rad, src["dec"].to_numpy() * u.rad)
        cat_coord = SkyCoord(cat["ra"].to_numpy() * u.deg, cat["dec"].to_numpy() * u.deg)
        src_id, cat_id, labels, label_map = src["objid"], cat["source_id"], cat["best_class_name"], VAR_MAP
    else:
        src = pd.read_parquet(folder / "objects.parquet", columns=["oid", "meanra", "meandec"])
        cat = pd.read_parquet(folder / "catalog.parquet")
        src_coord = SkyCoord(src["meanra"].to_numpy() * u.deg, src["meandec"].to_numpy() * u.deg)
        cat_coord = SkyCoord(cat["ra"].to_numpy() * u.deg, cat["dec"].to_numpy() * u.deg)
        src_id, cat_id, labels, label_map = src["oid"], cat["source_id"], cat["best_class_name"], VAR_MAP
    idx, sep, _ = src_coord.match_to_catalog_sky(cat_coord)
    within = sep.arcsec <= radius
    mapped = labels.map(label_map).to_numpy(dtype=object)  # unmapped and blank -> NaN: no label
    label = np.where(within, mapped[idx], None)
    has_label = pd.notna(label)
    result = pd.DataFrame({"id": src_id.to_numpy()[has_label], "catalog_id": cat_id.to_numpy()[idx[has_label]],
                           "label": label[has_label].astype(str), "separation_arcsec": sep.arcsec[has_label]})
    result.to_parquet(out, index=False)
    stats = {"matches": int(within.sum()), "matched_unlabeled": int((within & ~has_label).sum())}
    Path(str(out) + ".stats.json").write_text(json.dumps(stats))


def _run_measured(cmd: list[str], timeout: float) -> dict:
    """Run cmd; wall seconds from spawn to exit, CPU seconds and peak RSS of the process tree (os.wait4)."""
    import tempfile

    with tempfile.TemporaryFile() as err_file:  # a file, not a pipe: a chatty child never blocks
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err_file, cwd=ROOT)
        deadline = t0 + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                proc.kill()
                proc.wait()
                raise TimeoutError(f"{cmd[:4]} took over {timeout}s")
            time.sleep(0.005)
        seconds = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        err_file.seek(0)
        err = err_file.read().decode(errors="replace")
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}: {err[-2000:]}")
    return {"seconds": seconds, "cpu_seconds": usage.ru_utime + usage.ru_stime, "rss_mib": usage.ru_maxrss / 1024.0,
            "stderr": err}


def _alertops() -> list[str]:
    """`alertops`, as this checkout's code (the venv's script may point at another checkout)."""
    return [sys.executable, "-m", "step_runtime"]


def compile_bytecode() -> None:
    """Compile this checkout's modules, as pip does for an installed package (quiet, once)."""
    import compileall

    compileall.compile_dir(ROOT / "step_runtime", quiet=1)
    compileall.compile_file(Path(__file__), quiet=1)


def run_ours(case: str, folder: Path, work: Path, timeout: float) -> dict:
    import yaml

    path = work / f"bench-{case}.yaml"
    path.write_text(yaml.safe_dump(manifest(case, folder), sort_keys=False))
    cmd = [*_alertops(), "build", str(path), "--output-dir", str(work / "ours")]
    return _run_measured(cmd, timeout)


def run_peer(case: str, folder: Path, work: Path, timeout: float) -> dict:
    # As a module, so that it too runs from compiled bytecode.
    cmd = [sys.executable, "-m", "benchmarks.trainingset_build", "--peer", case, "--data", str(folder),
           "--out", str(work / "peer.parquet")]
    return _run_measured(cmd, timeout)


def compare(case: str, work: Path) -> tuple[bool, str]:
    """Same (source id, catalog id, label) rows and the same match counts on both sides."""
    import pandas as pd

    cat_name = "tns" if case == "a" else "gaia"
    ours = pd.read_parquet(work / "ours" / "out.parquet", columns=["id", f"{cat_name}_id", "label"])
    ours.columns = ["id", "catalog_id", "label"]
    theirs = pd.read_parquet(work / "peer.parquet", columns=["id", "catalog_id", "label"])
    key = ["id", "catalog_id", "label"]
    a = ours.astype(str).sort_values(key).reset_index(drop=True)
    b = theirs.astype(str).sort_values(key).reset_index(drop=True)
    rows_equal = a.equals(b)
    summary = json.loads((work / "ours" / "out.parquet.summary.json").read_text())["catalogs"][cat_name]
    stats = json.loads((work / "peer.parquet.stats.json").read_text())
    counts_equal = (summary["matches"], summary["matched_unlabeled"]) == (stats["matches"], stats["matched_unlabeled"])
    detail = (f"{len(a)} labeled rows (peer {len(b)}), rows equal: {rows_equal}; matches {summary['matches']} / "
              f"{stats['matches']}, matched unlabeled {summary['matched_unlabeled']} / {stats['matched_unlabeled']}")
    return rows_equal and counts_equal, detail


def startup(repeat: int, timeout: float) -> None:
    """Start-up: `alertops --help`, and a build of two rows (all but the work of a build)."""
    import yaml

    work = CACHE / "work-startup"
    work.mkdir(parents=True, exist_ok=True)
    (work / "two.csv").write_text("oid,ra,dec,cls\na,10.0,20.0,RRL\nb,30.0,-5.0,EW\n")
    spec = {"source": {"path": str(work / "two.csv"), "idColumn": "oid"},
            "catalogs": [{"name": "c", "path": str(work / "two.csv"), "idColumn": "oid", "labelColumn": "cls",
                          "radiusArcsec": 1.0}], "output": {"path": "out.parquet"}}
    (work / "two.yaml").write_text(yaml.safe_dump({"apiVersion": "alertops.io/v1alpha1", "kind": "TrainingSetBuild",
                                                   "metadata": {"name": "two"}, "spec": spec}))
    commands = {"alertops --help": [*_alertops(), "--help"],
                "alertops build (2 rows)": [*_alertops(), "build", str(work / "two.yaml"),
                                            "--output-dir", str(work / "out")]}
    print("\nstart-up (median of runs)")
    for label, cmd in commands.items():
        runs = [_run_measured(cmd, timeout) for _ in range(repeat)]
        print(f"  {label:<24} {statistics.median(r['seconds'] for r in runs):6.2f} s wall "
              f"{statistics.median(r['cpu_seconds'] for r in runs):6.2f} s CPU")


def run_case(case: str, repeat: int, timeout: float) -> bool:
    import shutil

    folder = data_folder(case)
    work = CACHE / f"work-{case}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    runs: dict[str, list[dict]] = {"alertops": [], "astropy": []}
    for i in range(repeat):
        # Alternate which side goes first, so a load change favours neither.
        order = ("alertops", "astropy") if i % 2 == 0 else ("astropy", "alertops")
        for side in order:
            run = run_ours(case, folder, work, timeout) if side == "alertops" else run_peer(case, folder, work, timeout)
            runs[side].append(run)
    identical, detail = compare(case, work)
    med = {side: (statistics.median(r["seconds"] for r in rs), statistics.median(r["rss_mib"] for r in rs),
                  statistics.median(r["cpu_seconds"] for r in rs)) for side, rs in runs.items()}
    cfg = CASES[case]
    print(f"\ncase {case}: {cfg['n_src']:,} sources x {cfg['n_cat']:,} catalog rows, radius {cfg['radius']}\"")
    for side, rs in runs.items():
        times = ", ".join(f"{r['seconds']:.2f}" for r in rs)
        print(f"  {side:<9} median {med[side][0]:7.2f} s  CPU {med[side][2]:7.2f} s  peak RSS {med[side][1]:7.0f} MiB"
              f"   (runs: {times} s)")
    print(f"  outputs: {detail}")
    warnings_seen = sorted({line for r in runs["alertops"] for line in r["stderr"].splitlines() if "warning" in line})
    for line in warnings_seen[:4]:
        print(f"  alertops said: {line[:160]}")
    speedup = med["astropy"][0] / med["alertops"][0]
    rss_ratio = med["alertops"][1] / med["astropy"][1]
    print(f"  CPU time ratio (astropy / alertops, less sensitive to the machine's load): "
          f"{med['astropy'][2] / med['alertops'][2]:.2f}")
    print(f"RESULT trainingset_build case={case} speedup_vs_astropy={speedup:.2f} rss_ratio={rss_ratio:.2f} "
          f"identical={'true' if identical else 'false'}", flush=True)
    return identical


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", default="abc", help="which cases to run (default: abc)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each side per case (default 3)")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds allowed per run")
    parser.add_argument("--peer", choices=sorted(CASES), help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.peer:
        peer(args.peer, args.data, args.out)
        return 0
    print(f"trainingset_build benchmark on {platform.node()}: {os.cpu_count()} CPU(s), "
          f"{platform.processor() or platform.machine()}, load average {os.getloadavg()[0]:.1f}", flush=True)
    compile_bytecode()
    startup(max(args.repeat, 3), args.timeout)
    ok = [run_case(case, args.repeat, args.timeout) for case in args.cases]
    return 0 if all(ok) else 1


if __name__ == "__main__":
    sys.exit(main())
