"""Helpers of the step-runtime integration tests: topics, manifests, the runtime as a subprocess.

Every wait polls a condition with a deadline; nothing sleeps to synchronise.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

import yaml

ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "examples" / "data" / "alerts"
MODEL = ROOT / "examples" / "models" / "demo_classifier.joblib"
DEMO = ROOT / "examples" / "step-demo.yaml"
N_CLASSES = 5


def wait_until(cond: Callable[[], Any], timeout: float, what: str, interval: float = 0.2) -> Any:
    """Poll `cond` until it returns a truthy value; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = cond()
        if last:
            return last
        time.sleep(interval)  # polling interval, not synchronisation: the deadline bounds it
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last value: {last!r})")


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def create_topic(bootstrap: str, topic: str, partitions: int = 2) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)],
                                  operation_timeout=30, request_timeout=30)
    futures[topic].result(timeout=60)


def produce(bootstrap: str, topic: str, messages: list[tuple[bytes | None, bytes]]) -> None:
    """Produce (key, value) pairs and wait until every one is acknowledged."""
    from confluent_kafka import Producer

    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5,
                  "message.max.bytes": 10_000_000})
    errors: list[str] = []
    for key, value in messages:
        while True:
            try:
                p.produce(topic, value=value, key=key,
                          on_delivery=lambda err, _m: errors.append(str(err)) if err else None)
                break
            except BufferError:
                p.poll(0.5)
    assert p.flush(60) == 0, "messages still unacknowledged after 60 s"
    assert not errors, errors


def consume_all(bootstrap: str, topic: str, expected: int, timeout: float = 60) -> list[Any]:
    """Read a topic from the start until `expected` messages arrived (deadline `timeout`)."""
    from confluent_kafka import Consumer

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": unique("reader"), "auto.offset.reset": "earliest",
                  "enable.auto.commit": False})
    c.subscribe([topic])
    out: list[Any] = []
    deadline = time.monotonic() + timeout
    try:
        while len(out) < expected and time.monotonic() < deadline:
            for m in c.consume(num_messages=500, timeout=0.5):
                if m.error() is None:
                    out.append(m)
    finally:
        c.close()
    return out


def consume_to_end(bootstrap: str, topic: str, timeout: float = 60) -> list[Any]:
    """Every message the topic holds now: read from the start of each partition up to the high
    watermark taken at the call (deadline `timeout`). For a topic whose writers are done (their
    deliveries confirmed), where the count of messages is not known in advance: at-least-once
    redeliveries, dead letters possibly written twice."""
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": unique("reader"), "enable.auto.commit": False})
    deadline = time.monotonic() + timeout
    out: list[Any] = []
    try:
        meta = c.list_topics(topic, timeout=timeout)
        ends = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout)[1]
                for p in meta.topics[topic].partitions}
        left = {p: end for p, end in ends.items() if end > 0}
        c.assign([TopicPartition(topic, p, 0) for p in left])
        while left:
            if time.monotonic() > deadline:
                raise AssertionError(f"{topic}: read {len(out)} messages, partitions {sorted(left)} not to "
                                     f"their end ({ends}) within {timeout}s")
            for m in c.consume(num_messages=500, timeout=0.5):
                if m.error() is None:
                    out.append(m)
                    if m.offset() + 1 >= left.get(m.partition(), 0):
                        left.pop(m.partition(), None)
    finally:
        c.close()
    return out


def committed_total(bootstrap: str, group: str, topic: str, partitions: int = 2) -> int:
    """Sum over partitions of the group's committed offsets (unset counts 0).

    -1 while the broker cannot answer yet (its group coordinator is still loading, as after a
    start or a restart): callers wait on this, so "not yet" must not end the wait.
    """
    from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        tps = c.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
    except KafkaException as exc:
        if exc.args[0].code() in (KafkaError.NOT_COORDINATOR, KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
                                  KafkaError.COORDINATOR_NOT_AVAILABLE, KafkaError._TIMED_OUT):
            return -1
        raise
    finally:
        c.close()
    return sum(max(tp.offset, 0) for tp in tps)


