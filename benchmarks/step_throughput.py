"""Throughput of the step runtime against a peer, on the real test Kafka/PostgreSQL/FerretDB.

    eval "$(scripts/testenv env postgres kafka ferretdb)"
    ~/.cache/alertops/venv/bin/python benchmarks/step_throughput.py [--survey ztf|lsst] [--alerts 50000]

1. Fills a one-partition topic with --alerts alerts: ZTF alerts synthesised from the real
   packets (new candid/objectId, small ra/dec offsets, cutouts kept), or Rubin v11.1 alerts
   (step/synthetic.py LsstAlerts: every field filled, 30 previous diaSources, 30 forced sources,
   the three real 34,560-byte cutouts of a Rubin alert) in the Confluent wire format.
2. Runs `alertops run` (features -> model -> PostgreSQL probability table [+ MongoDB]) over it
   and reads its per-batch "batch committed" logs: throughput from the first poll to the last
   commit, p50/p99 batch latency.
3. Runs the same work on the peer, on the same topic: for ZTF, APF 2.5.2
   (benchmarks/step_apf_baseline.py in its own venv under ~/.cache/alertops/apf, installed as
   the issue says when missing); for LSST, a plain step decoding whole packets with fastavro
   (benchmarks/step_plain_baseline.py).
4. Latency (--latency-rate, default 1000 alerts/s, 0 to skip): the step runs on an empty topic
   while an open-loop producer in this process offers that rate for --latency-seconds; each
   alert's latency is from its Kafka timestamp (set when produced) to the moment its batch was
   accepted by every sink (`written_at` of the step's batch log, matched by offset): p50/p99.
5. ZTF: measures the crossmatch processor alone against a 1e6-row catalog.
Last line: RESULT step survey=<s> alerts_per_s=<n> p99_batch_ms=<m> ratio_vs_<peer>=<r>
           p50_latency_ms=<a> p99_latency_ms=<b> latency_rate=<offered alerts/s>
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "integration"))
APF_HOME = Path.home() / ".cache" / "alertops" / "apf"
APF_PY = APF_HOME / "venv" / "bin" / "python"
ALERTS = ROOT / "examples" / "data" / "alerts"


def ensure_apf() -> None:
    """apf-base 2.5.2 in its own venv, installed exactly as the issue says (its pins fail on 3.11)."""
    if APF_PY.exists() and subprocess.run([str(APF_PY), "-c", "import apf, sklearn, psycopg2, pymongo, pydantic"],
                                          capture_output=True, timeout=120).returncode == 0:
        return
    APF_HOME.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "venv", str(APF_HOME / "venv")], check=True, timeout=300)
    pip = [str(APF_HOME / "venv" / "bin" / "pip"), "install", "-q"]
    subprocess.run([*pip, "--no-deps", "apf-base==2.5.2"], check=True, timeout=600)
    subprocess.run([*pip, "fastavro", "confluent-kafka", "pandas", "click", "jinja2", "prometheus-client",
                    "boto3", "pyroscope-io"], check=True, timeout=900)
    # what the shared step code needs (same versions as the project venv where it matters)
    import sklearn
    subprocess.run([*pip, "numpy", f"scikit-learn=={sklearn.__version__}", "joblib", "psycopg2-binary",
                    "pymongo", "pydantic", "pyyaml"], check=True, timeout=900)


LSST = ROOT / "examples" / "data" / "lsst"


def synthetic(survey: str, n: int):
    """n alerts of the survey."""
    from step_runtime.step.synthetic import LsstAlerts, real_cutouts, synthetic_alerts

    if survey == "ztf":
        return synthetic_alerts(ALERTS, n)
    alerts = LsstAlerts(LSST / "schema", cutouts=real_cutouts(LSST / "alerts" / "boom_25409136044802067.avro",
                                                              LSST / "schema"))
    return (alerts.packet(i) for i in range(n))


def fill_topic(bootstrap: str, topic: str, n: int, survey: str) -> None:
    from step_support import create_topic, produce

    create_topic(bootstrap, topic, partitions=1)
    t0 = time.monotonic()
    chunk: list[tuple[bytes, bytes]] = []
    for oid, _candid, packet in synthetic(survey, n):
        chunk.append((oid.encode(), packet))
        if len(chunk) == 2000:
            produce(bootstrap, topic, chunk)
            chunk = []
    if chunk:
        produce(bootstrap, topic, chunk)
    print(f"filled {topic} with {n} alerts in {time.monotonic() - t0:.0f}s", flush=True)


def stats(batches: list[tuple[float, float, int]]) -> tuple[float, float, float, int]:
    """(alerts/s first poll -> last commit, p50 ms, p99 ms, alerts) of (poll_start, commit, n) batches."""
    starts, ends, ns = zip(*batches)
    total = sum(ns)
    lat = np.array([(e - s) * 1000 for s, e, _ in batches])
    return total / (max(ends) - min(starts)), float(np.percentile(lat, 50)), float(np.percentile(lat, 99)), total


def alertops_manifest(workdir: Path, cfg: dict, batch_size: int, topic: str, group: str) -> Path:
    from step_support import step_manifest

    return step_manifest(workdir / f"{topic}.yaml", bootstrap=cfg["bootstrap"], topic=topic,
                         group=group, table=cfg["table"] + "_alertops",
                         mongo_db=cfg["mongo_db"] + "_alertops", dead_topic=cfg["topic"] + "-dead",
                         batch_size=batch_size, sinks=tuple(cfg["sinks"]),
                         decode_workers=cfg["decode_workers"],
                         fmt="lsst-avro" if cfg["survey"] == "lsst" else "ztf-avro",
                         source_extra={"schemaDir": cfg["schema_dir"]} if cfg["survey"] == "lsst" else None)


def batch_log(log: Path) -> list[dict]:
    """The step's "batch committed" entries."""
    out = []
    for line in log.read_text().splitlines():
        if line.startswith("{"):  # an interpreter warning is not a log entry
            entry = json.loads(line)
            if entry.get("msg") == "batch committed":
                out.append(entry)
    return out


