"""Rubin/LSST alerts through the step runtime, on the real Kafka, PostgreSQL and schema registry.

Every published schema version in one topic (several schema ids in one batch), schemas from a
schema folder or from the test environment's Apicurio Registry (basic auth), a schema first seen
mid-stream with decode workers, a registry that fails (held, retried, nothing lost), bad framing,
unknown ids and truncated packets as dead letters naming the reason, solar-system alerts filtered
and counted, and outputs in the Confluent wire format.
"""
from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from registry_support import SchemaRegistry, register_with_id
from step_support import (
    MODEL,
    N_CLASSES,
    ROOT,
    Runtime,
    committed_total,
    consume_all,
    consume_to_end,
    create_topic,
    pg_columns,
    produce,
    step_names,
    unique,
    wait_until,
)

from step_runtime.step.avro.framing import confluent_frame
from step_runtime.step.avro.schemas import SchemaDirectory
from step_runtime.step.synthetic import LsstAlerts, real_cutouts

pytestmark = pytest.mark.timeout(600)

LSST = ROOT / "examples" / "data" / "lsst"
SCHEMAS = LSST / "schema"
SAMPLES = sorted((LSST / "alerts").glob("pg_lsst.*.avro"))  # ids 700 ... 1101, one alert each
BOOM = sorted((LSST / "alerts").glob("boom_*.avro"))  # real pipeline output, ids 701, 703, 900
SAMPLE_OID = "281323062375219201"


def demo_sha() -> str:
    return yaml.safe_load((ROOT / "examples" / "step-demo.yaml").read_text())["spec"]["processor"]["model"]["sha256"]


def lsst_manifest(path: Path, *, bootstrap: str, topic: str, group: str, table: str, dead_topic: str,
                  source: dict[str, Any], decode_workers: int = 0, sinks: list[dict[str, Any]] | None = None,
                  alert_filter: dict[str, Any] | None = None) -> Path:
    """A PipelineStep: Rubin alerts on Kafka -> demo model -> PostgreSQL probability; DLQ topic."""
    doc = {"apiVersion": "alertops.io/v1alpha1", "kind": "PipelineStep", "metadata": {"name": "it-lsst"},
           "spec": {
               "source": {"kafka": {"bootstrapServers": bootstrap, "topics": [topic], "groupId": group,
                                    "format": "lsst-avro", "batchSize": 40, "batchTimeoutMs": 300,
                                    "decodeWorkers": decode_workers, **source}},
               "processor": {"model": {"path": str(MODEL), "sha256": demo_sha(), "classifierName": "demo",
                                       "classifierVersion": "0.1.0"}},
               "sinks": [{"name": "pg", "postgres": {"dsn": {"name": "pg", "key": "dsn"}, "table": table,
                                                     "mode": "probability", "createTable": True}}] + (sinks or []),
               "deadLetter": {"kafka": {"topic": dead_topic}},
               "retry": {"initialBackoffMs": 100, "maxBackoffMs": 1000},
               **({"alertFilter": alert_filter} if alert_filter else {}),
           }}
    path.write_text(yaml.safe_dump(doc))
    return path


def filtered(rt: Runtime, reason: str) -> float:
    """alertops_step_alerts_filtered_total for one reason, read from the step's /metrics."""
    _, text = rt.get("/metrics")
    prefix = "alertops_step_alerts_filtered_total{"
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(prefix) and f'reason="{reason}"' in line)


def pg_survey_rows(dsn: str, table: str) -> list[tuple[str, str]]:
    return pg_columns(dsn, table, "oid, survey")


@pytest.fixture(scope="module")
def alerts() -> LsstAlerts:
    return LsstAlerts(SCHEMAS, cutouts=real_cutouts(BOOM[0], SCHEMAS))


@pytest.fixture
def lsst_env(kafka_bootstrap: str, postgres_dsn: str):
    with step_names(kafka_bootstrap, postgres_dsn, prefix="lsst") as env:
        yield env


def solar_system_alert(alerts: LsstAlerts) -> bytes:
    """A real solar-system alert's shape: diaObjectId 0, no diaObject, no previous diaSources, an ssObjectId."""
    rec = alerts.record(7)
    rec["diaSource"] = {**rec["diaSource"], "diaObjectId": 0, "ssObjectId": 555}
    rec.update(diaObject=None, prvDiaSources=None, prvDiaForcedSources=None)
    return alerts.encode(rec)