def step_manifest(path: Path, *, bootstrap: str, topic: str, group: str, table: str, mongo_db: str,
                  dead_topic: str, batch_size: int = 50, backoff_ms: int = 200,
                  sinks: tuple[str, ...] = ("pg", "mongo"), decode_workers: int = 0, fmt: str = "ztf-avro",
                  source_extra: dict[str, Any] | None = None) -> Path:
    """A PipelineStep: Kafka alert packets (ZTF by default) -> demo model -> PostgreSQL probability +
    MongoDB; DLQ topic."""
    sha = yaml.safe_load(DEMO.read_text())["spec"]["processor"]["model"]["sha256"]
    doc = {
        "apiVersion": "alertops.io/v1alpha1", "kind": "PipelineStep", "metadata": {"name": "it-step"},
        "spec": {
            "source": {"kafka": {"bootstrapServers": bootstrap, "topics": [topic], "groupId": group,
                                 "format": fmt, "batchSize": batch_size, "batchTimeoutMs": 300,
                                 "decodeWorkers": decode_workers, **(source_extra or {})}},
            "processor": {"model": {"path": str(MODEL), "sha256": sha, "classifierName": "demo",
                                    "classifierVersion": "0.1.0"}},
            "sinks": [s for s in [
                {"name": "pg", "postgres": {"dsn": {"name": "pg", "key": "dsn"}, "table": table,
                                            "mode": "probability", "createTable": True}},
                {"name": "mongo", "mongodb": {"uri": {"name": "mongo", "key": "uri"}, "database": mongo_db,
                                              "collection": "probabilities",
                                              "key": ["oid", "classifier_name", "classifier_version"]}},
            ] if s["name"] in sinks],
            "deadLetter": {"kafka": {"topic": dead_topic}},
            "retry": {"initialBackoffMs": backoff_ms, "maxBackoffMs": 2000},
        },
    }
    path.write_text(yaml.safe_dump(doc))
    return path


class Runtime:
    """`alertops run` as a real subprocess, with its HTTP port and its stderr in a file."""

    def __init__(self, manifest: Path, pg_dsn: str, mongo_uri: str, log: Path, *extra: str,
                 env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        env = {**os.environ, "ALERTOPS_SECRET_PG_DSN": pg_dsn, "ALERTOPS_SECRET_MONGO_URI": mongo_uri, **(env or {})}
        self.log = log
        self.log_fh = open(log, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "step_runtime", "run", str(manifest), "--http-port", str(self.port), *extra],
            stdout=self.log_fh, stderr=self.log_fh, env=env, cwd=ROOT)

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=2) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()
        except OSError:
            return 0, ""

    def metric(self, name: str) -> float:
        _, text = self.get("/metrics")
        total = 0.0
        for line in text.splitlines():
            if line.startswith(name + "{") or line.startswith(name + " "):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            self.log_fh.close()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.log_fh.close()

    def logs(self) -> str:
        return self.log.read_text(errors="replace")


def pg_rows(dsn: str, table: str) -> list[tuple]:
    import psycopg2

    with psycopg2.connect(dsn, connect_timeout=5) as conn, conn.cursor() as cur:
        cur.execute("SELECT to_regclass(%s)", (table,))
        if cur.fetchone()[0] is None:
            return []
        cur.execute(f'SELECT oid, class_name, classifier_name, classifier_version, probability, ranking '
                    f'FROM "{table}" ORDER BY 1, 2')
        rows = cur.fetchall()
    conn.close()
    return rows


def pg_count(dsn: str, table: str) -> int:
    try:
        return len(pg_rows(dsn, table))
    except Exception:
        return -1


def drop_table(dsn: str, table: str) -> None:
    import psycopg2

    conn = psycopg2.connect(dsn, connect_timeout=5)
    with conn, conn.cursor() as cur:
        cur.execute(f'DROP TABLE IF EXISTS "{table}"')
    conn.close()


def mongo_docs(uri: str, db: str) -> list[dict]:
    import pymongo

    client = pymongo.MongoClient(uri, serverSelectionTimeoutMS=5000)
    try:
        return list(client[db]["probabilities"].find({}, {"_id": 0}))
    finally:
        client.close()


def drop_mongo(uri: str, db: str) -> None:
    import pymongo

    client = pymongo.MongoClient(uri, serverSelectionTimeoutMS=5000)
    try:
        client.drop_database(db)
    finally:
        client.close()


def pg_columns(dsn: str, table: str, columns: str) -> list[tuple]:
    """`SELECT <columns>` of every row of `table`, ordered; [] before the table exists."""
    import psycopg2

    conn = psycopg2.connect(dsn, connect_timeout=5)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT to_regclass(%s)", (table,))
            if cur.fetchone()[0] is None:
                return []
            cur.execute(f'SELECT {columns} FROM "{table}" ORDER BY 1')
            return cur.fetchall()
    finally:
        conn.close()


@contextmanager
def step_names(kafka_bootstrap: str, postgres_dsn: str, mongodb_uri: str | None = None,
               prefix: str = "step") -> Iterator[tuple[dict[str, str], list["Runtime"]]]:
    """A fresh topic (2 partitions), dead-letter topic, table, group (and Mongo database); the
    runtimes the test starts are stopped and the table and database dropped afterwards."""
    names = {"topic": unique(f"{prefix}-in"), "dead_topic": unique(f"{prefix}-dead"), "table": unique(prefix),
             "mongo_db": unique(prefix), "group": unique("grp")}
    create_topic(kafka_bootstrap, names["topic"])
    create_topic(kafka_bootstrap, names["dead_topic"], partitions=1)
    runtimes: list[Runtime] = []
    try:
        yield names, runtimes
    finally:
        for r in runtimes:
            r.stop()
        drop_table(postgres_dsn, names["table"])
        if mongodb_uri is not None:
            drop_mongo(mongodb_uri, names["mongo_db"])