def latency_run(workdir: Path, cfg: dict, batch_size: int, rate: float, seconds: float) -> tuple[float, float, int]:
    """(p50 ms, p99 ms, alerts) of the per-alert latency under an open-loop producer offering `rate`/s."""
    import threading

    from confluent_kafka import Producer
    from step_support import committed_total, create_topic, free_port, wait_until

    topic, group = cfg["topic"] + "-live", cfg["group"] + "-live"
    create_topic(cfg["bootstrap"], topic, partitions=1)
    cfg.setdefault("extra_topics", []).append(topic)
    packets = [(oid.encode(), pkt) for oid, _, pkt in synthetic(cfg["survey"], 2000)]
    manifest = alertops_manifest(workdir, cfg, batch_size, topic, group)
    env = {**os.environ, "ALERTOPS_SECRET_PG_DSN": cfg["dsn"], "ALERTOPS_SECRET_MONGO_URI": cfg["mongo"]}
    log = workdir / "alertops-live.log"
    producer = Producer({"bootstrap.servers": cfg["bootstrap"], "linger.ms": 2, "acks": "all",
                         "message.max.bytes": 10_000_000, "queue.buffering.max.kbytes": 1_048_576})
    stamps: dict[int, float] = {}  # offset -> Kafka timestamp (s) of the timed alerts
    lock = threading.Lock()

    def delivered(err: object, msg: object) -> None:
        if err is None:
            with lock:
                stamps[msg.offset()] = msg.timestamp()[1] / 1000.0  # type: ignore[attr-defined]

    with open(log, "w") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "step_runtime", "run", str(manifest), "--http-port",
                                 str(free_port()), "--exit-when-idle", "5"], stderr=fh, stdout=subprocess.DEVNULL,
                                env=env, cwd=ROOT)
        try:
            # warm-up: the consumer joins its group and has committed before the clock starts
            for key, value in packets[:20]:
                producer.produce(topic, value=value, key=key)
            producer.flush(60)
            wait_until(lambda: committed_total(cfg["bootstrap"], group, topic, partitions=1) >= 20, 300,
                       "the live step committing its warm-up alerts")
            n = int(rate * seconds)
            t0 = time.monotonic()
            for i in range(n):  # open loop: on schedule whatever the step does
                ahead = t0 + i / rate - time.monotonic()
                if ahead > 0:
                    time.sleep(ahead)  # pacing the offered load, not synchronisation
                key, value = packets[i % len(packets)]
                while True:
                    try:
                        producer.produce(topic, value=value, key=key, on_delivery=delivered)
                        break
                    except BufferError:
                        producer.poll(0.05)
                producer.poll(0)
            producer.flush(120)
            print(f"offered {n} alerts in {time.monotonic() - t0:.1f}s ({n / (time.monotonic() - t0):,.0f}/s)", flush=True)
            proc.wait(timeout=600)
        finally:
            if proc.poll() is None:
                proc.kill()
    import numpy as np

    latencies = []
    for entry in batch_log(log):
        lo, hi = next(iter(entry["offsets"].values()))
        latencies += [entry["written_at"] - stamps[o] for o in range(lo, hi + 1) if o in stamps]
    ms = np.array(latencies) * 1000
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99)), len(ms)