def test_every_schema_version_and_bad_packets_through_kafka_with_a_schema_folder(
        tmp_path: Path, lsst_env, alerts: LsstAlerts, kafka_bootstrap: str, postgres_dsn: str, mongodb_uri: str) -> None:
    names, runtimes = lsst_env
    synthetic = [alerts.packet(i) for i in range(60)]
    good = [(b"pg", p.read_bytes()) for p in SAMPLES] + [(b"boom", p.read_bytes()) for p in BOOM] + \
           [(oid.encode(), pkt) for oid, _, pkt in synthetic]
    v11 = synthetic[0][2]
    bad = [(b"short", b"\x00\x00\x04"), (b"magic", b"\x07" + v11[1:]), (b"unknown", confluent_frame(1205, v11[5:])),
           (b"truncated", v11[: len(v11) // 3])]
    produce(kafka_bootstrap, names["topic"], good + bad + [(b"ss", solar_system_alert(alerts))])
    manifest = lsst_manifest(tmp_path / "step.yaml", bootstrap=kafka_bootstrap, topic=names["topic"],
                             group=names["group"], table=names["table"], dead_topic=names["dead_topic"],
                             source={"schemaDir": str(SCHEMAS)})
    rt = Runtime(manifest, postgres_dsn, mongodb_uri, tmp_path / "run.log")
    runtimes.append(rt)
    total = len(good) + len(bad) + 1
    wait_until(lambda: committed_total(kafka_bootstrap, names["group"], names["topic"]) == total, 180,
               "every message committed")
    rows = pg_survey_rows(postgres_dsn, names["table"])
    oids = {r[0] for r in rows}
    boom_oids = {"25401295582003262", "3527242430321524769", "7912941781254298"}
    assert oids == {SAMPLE_OID} | boom_oids | {oid for oid, _, _ in synthetic}
    assert len(rows) == len(oids) * N_CLASSES and {r[1] for r in rows} == {"lsst"}
    dead = consume_all(kafka_bootstrap, names["dead_topic"], len(bad))
    errors = {m.key(): dict(m.headers())["alertops.error"].decode() for m in dead}
    assert set(errors) == {k for k, _ in bad}, errors
    assert "shorter than the 5-byte header" in errors[b"short"]
    assert "bad magic bytes" in errors[b"magic"]
    assert "schema id 1205 is unknown to schemaDir" in errors[b"unknown"]
    assert "does not fit the" in errors[b"truncated"]  # a declared length runs past the bytes
    assert filtered(rt, "solar_system") == 1
    assert rt.proc.poll() is None  # bad input never stops the step


@pytest.fixture
def registry(schema_registry_url: str, schema_registry_api_url: str,
             schema_registry_auth: tuple[str, str] | None) -> SchemaRegistry:
    return SchemaRegistry(schema_registry_url, schema_registry_api_url, schema_registry_auth)


def register_rubin(registry: SchemaRegistry, schema_id: int) -> None:
    """Rubin's schema M.m at id M*100+m, as Rubin's registry serves it."""
    text = SchemaDirectory(SCHEMAS).fetch(schema_id)
    assert text is not None
    major, minor = divmod(schema_id, 100)
    register_with_id(registry, f"alertops-it-lsst-v{major}_{minor}", text.decode(), schema_id)


def registry_source(registry: SchemaRegistry, url: str | None = None) -> tuple[dict[str, Any], dict[str, str]]:
    """The manifest's schemaRegistry and the env vars carrying its credentials."""
    source: dict[str, Any] = {"url": url or registry.url, "timeoutMs": 3000}
    env = {}
    if registry.auth is not None:
        source.update(username={"name": "registry", "key": "user"}, password={"name": "registry", "key": "password"})
        env = {"ALERTOPS_SECRET_REGISTRY_USER": registry.auth[0], "ALERTOPS_SECRET_REGISTRY_PASSWORD": registry.auth[1]}
    return {"schemaRegistry": source}, env


def test_the_registry_resolves_a_schema_first_seen_mid_stream_with_decode_workers(
        tmp_path: Path, lsst_env, alerts: LsstAlerts, registry: SchemaRegistry, kafka_bootstrap: str,
        postgres_dsn: str, mongodb_uri: str) -> None:
    names, runtimes = lsst_env
    register_rubin(registry, 1101)
    source, env = registry_source(registry)
    manifest = lsst_manifest(tmp_path / "step.yaml", bootstrap=kafka_bootstrap, topic=names["topic"],
                             group=names["group"], table=names["table"], dead_topic=names["dead_topic"],
                             source=source, decode_workers=2)
    first = [alerts.packet(i) for i in range(1000, 1080)]
    produce(kafka_bootstrap, names["topic"], [(oid.encode(), pkt) for oid, _, pkt in first])
    rt = Runtime(manifest, postgres_dsn, mongodb_uri, tmp_path / "run.log", env=env)
    runtimes.append(rt)
    wait_until(lambda: committed_total(kafka_bootstrap, names["group"], names["topic"]) == len(first), 180,
               "the 11.1 alerts committed")
    # Schema 9.0 appears now: registered while the step runs, then a real 9.0 alert and an id nobody has.
    register_rubin(registry, 900)
    boom_900 = next(p for p in BOOM if p.read_bytes()[1:5] == (900).to_bytes(4, "big")).read_bytes()
    produce(kafka_bootstrap, names["topic"], [(b"900", boom_900), (b"1299", confluent_frame(1299, boom_900[5:]))])
    wait_until(lambda: committed_total(kafka_bootstrap, names["group"], names["topic"]) == len(first) + 2, 120,
               "the mid-stream messages committed")
    oids = {r[0] for r in pg_survey_rows(postgres_dsn, names["table"])}
    assert oids == {oid for oid, _, _ in first} | {"7912941781254298"}
    dead = consume_all(kafka_bootstrap, names["dead_topic"], 1)
    assert len(dead) == 1 and dead[0].key() == b"1299"
    assert "schema id 1299 is unknown to the schema registry at" in dict(dead[0].headers())["alertops.error"].decode()
    assert rt.proc.poll() is None  # no restart was needed


class FailingProxy:
    """A fault injector in front of the real registry: answers 500 while `failing` is set, else forwards."""

    def __init__(self, target: str) -> None:
        self.target = target.rstrip("/")
        self.failing = threading.Event()
        self.failing.set()
        self.refused = 0
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if proxy.failing.is_set():
                    proxy.refused += 1
                    body = json.dumps({"error_code": 50001, "message": "injected failure"}).encode()
                    self.send_response(500)
                else:
                    request = urllib.request.Request(proxy.target + self.path, headers=dict(self.headers))
                    try:
                        with urllib.request.urlopen(request, timeout=10) as r:
                            status, body = r.status, r.read()
                    except urllib.error.HTTPError as e:
                        status, body = e.code, e.read()
                    self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_a_registry_answering_500_holds_the_batch_uncommitted_until_it_recovers(
        tmp_path: Path, lsst_env, alerts: LsstAlerts, registry: SchemaRegistry, kafka_bootstrap: str,
        postgres_dsn: str, mongodb_uri: str) -> None:
    names, runtimes = lsst_env
    register_rubin(registry, 1101)
    proxy = FailingProxy(registry.url)
    try:
        source, env = registry_source(registry, proxy.url)
        manifest = lsst_manifest(tmp_path / "step.yaml", bootstrap=kafka_bootstrap, topic=names["topic"],
                                 group=names["group"], table=names["table"], dead_topic=names["dead_topic"],
                                 source=source)
        batch = [alerts.packet(i) for i in range(2000, 2030)]
        produce(kafka_bootstrap, names["topic"], [(oid.encode(), pkt) for oid, _, pkt in batch])
        rt = Runtime(manifest, postgres_dsn, mongodb_uri, tmp_path / "run.log", env=env)
        runtimes.append(rt)
        wait_until(lambda: proxy.refused >= 3, 60, "the step retrying the failing registry")
        status, body = rt.get("/readyz")
        assert status == 503 and "answered 500" in body, body
        assert committed_total(kafka_bootstrap, names["group"], names["topic"]) == 0
        proxy.failing.clear()
        wait_until(lambda: committed_total(kafka_bootstrap, names["group"], names["topic"]) == len(batch), 120,
                   "every alert committed once the registry answers")
        assert {r[0] for r in pg_survey_rows(postgres_dsn, names["table"])} == {oid for oid, _, _ in batch}
        assert consume_to_end(kafka_bootstrap, names["dead_topic"]) == []  # nothing dead-lettered
        wait_until(lambda: rt.get("/readyz")[0] == 200, 30, "ready again")
    finally:
        proxy.close()


def test_reliability_filter_and_outputs_in_the_confluent_wire_format(
        tmp_path: Path, lsst_env, alerts: LsstAlerts, kafka_bootstrap: str, postgres_dsn: str, mongodb_uri: str) -> None:
    names, runtimes = lsst_env
    out_topic = unique("lsst-out")
    create_topic(kafka_bootstrap, out_topic, partitions=1)
    schema = {"type": "record", "name": "classification", "namespace": "alertops.test", "fields": [
        {"name": "oid", "type": "string"}, {"name": "diaSourceId", "type": "long"},
        {"name": "class_name", "type": "string"}, {"name": "probability", "type": "double"}]}
    (tmp_path / "out.avsc").write_text(json.dumps(schema))
    sink = {"name": "out", "kafka": {"bootstrapServers": kafka_bootstrap, "topic": out_topic, "format": "avro",
                                     "schemaPath": str(tmp_path / "out.avsc"), "schemaId": 4242}}
    manifest = lsst_manifest(tmp_path / "step.yaml", bootstrap=kafka_bootstrap, topic=names["topic"],
                             group=names["group"], table=names["table"], dead_topic=names["dead_topic"],
                             source={"schemaDir": str(SCHEMAS)}, sinks=[sink], alert_filter={"minReliability": 0.5})
    real = [(b"boom", p.read_bytes()) for p in BOOM]  # reliabilities 0.81, 0.999, 0.11
    produce(kafka_bootstrap, names["topic"], real)
    rt = Runtime(manifest, postgres_dsn, mongodb_uri, tmp_path / "run.log")
    runtimes.append(rt)
    wait_until(lambda: committed_total(kafka_bootstrap, names["group"], names["topic"]) == len(real), 120,
               "the real alerts committed")
    out = consume_all(kafka_bootstrap, out_topic, 2)
    assert len(out) == 2
    import io

    import fastavro

    parsed = fastavro.parse_schema(schema)
    for m in out:
        value = m.value()
        assert value[0] == 0 and int.from_bytes(value[1:5], "big") == 4242
        rec = fastavro.schemaless_reader(io.BytesIO(value[5:]), parsed, None)
        assert rec["oid"] == m.key().decode() and 0 <= rec["probability"] <= 1
    assert {m.key().decode() for m in out} == {"25401295582003262", "3527242430321524769"}
    assert filtered(rt, "reliability") == 1


def test_a_schema_that_does_not_parse_is_a_dead_letter_naming_the_id(
        tmp_path: Path, lsst_env, alerts: LsstAlerts, kafka_bootstrap: str, postgres_dsn: str, mongodb_uri: str) -> None:
    import shutil

    names, runtimes = lsst_env
    schemas = tmp_path / "schema"
    shutil.copytree(SCHEMAS / "11", schemas / "11")
    shutil.copytree(SCHEMAS / "9", schemas / "9")
    broken = schemas / "9" / "0" / "lsst.v9_0.alert.avsc"
    broken.write_text(broken.read_text().replace('"fields"', '"fieldz"', 1))  # a record without fields
    boom_900 = next(p for p in BOOM if p.read_bytes()[1:5] == (900).to_bytes(4, "big")).read_bytes()
    good = alerts.packet(3000)
    produce(kafka_bootstrap, names["topic"], [(b"900", boom_900), (good[0].encode(), good[2])])
    manifest = lsst_manifest(tmp_path / "step.yaml", bootstrap=kafka_bootstrap, topic=names["topic"],
                             group=names["group"], table=names["table"], dead_topic=names["dead_topic"],
                             source={"schemaDir": str(schemas)})
    rt = Runtime(manifest, postgres_dsn, mongodb_uri, tmp_path / "run.log")
    runtimes.append(rt)
    wait_until(lambda: committed_total(kafka_bootstrap, names["group"], names["topic"]) == 2, 120, "both committed")
    dead = consume_all(kafka_bootstrap, names["dead_topic"], 1)
    assert [m.key() for m in dead] == [b"900"]
    error = dict(dead[0].headers())["alertops.error"].decode()
    assert "schema id 900 from schemaDir" in error and "has no fields list" in error, error
    assert {r[0] for r in pg_survey_rows(postgres_dsn, names["table"])} == {good[0]}
