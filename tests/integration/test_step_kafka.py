"""The step runtime against the real Kafka, PostgreSQL and FerretDB of the test environment.

Each promise of the runtime is checked with the runtime running as a real subprocess:
at-least-once with idempotent replay, dead letters with headers, kill -9 then restart equal to an
uninterrupted run, SIGTERM without a partial commit, metrics and health endpoints.
"""
from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
from step_support import (
    ALERTS,
    N_CLASSES,
    Runtime,
    committed_total,
    consume_all,
    consume_to_end,
    create_topic,
    drop_mongo,
    drop_table,
    mongo_docs,
    pg_count,
    pg_rows,
    produce,
    step_manifest,
    step_names,
    unique,
    wait_until,
)

from step_runtime.step.synthetic import synthetic_alerts

pytestmark = pytest.mark.timeout(600)


def processes_running(needle: str) -> list[int]:
    """Pids whose command line contains `needle` (a test's unique manifest path)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if needle.encode() in (proc / "cmdline").read_bytes():
                    pids.append(int(proc.name))
            except OSError:
                continue
    return pids


def bad_messages() -> list[tuple[bytes, bytes]]:
    """The corrupt real packet, an alert with |dec| > 90, one with a NaN magnitude, one without candidate."""
    from step_runtime.step.synthetic import templates

    t = templates(ALERTS)[0]
    out = [(b"corrupt", (ALERTS / "corrupt-87704463155000.avro").read_bytes())]
    for name, change in [("dec", {"dec": 95.0}), ("nan", {"magpsf": float("nan")})]:
        rec = dict(t.record)
        rec["candidate"] = {**rec["candidate"], **change}
        rec["objectId"] = f"ZTF99bad{name}"
        out.append((name.encode(), t.encode(rec)))
    out.append((b"nocand", json.dumps({"objectId": "x"}).encode()))  # not even Avro
    return out


def produce_alerts(bootstrap: str, topic: str, n: int, with_bad: bool = True) -> tuple[list, list]:
    """n synthesised alerts keyed by objectId, then (with_bad) the bad messages; both lists."""
    alerts = list(synthetic_alerts(ALERTS, n))
    bad = bad_messages() if with_bad else []
    produce(bootstrap, topic, [(oid.encode(), pkt) for oid, _, pkt in alerts] + bad)
    return alerts, bad


@pytest.fixture
def step_env(tmp_path: Path, kafka_bootstrap: str, postgres_dsn: str, mongodb_uri: str):
    """A fresh topic, dead-letter topic, table and Mongo database; dropped afterwards."""
    with step_names(kafka_bootstrap, postgres_dsn, mongodb_uri, "prob") as env:
        yield env


def test_at_least_once_dead_letters_metrics_and_idempotent_replay(tmp_path: Path, step_env, kafka_bootstrap: str,
                                                                 postgres_dsn: str, mongodb_uri: str) -> None:
    names, runtimes = step_env
    n = 120
    alerts, bad = produce_alerts(kafka_bootstrap, names["topic"], n)
    manifest = step_manifest(tmp_path / "step.yaml", bootstrap=kafka_bootstrap, topic=names["topic"],
                             group=names["group"], table=names["table"], mongo_db=names["mongo_db"],
                             dead_topic=names["dead_topic"], batch_size=25)
    rt = Runtime(manifest, postgres_dsn, mongodb_uri, tmp_path / "run1.log")
    runtimes.append(rt)
    total = n + len(bad)
    wait_until(lambda: committed_total(kafka_bootstrap, names["group"], names["topic"]) == total, 120,
               "every input offset committed")
    rows = pg_rows(postgres_dsn, names["table"])
    assert len(rows) == n * N_CLASSES
    assert {r[0] for r in rows} == {oid for oid, _, _ in alerts}
    assert all(r[2] == "demo" and r[3] == "0.1.0" for r in rows)
    assert sorted(r[5] for r in rows if r[0] == alerts[0][0]) == list(range(1, N_CLASSES + 1))
    docs = mongo_docs(mongodb_uri, names["mongo_db"])
    assert len(docs) == n and all(len(d["probabilities"]) == N_CLASSES for d in docs)

    dead = consume_all(kafka_bootstrap, names["dead_topic"], len(bad))
    assert len(dead) == len(bad)
    by_key = {m.key(): dict((k, v.decode()) for k, v in m.headers()) for m in dead}
    assert by_key[b"corrupt"]["alertops.stage"] == "decode"
    assert "candidate.dec" in by_key[b"dec"]["alertops.error"]
    assert "candidate.magpsf" in by_key[b"nan"]["alertops.error"]
    assert by_key[b"nocand"]["alertops.stage"] == "decode"
    for h in by_key.values():
        assert h["alertops.source.topic"] == names["topic"]
        assert int(h["alertops.source.partition"]) in (0, 1) and int(h["alertops.source.offset"]) >= 0
    assert {m.value() for m in dead} == {v for _, v in bad}  # original bytes kept

    assert rt.get("/healthz")[0] == 200
    assert rt.get("/readyz") == (200, "ready\n")
    assert rt.metric("alertops_step_messages_in_total") == total
    assert rt.metric("alertops_step_messages_out_total") == n
    assert rt.metric("alertops_step_dead_letters_total") == len(bad)
    assert rt.metric("alertops_step_batch_duration_seconds_count") >= 1
    # lag is refreshed every 2 s; once caught up it reads 0 for the assigned partitions
    wait_until(lambda: 'alertops_step_consumer_lag{' in rt.get("/metrics")[1], 30, "consumer lag gauge")
    lag_lines = [x for x in rt.get("/metrics")[1].splitlines() if x.startswith("alertops_step_consumer_lag{")]
    assert lag_lines and all(x.endswith(" 0.0") for x in lag_lines)
    rt.signal(signal.SIGTERM)
    assert rt.wait(30) == 0
    for line in rt.logs().splitlines():
        json.loads(line)  # every log line is JSON

    # Replay everything from the start with a new group: the databases must not change.
    before_pg, before_mongo = pg_rows(postgres_dsn, names["table"]), mongo_docs(mongodb_uri, names["mongo_db"])
    manifest2 = step_manifest(tmp_path / "replay.yaml", bootstrap=kafka_bootstrap, topic=names["topic"],
                              group=names["group"] + "-replay", table=names["table"], mongo_db=names["mongo_db"],
                              dead_topic=names["dead_topic"], batch_size=40)
    rt2 = Runtime(manifest2, postgres_dsn, mongodb_uri, tmp_path / "run2.log")
    runtimes.append(rt2)
    wait_until(lambda: committed_total(kafka_bootstrap, names["group"] + "-replay", names["topic"]) == total, 120,
               "replay committed")
    rt2.signal(signal.SIGTERM)
    assert rt2.wait(30) == 0
    assert pg_rows(postgres_dsn, names["table"]) == before_pg
    key = lambda d: d["oid"]  # noqa: E731
    assert sorted(mongo_docs(mongodb_uri, names["mongo_db"]), key=key) == sorted(before_mongo, key=key)


def test_kill_9_then_restart_equals_an_uninterrupted_run(tmp_path: Path, step_env, kafka_bootstrap: str,
                                                         postgres_dsn: str, mongodb_uri: str) -> None:
    names, runtimes = step_env
    n = 400
    alerts, bad = produce_alerts(kafka_bootstrap, names["topic"], n)
    total = n + len(bad)

    # Reference: an uninterrupted run into its own table and database.
    ref_table, ref_db, ref_group = names["table"] + "_ref", names["mongo_db"] + "_ref", names["group"] + "-ref"
    ref = Runtime(step_manifest(tmp_path / "ref.yaml", bootstrap=kafka_bootstrap, topic=names["topic"],
                                group=ref_group, table=ref_table, mongo_db=ref_db,
                                dead_topic=names["dead_topic"]), postgres_dsn, mongodb_uri, tmp_path / "ref.log")
    runtimes.append(ref)
    try:
        wait_until(lambda: committed_total(kafka_bootstrap, ref_group, names["topic"]) == total, 180, "reference run")
        ref.stop()
        expected_pg = pg_rows(postgres_dsn, ref_table)
        expected_mongo = sorted(mongo_docs(mongodb_uri, ref_db), key=lambda d: d["oid"])
    finally:
        drop_table(postgres_dsn, ref_table)
        drop_mongo(mongodb_uri, ref_db)
    assert len(expected_pg) == n * N_CLASSES

    # This run decodes in worker processes: killing the step must not leave them behind.
    manifest = step_manifest(tmp_path / "step.yaml", bootstrap=kafka_bootstrap, topic=names["topic"],
                             group=names["group"], table=names["table"], mongo_db=names["mongo_db"],
                             dead_topic=names["dead_topic"], batch_size=10, decode_workers=2,
                             # the restarted run gets the killed one's partitions after 6 s, not 45 s
                             source_extra={"config": {"session.timeout.ms": "6000", "heartbeat.interval.ms": "2000"}})
    first = Runtime(manifest, postgres_dsn, mongodb_uri, tmp_path / "first.log")
    runtimes.append(first)
    wait_until(lambda: pg_count(postgres_dsn, names["table"]) >= 60 * N_CLASSES, 120, "some rows written")
    first.signal(signal.SIGKILL)
    first.wait(10)
    wait_until(lambda: not processes_running(str(manifest)), 30, "decode workers gone after kill -9")
    written = pg_count(postgres_dsn, names["table"])
    assert written < n * N_CLASSES, "the kill came too late to interrupt anything"
    second = Runtime(manifest, postgres_dsn, mongodb_uri, tmp_path / "second.log")
    runtimes.append(second)
    wait_until(lambda: committed_total(kafka_bootstrap, names["group"], names["topic"]) == total, 180,
               "restarted run committed every offset")
    second.signal(signal.SIGTERM)
    assert second.wait(30) == 0
    assert pg_rows(postgres_dsn, names["table"]) == expected_pg  # same rows, no duplicates (primary key)
    assert sorted(mongo_docs(mongodb_uri, names["mongo_db"]), key=lambda d: d["oid"]) == expected_mongo
    # every bad message reached the dead-letter topic (possibly twice: at-least-once)
    dead = consume_to_end(kafka_bootstrap, names["dead_topic"])
    assert {m.key() for m in dead} == {k for k, _ in bad}


def test_sigterm_commits_no_partial_batch_and_exits_in_time(tmp_path: Path, step_env, kafka_bootstrap: str,
                                                            postgres_dsn: str, mongodb_uri: str) -> None:
    names, runtimes = step_env
    n = 400
    alerts, _ = produce_alerts(kafka_bootstrap, names["topic"], n, with_bad=False)
    manifest = step_manifest(tmp_path / "step.yaml", bootstrap=kafka_bootstrap, topic=names["topic"],
                             group=names["group"], table=names["table"], mongo_db=names["mongo_db"],
                             dead_topic=names["dead_topic"], batch_size=10)
    rt = Runtime(manifest, postgres_dsn, mongodb_uri, tmp_path / "run.log")
    runtimes.append(rt)
    wait_until(lambda: pg_count(postgres_dsn, names["table"]) >= 50 * N_CLASSES, 120, "some rows written")
    rt.signal(signal.SIGTERM)
    assert rt.wait(30) == 0  # within a 30 s grace period
    committed = committed_total(kafka_bootstrap, names["group"], names["topic"])
    written = {r[0] for r in pg_rows(postgres_dsn, names["table"])}
    assert 0 < committed < n, "SIGTERM should have come mid-stream"
    # Everything committed was written (no partial batch committed); what was not committed
    # is redone by the next run.
    assert committed <= len(written)
    logs = rt.logs()
    assert '"stop requested"' in logs and '"signal": "SIGTERM"' in logs
    rt2 = Runtime(manifest, postgres_dsn, mongodb_uri, tmp_path / "run2.log")
    runtimes.append(rt2)
    wait_until(lambda: committed_total(kafka_bootstrap, names["group"], names["topic"]) == n, 180, "resumed run")
    rt2.signal(signal.SIGTERM)
    assert rt2.wait(30) == 0
    assert pg_count(postgres_dsn, names["table"]) == n * N_CLASSES


def test_kafka_sink_confirms_delivery_and_postgres_dead_letter_table(tmp_path: Path, kafka_bootstrap: str,
                                                                     postgres_dsn: str) -> None:
    """Real packets from files -> model -> a Kafka topic keyed by oid; bad ones -> a dead-letter table."""
    import subprocess
    import sys

    import psycopg2
    import yaml
    from step_support import DEMO, ROOT

    out_topic, dead_table = unique("step-out"), unique("dead")
    create_topic(kafka_bootstrap, out_topic, partitions=1)
    doc = yaml.safe_load(DEMO.read_text())
    spec = doc["spec"]
    spec["source"]["files"]["path"] = str(ALERTS)
    spec["processor"]["model"]["path"] = str(ROOT / "examples/models/demo_classifier.joblib")
    spec["sinks"] = [{"name": "out", "kafka": {"bootstrapServers": kafka_bootstrap, "topic": out_topic}}]
    spec["deadLetter"] = {"postgres": {"dsn": {"name": "pg", "key": "dsn"}, "table": dead_table}}
    manifest = tmp_path / "step.yaml"
    manifest.write_text(yaml.safe_dump(doc))
    try:
        res = subprocess.run([sys.executable, "-m", "step_runtime", "run", str(manifest), "--http-port", "0"],
                             capture_output=True, text=True, timeout=180, cwd=ROOT,
                             env={**__import__("os").environ, "ALERTOPS_SECRET_PG_DSN": postgres_dsn})
        assert res.returncode == 0, res.stderr[-3000:]
        msgs = consume_all(kafka_bootstrap, out_topic, 9)
        assert len(msgs) == 9
        bodies = [json.loads(m.value()) for m in msgs]
        assert [m.key().decode() for m in msgs] == [b["oid"] for b in bodies]
        assert all(len(b["probabilities"]) == N_CLASSES for b in bodies)
        conn = psycopg2.connect(postgres_dsn, connect_timeout=5)
        with conn, conn.cursor() as cur:
            cur.execute(f'SELECT stage, source_offset, length(message_value) FROM "{dead_table}" ORDER BY source_offset')
            rows = cur.fetchall()
        conn.close()
        sizes = {p.name: p.stat().st_size for p in ALERTS.glob("*.avro")}
        assert [(r[0], r[2]) for r in rows] == [("validate", sizes["87704463155001-proto.avro"]),
                                                ("decode", sizes["corrupt-87704463155000.avro"])]
    finally:
        drop_table(postgres_dsn, dead_table)