def children_cpu_seconds() -> float:
    """CPU seconds of this process's finished children and theirs (a step and its decode workers):
    what a step costs per alert, less sensitive to the machine's load than its rate. Kafka's and
    PostgreSQL's own CPU is not in it."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_alertops(workdir: Path, cfg: dict, batch_size: int, timeout: float) -> list[tuple[float, float, int]]:
    """`alertops run` over the topic; its (poll start, commit, messages) per batch from its JSON logs."""
    manifest = alertops_manifest(workdir, cfg, batch_size, cfg["topic"], cfg["group"] + "-alertops")
    env = {**os.environ, "ALERTOPS_SECRET_PG_DSN": cfg["dsn"], "ALERTOPS_SECRET_MONGO_URI": cfg["mongo"]}
    log = workdir / "alertops.log"
    with open(log, "w") as fh:
        subprocess.run([sys.executable, "-m", "step_runtime", "run", str(manifest), "--http-port", "0",
                        "--exit-when-idle", "5"], stderr=fh, stdout=subprocess.DEVNULL, env=env,
                       timeout=timeout, check=True, cwd=ROOT)
    import datetime as dt

    batches = []
    for entry in batch_log(log):
        end = dt.datetime.strptime(entry["ts"], "%Y-%m-%dT%H:%M:%S.%fZ").timestamp()
        batches.append((end - entry["batch_ms"] / 1000, end, entry["messages"]))
    return batches


def run_peer(workdir: Path, cfg: dict, batch_size: int, timeout: float) -> list[tuple[float, float, int]]:
    """The peer step over the same topic (APF 2.5.2 in its own venv for ZTF, the plain fastavro
    step for LSST); its per-batch timings."""
    conf = workdir / "peer.json"
    conf.write_text(json.dumps({**cfg, "group": cfg["group"] + "-apf", "table": cfg["table"] + "_apf",
                                "mongo_db": cfg["mongo_db"] + "_apf", "batch_size": batch_size}))
    env = {**os.environ, "ALERTOPS_SECRET_PG_DSN": cfg["dsn"], "ALERTOPS_SECRET_MONGO_URI": cfg["mongo"]}
    if cfg["survey"] == "ztf":
        cmd = [str(APF_PY), str(ROOT / "benchmarks" / "step_apf_baseline.py"), str(conf)]
    else:
        cmd = [sys.executable, str(ROOT / "benchmarks" / "step_plain_baseline.py"), str(conf)]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout, cwd=workdir)
    (workdir / "peer.log").write_text(res.stderr)
    if res.returncode != 0:
        raise RuntimeError(f"peer step failed ({res.returncode}): {res.stderr[-2000:]}")
    return [(b["poll_start"], b["committed"], b["n"]) for b in map(json.loads, res.stdout.splitlines())]


def crossmatch_alone(n_alerts: int, n_catalog: int = 1_000_000, batch: int = 500) -> float:
    """alerts/s of the crossmatch processor (SkyIndex built once) on decoded ZTF-shaped alerts."""
    from step_runtime.spec.pipelinestep import CrossmatchProcessor
    from step_runtime.step.alert_model import ZTF
    from step_runtime.step.decode import alerts_of
    from step_runtime.step.processors import CrossmatchStep
    from step_runtime.step.synthetic import synthetic_alerts

    rng = np.random.default_rng(1)
    alerts = [alerts_of(p)[0] for _, _, p in synthetic_alerts(ALERTS, 2000)]
    alerts = (alerts * (n_alerts // len(alerts) + 1))[:n_alerts]
    with tempfile.TemporaryDirectory(dir=Path.home() / ".cache" / "alertops") as tmp:
        import pyarrow as pa
        import pyarrow.parquet as pq
        ra = rng.uniform(0, 360, n_catalog)
        dec = np.degrees(np.arcsin(rng.uniform(-1, 1, n_catalog)))
        # plant a catalog object near every 10th alert so matches happen
        cat_ra = np.concatenate([ra, [a["source"]["ra"] for a in alerts[::10]]])
        cat_dec = np.concatenate([dec, [a["source"]["dec"] for a in alerts[::10]]])
        path = Path(tmp) / "cat.parquet"
        pq.write_table(pa.table({"id": np.arange(cat_ra.size), "ra": cat_ra, "dec": cat_dec}), path)
        step = CrossmatchStep(CrossmatchProcessor(catalog=str(path), id_column="id", radius_arcsec=2.0), ROOT, ZTF)
        t0 = time.perf_counter()
        matched = 0
        for i in range(0, len(alerts), batch):
            out, _ = step.process(alerts[i:i + batch])
            matched += sum(o["xm_id"] is not None for o in out)
        elapsed = time.perf_counter() - t0
    print(f"crossmatch: {len(alerts)} alerts vs {cat_ra.size} catalog rows, {matched} matched, "
          f"{len(alerts) / elapsed:,.0f} alerts/s", flush=True)
    return len(alerts) / elapsed


def cleanup(cfg: dict) -> None:
    from step_support import drop_mongo, drop_table

    for suffix in ("_alertops", "_apf"):
        drop_table(cfg["dsn"], cfg["table"] + suffix)
        drop_mongo(cfg["mongo"], cfg["mongo_db"] + suffix)
    from confluent_kafka.admin import AdminClient
    admin = AdminClient({"bootstrap.servers": cfg["bootstrap"]})
    futures = admin.delete_topics([cfg["topic"], cfg["topic"] + "-dead", *cfg.get("extra_topics", [])],
                                  operation_timeout=30)
    # Keep the client and wait: a client dropped at once never sends the request (its futures
    # fail with _DESTROY), and every run then left 3 GB of alerts behind.
    for topic, future in futures.items():
        try:
            future.result(timeout=60)
        except Exception as exc:  # noqa: BLE001 - reported, never fatal at the end of a run
            if "UNKNOWN_TOPIC" not in str(exc):  # the dead-letter topic exists only if used
                print(f"cleanup: topic {topic}: {exc}", file=sys.stderr)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--survey", choices=["ztf", "lsst"], default="ztf")
    parser.add_argument("--alerts", type=int, default=50_000)
    # 1000: the per-batch costs (one predict call per tree, one round trip per sink, one commit)
    # are shared by twice the alerts of 500, for a p99 batch latency near one second.
    parser.add_argument("--batch-size", type=int, default=1000, help="source batchSize of both steps")
    parser.add_argument("--skip-apf", "--skip-peer", dest="skip_peer", action="store_true")
    parser.add_argument("--decode-workers", type=int, default=2, help="alertops source.kafka.decodeWorkers")
    parser.add_argument("--sinks", default="pg,mongo",
                        help="comma-separated subset of pg,mongo (FerretDB 1.24 scans the collection on every "
                             "upsert: see docs/step-runtime.md)")
    parser.add_argument("--timeout", type=float, default=3600, help="per step run, seconds")
    parser.add_argument("--latency-rate", type=float, default=1000.0,
                        help="alerts/s the open-loop producer offers in the latency run (0: no latency run)")
    parser.add_argument("--latency-seconds", type=float, default=30.0)
    args = parser.parse_args()
    missing = [v for v in ("ALERTOPS_KAFKA_BOOTSTRAP", "ALERTOPS_POSTGRES_DSN", "ALERTOPS_MONGODB_URI")
               if not os.environ.get(v)]
    if missing:
        print(f"set {missing}: eval \"$(scripts/testenv env postgres kafka ferretdb)\"", file=sys.stderr)
        return 2
    tag = uuid.uuid4().hex[:8]
    cfg = {"bootstrap": os.environ["ALERTOPS_KAFKA_BOOTSTRAP"], "dsn": os.environ["ALERTOPS_POSTGRES_DSN"],
           "mongo": os.environ["ALERTOPS_MONGODB_URI"], "topic": f"bench-step-{tag}", "group": f"bench-{tag}",
           "table": f"bench_prob_{tag}", "mongo_db": f"bench_{tag}",
           "model": str(ROOT / "examples/models/demo_classifier.joblib"),
           "sinks": [x for x in args.sinks.split(",") if x], "decode_workers": args.decode_workers,
           "survey": args.survey, "schema_dir": str(LSST / "schema")}
    import yaml
    cfg["sha256"] = yaml.safe_load((ROOT / "examples/step-demo.yaml").read_text())["spec"]["processor"]["model"]["sha256"]
    if args.survey == "lsst" and "mongo" in cfg["sinks"]:
        cfg["sinks"].remove("mongo")  # the LSST pipeline: Kafka -> features -> model -> PostgreSQL
    peer = "apf" if args.survey == "ztf" else "plain_fastavro"
    if not args.skip_peer and args.survey == "ztf":
        ensure_apf()
    workdir = Path(tempfile.mkdtemp(prefix="step-bench-", dir=Path.home() / ".cache" / "alertops"))
    try:
        fill_topic(cfg["bootstrap"], cfg["topic"], args.alerts, args.survey)
        cpu = children_cpu_seconds()
        rate, p50, p99, n = stats(run_alertops(workdir, cfg, args.batch_size, args.timeout))
        cpu_us = (children_cpu_seconds() - cpu) / n * 1e6
        print(f"alertops ({args.survey}): {n} alerts, {rate:,.0f} alerts/s, batch p50 {p50:.0f} ms p99 {p99:.0f} ms, "
              f"CPU {cpu_us:,.0f} us/alert", flush=True)
        ratio = float("nan")
        if not args.skip_peer:
            cpu = children_cpu_seconds()
            arate, ap50, ap99, an = stats(run_peer(workdir, cfg, args.batch_size, args.timeout))
            print(f"{peer}: {an} alerts, {arate:,.0f} alerts/s, batch p50 {ap50:.0f} ms p99 {ap99:.0f} ms, "
                  f"CPU {(children_cpu_seconds() - cpu) / an * 1e6:,.0f} us/alert", flush=True)
            ratio = rate / arate
        lat50 = lat99 = float("nan")
        if args.latency_rate > 0:
            lat50, lat99, nlat = latency_run(workdir, cfg, args.batch_size, args.latency_rate, args.latency_seconds)
            print(f"alertops latency at {args.latency_rate:,.0f} alerts/s offered: {nlat} alerts, "
                  f"p50 {lat50:.0f} ms, p99 {lat99:.0f} ms (Kafka timestamp -> written by every sink)", flush=True)
        if args.survey == "ztf":
            crossmatch_alone(50_000)
    finally:
        cleanup(cfg)
        print(f"logs in {workdir}", flush=True)
    print(f"RESULT step survey={args.survey} alerts_per_s={rate:.0f} p99_batch_ms={p99:.0f} ratio_vs_{peer}={ratio:.2f} "
          f"p50_latency_ms={lat50:.0f} p99_latency_ms={lat99:.0f} latency_rate={args.latency_rate:.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
