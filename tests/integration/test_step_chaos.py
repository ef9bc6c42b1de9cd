"""Chaos on the real services: the Kafka broker and the MongoDB-wire server restarted under a running step.

Each test runs its own instance of the service it restarts (the test environment's component
script, with a private state folder and free ports), so the shared services other tests use are
never touched. Promises checked: nothing lost, nothing duplicated beyond at-least-once's
redelivery of the batch that was not committed, and the step never exits.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import pytest
from step_support import (
    ALERTS,
    N_CLASSES,
    ROOT,
    Runtime,
    committed_total,
    consume_to_end,
    create_topic,
    drop_mongo,
    drop_table,
    mongo_docs,
    pg_rows,
    produce,
    step_manifest,
    unique,
    wait_until,
)

from step_runtime.step.synthetic import synthetic_alerts

pytestmark = [pytest.mark.timeout(900), pytest.mark.slow]
TESTENV = ROOT / "scripts" / "testenv.d"


def free_ports(n: int) -> list[int]:
    import socket

    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class PrivateService:
    """One test-environment component run from its own state folder on its own ports."""

    def __init__(self, component: str, env: dict[str, str]) -> None:
        # Under /tmp and world-readable: the PostgreSQL backend of FerretDB runs as 'postgres'.
        self.run = Path(tempfile.mkdtemp(prefix=f"alertops-chaos-{component}-", dir="/tmp"))
        self.run.chmod(0o755)
        self.component = component
        self.env = {**os.environ, "TESTENV_RUN": str(self.run), **env}

    def call(self, verb: str, timeout: float = 240) -> str:
        res = subprocess.run([str(TESTENV / self.component), verb], env=self.env, capture_output=True, text=True,
                             timeout=timeout)
        assert res.returncode == 0, f"{self.component} {verb} failed: {res.stderr[-2000:]}"
        return res.stdout

    def pid(self) -> int:
        return int((self.run / self.component / f"{self.component}.pid").read_text())

    def close(self) -> None:
        try:
            self.call("down")
        finally:
            shutil.rmtree(self.run, ignore_errors=True)


@pytest.fixture
def private_kafka(kafka_bootstrap: str):  # the shared broker's fixture: its jars are fetched and it is up
    port, controller = free_ports(2)
    kafka = PrivateService("kafka", {"ALERTOPS_KAFKA_PORT": str(port), "ALERTOPS_KAFKA_CONTROLLER_PORT": str(controller)})
    kafka.call("up")
    kafka.bootstrap = f"127.0.0.1:{port}"  # type: ignore[attr-defined]
    yield kafka
    kafka.close()


@pytest.fixture
def private_mongodb(mongodb_uri: str):  # the shared server's fixture: FerretDB is built and up
    port, pg_port = free_ports(2)
    ferret = PrivateService("ferretdb", {"ALERTOPS_MONGODB_PORT": str(port), "ALERTOPS_FERRETDB_PG_PORT": str(pg_port)})
    ferret.call("up")
    ferret.uri = f"mongodb://127.0.0.1:{port}/"  # type: ignore[attr-defined]
    yield ferret
    ferret.close()


def test_a_kafka_broker_restart_mid_stream_loses_nothing(tmp_path: Path, private_kafka, postgres_dsn: str,
                                                       mongodb_uri: str) -> None:
    bootstrap = private_kafka.bootstrap
    topic, dead, out = unique("chaos-in"), unique("chaos-dead"), unique("chaos-out")
    table, group = unique("chaos"), unique("grp")
    create_topic(bootstrap, topic)
    create_topic(bootstrap, dead, partitions=1)
    create_topic(bootstrap, out, partitions=1)
    alerts = list(synthetic_alerts(ALERTS, 500))
    produce(bootstrap, topic, [(oid.encode(), pkt) for oid, _, pkt in alerts])
    batch = 25
    manifest = step_manifest(tmp_path / "step.yaml", bootstrap=bootstrap, topic=topic, group=group, table=table,
                             mongo_db="unused", dead_topic=dead, batch_size=batch, sinks=("pg",))
    import yaml

    doc = yaml.safe_load(manifest.read_text())
    doc["spec"]["sinks"].append({"name": "out", "kafka": {"bootstrapServers": bootstrap, "topic": out}})
    manifest.write_text(yaml.safe_dump(doc))
    rt = Runtime(manifest, postgres_dsn, mongodb_uri, tmp_path / "run.log")
    try:
        wait_until(lambda: committed_total(bootstrap, group, topic) >= 100, 180, "a fifth of the alerts committed")
        private_kafka.call("down")
        assert rt.proc.poll() is None
        private_kafka.call("up")
        wait_until(lambda: committed_total(bootstrap, group, topic) == len(alerts), 300,
                   "every alert committed after the broker came back")
        rows = pg_rows(postgres_dsn, table)
        assert len(rows) == len(alerts) * N_CLASSES  # upserts: a replay adds nothing
        assert {r[0] for r in rows} == {oid for oid, _, _ in alerts}
        produced = consume_to_end(bootstrap, out)
        keys = [m.key() for m in produced]
        assert set(keys) == {oid.encode() for oid, _, _ in alerts}  # nothing lost downstream
        assert len(keys) - len(set(keys)) <= 2 * batch  # at most the batches in flight, redelivered
        assert rt.proc.poll() is None
    finally:
        rt.stop()
        drop_table(postgres_dsn, table)


def test_a_mongodb_wire_server_restart_mid_stream_loses_nothing(tmp_path: Path, private_mongodb, kafka_bootstrap: str,
                                                               postgres_dsn: str) -> None:
    topic, dead, table, mongo_db, group = (unique("chaos-in"), unique("chaos-dead"), unique("chaos"),
                                           unique("chaos"), unique("grp"))
    create_topic(kafka_bootstrap, topic)
    create_topic(kafka_bootstrap, dead, partitions=1)
    alerts = list(synthetic_alerts(ALERTS, 200))
    produce(kafka_bootstrap, topic, [(oid.encode(), pkt) for oid, _, pkt in alerts])
    manifest = step_manifest(tmp_path / "step.yaml", bootstrap=kafka_bootstrap, topic=topic, group=group, table=table,
                             mongo_db=mongo_db, dead_topic=dead, batch_size=20, sinks=("pg", "mongo"))
    rt = Runtime(manifest, postgres_dsn, private_mongodb.uri, tmp_path / "run.log")
    try:
        wait_until(lambda: committed_total(kafka_bootstrap, group, topic) >= 40, 240, "some alerts committed")
        pid = private_mongodb.pid()
        os.kill(pid, signal.SIGTERM)  # the wire server only; its PostgreSQL backend stays
        wait_until(lambda: not Path(f"/proc/{pid}").exists(), 60, "FerretDB stopped")
        private_mongodb.call("up")
        wait_until(lambda: committed_total(kafka_bootstrap, group, topic) == len(alerts), 600,
                   "every alert committed after FerretDB came back")
        docs = mongo_docs(private_mongodb.uri, mongo_db)
        assert sorted(d["oid"] for d in docs) == sorted(oid for oid, _, _ in alerts)  # one document each
        assert len(pg_rows(postgres_dsn, table)) == len(alerts) * N_CLASSES
        assert rt.proc.poll() is None
    finally:
        rt.stop()
        drop_table(postgres_dsn, table)
        drop_mongo(private_mongodb.uri, mongo_db)
