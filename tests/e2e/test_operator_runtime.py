"""kwok pods run no containers, so this test proves the rendered pod would work: it reads back
the pod template the operator created (command, env with the Secrets resolved, the manifest
mounted from the template's annotation) and runs `alertops run` as a local process exactly so, against the real Kafka,
PostgreSQL and MongoDB-wire server, and sees real ZTF alerts arrive in the databases.

The only liberties: the mount point /etc/alertops becomes a temporary folder, the
HTTP port (a pod-local detail) a free port, and `alertops` the venv's executable.
"""
from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import yaml
from operator_harness import REPO, Kubectl, OperatorProcess, free_port, pg_oids, wait_for

ALERTS = REPO / "examples" / "data" / "alerts"
MODEL = REPO / "examples" / "models" / "demo_classifier.joblib"
DEMO = REPO / "examples" / "step-demo.yaml"


def _manifest(name: str, bootstrap: str, topic: str, table: str, mongo_db: str) -> str:
    sha = yaml.safe_load(DEMO.read_text())["spec"]["processor"]["model"]["sha256"]
    return yaml.safe_dump({
        "apiVersion": "alertops.io/v1alpha1", "kind": "PipelineStep", "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "source": {"kafka": {"bootstrapServers": bootstrap, "topics": [topic], "groupId": f"{name}-group",
                                 "format": "ztf-avro", "batchSize": 50, "batchTimeoutMs": 300}},
            # In a cluster the model would be in the image; here the path is the repo's file.
            "processor": {"model": {"path": str(MODEL), "sha256": sha, "classifierName": "demo",
                                    "classifierVersion": "0.1.0"}},
            "sinks": [
                {"name": "pg", "postgres": {"dsn": {"name": "pg", "key": "dsn"}, "table": table,
                                            "mode": "probability", "createTable": True}},
                {"name": "mongo", "mongodb": {"uri": {"name": "mongo", "key": "uri"}, "database": mongo_db,
                                              "collection": "probabilities",
                                              "key": ["oid", "classifier_name", "classifier_version"]}},
            ],
        },
    })


def _produce(bootstrap: str, topic: str, files: list[Path]) -> None:
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)],
                        operation_timeout=30, request_timeout=30)[topic].result(timeout=60)
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "message.max.bytes": 10_000_000})
    for f in files:
        producer.produce(topic, value=f.read_bytes(), key=f.stem.encode())
    assert producer.flush(60) == 0, "alerts not acknowledged by Kafka within 60 s"


def _committed(bootstrap: str, group: str, topic: str) -> int:
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        (tp,) = c.committed([TopicPartition(topic, 0)], timeout=10)
    finally:
        c.close()
    return max(tp.offset, 0)


def _mongo_oids(uri: str, db: str) -> set[str]:
    import pymongo

    client = pymongo.MongoClient(uri, serverSelectionTimeoutMS=5000)
    try:
        return {d["oid"] for d in client[db]["probabilities"].find({}, {"oid": 1})}
    finally:
        client.close()


def _resolve_env(kubectl: Kubectl, namespace: str, env: list[dict]) -> dict[str, str]:
    """The pod's env as the kubelet would set it: values, Secret keys, downward API fields."""
    out: dict[str, str] = {}
    for var in env:
        if "value" in var:
            out[var["name"]] = var["value"]
            continue
        source = var["valueFrom"]
        if "secretKeyRef" in source:
            ref = source["secretKeyRef"]
            secret = kubectl.get("secret", ref["name"], namespace)
            assert secret is not None, f"Secret {ref['name']} missing"
            out[var["name"]] = base64.b64decode(secret["data"][ref["key"]]).decode()
        elif "fieldRef" in source:
            field = source["fieldRef"]["fieldPath"]
            out[var["name"]] = {"metadata.name": "local-pod", "metadata.namespace": namespace}[field]
        else:
            raise AssertionError(f"env {var['name']}: unsupported source {source}")
    return out


def _downward_api_files(volume: dict, pod_meta: dict) -> dict[str, str]:
    """The files a downwardAPI volume of annotations shows a pod, as kubelet writes them."""
    files = {}
    for item in volume["items"]:
        field = item["fieldRef"]["fieldPath"]
        prefix = "metadata.annotations['"
        assert field.startswith(prefix) and field.endswith("']"), f"unsupported fieldPath {field}"
        files[item["path"]] = pod_meta["annotations"][field[len(prefix):-2]]
    return files


def _run_rendered_pod(kubectl: Kubectl, namespace: str, name: str, group: str, topic: str, n_messages: int,
                      kafka_bootstrap: str, tmp_path: Path) -> str:
    """Run the Deployment's pod template of step `name` locally until every message is
    committed; return the runtime's log."""
    dep = wait_for(lambda: kubectl.get("deployment", name, namespace), 60, "the Deployment")

    # Read the pod back as the operator rendered it.
    pod = dep["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    config_dir = mounts["config"]
    local_config = tmp_path / "etc-alertops"
    local_config.mkdir()
    files = _downward_api_files(volumes["config"]["downwardAPI"], dep["spec"]["template"]["metadata"])
    for path, text in files.items():
        (local_config / path).write_text(text)
    assert "secret" not in files["step.yaml"].lower().replace("secretkeyref", "")
    env = _resolve_env(kubectl, namespace, container["env"])
    env["ALERTOPS_HTTP_PORT"] = str(free_port())
    command = [c.replace(config_dir, str(local_config)) for c in container["command"] + container.get("args", [])]
    assert command[:2] == ["alertops", "run"]
    command[0] = str(Path(sys.executable).parent / "alertops")

    log = tmp_path / "runtime.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(command, env={"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), **env},
                                stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path)
        try:
            wait_for(lambda: proc.poll() is None and _committed(kafka_bootstrap, group, topic) == n_messages,
                     120, f"all {n_messages} messages committed (log {log})", interval=1.0)
        finally:
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=60)
    logs = log.read_text(errors="replace")
    assert code == 0, logs[-3000:]
    return logs


def test_rendered_pod_runs_against_real_services(kubectl: Kubectl, operator: OperatorProcess, namespace: str,
                                                 kafka_bootstrap: str, postgres_dsn: str, mongodb_uri: str,
                                                 tmp_path: Path):
    if not MODEL.exists():
        pytest.fail(f"{MODEL} is missing (shipped with the step runtime)")
    suffix = uuid.uuid4().hex[:8]
    name, topic, table, mongo_db = f"live-{suffix}", f"e2e-ztf-{suffix}", f"e2e_prob_{suffix}", f"e2e_{suffix}"
    alerts = sorted(p for p in ALERTS.glob("*.avro"))
    _produce(kafka_bootstrap, topic, alerts)
    kubectl.run("create", "secret", "generic", "pg", f"--from-literal=dsn={postgres_dsn}", "-n", namespace)
    kubectl.run("create", "secret", "generic", "mongo", f"--from-literal=uri={mongodb_uri}", "-n", namespace)
    kubectl.apply(_manifest(name, kafka_bootstrap, topic, table, mongo_db), namespace)
    logs = _run_rendered_pod(kubectl, namespace, name, f"{name}-group", topic, len(alerts), kafka_bootstrap, tmp_path)
    pg, mongo = pg_oids(postgres_dsn, table), _mongo_oids(mongodb_uri, mongo_db)
    assert len(pg) >= 5, f"too few objects classified: {sorted(pg)}\n{logs[-2000:]}"
    assert pg == mongo
    assert all(oid.startswith("ZTF") for oid in pg)
    print(f"{len(alerts)} alerts -> {len(pg)} objects in PostgreSQL table {table} and MongoDB {mongo_db}")


def test_features_example_runs_as_rendered(kubectl: Kubectl, operator: OperatorProcess, namespace: str,
                                           kafka_bootstrap: str, postgres_dsn: str, mongodb_uri: str,
                                           tmp_path: Path):
    """examples/pipelinestep-features.yaml, pointed at the test services, applied with kubectl and
    run as the operator renders it: Kafka -> features -> PostgreSQL and MongoDB, bad packets to a
    dead-letter topic. Undefined features (NaN) reach MongoDB as null."""
    import psycopg2
    import pymongo

    suffix = uuid.uuid4().hex[:8]
    doc = yaml.safe_load((REPO / "examples" / "pipelinestep-features.yaml").read_text())
    kafka = doc["spec"]["source"]["kafka"]
    topic, group = f"e2e-feat-{suffix}", f"e2e-feat-{suffix}"
    kafka.update({"bootstrapServers": kafka_bootstrap, "topics": [topic], "groupId": group})
    table = f"e2e_features_{suffix}"
    doc["spec"]["sinks"][0]["postgres"]["table"] = table
    mongo_db = f"e2e_feat_{suffix}"
    doc["spec"]["sinks"][1]["mongodb"]["database"] = mongo_db
    doc["spec"]["deadLetter"]["kafka"]["topic"] = f"e2e-feat-dead-{suffix}"
    alerts = sorted(p for p in ALERTS.glob("*.avro"))
    _produce(kafka_bootstrap, topic, alerts)
    _produce(kafka_bootstrap, f"e2e-feat-dead-{suffix}", [])
    kubectl.run("create", "secret", "generic", "alerts-postgres", f"--from-literal=dsn={postgres_dsn}", "-n", namespace)
    kubectl.run("create", "secret", "generic", "alerts-mongodb", f"--from-literal=uri={mongodb_uri}", "-n", namespace)
    kubectl.apply(yaml.safe_dump(doc), namespace)
    logs = _run_rendered_pod(kubectl, namespace, "ztf-features", group, topic, len(alerts), kafka_bootstrap, tmp_path)
    client = pymongo.MongoClient(mongodb_uri, serverSelectionTimeoutMS=5000, socketTimeoutMS=30000)
    try:
        mongo_candids = {d["candid"] for d in client[mongo_db]["features"].find({}, {"candid": 1})}
        client.drop_database(mongo_db)
    finally:
        client.close()
    conn = psycopg2.connect(postgres_dsn, connect_timeout=5)
    try:
        with conn.cursor() as cur:
            cur.execute(f'SELECT count(*), count(DISTINCT candid) FROM "{table}"')
            rows, candids = cur.fetchone()
    finally:
        conn.close()
    assert rows >= 5 and rows == candids, f"pg rows {rows}, candids {candids}\n{logs[-2000:]}"
    assert len(mongo_candids) == rows, f"mongo {len(mongo_candids)} documents, pg {rows} rows\n{logs[-2000:]}"
    print(f"features example: {len(alerts)} alerts -> {rows} rows in PostgreSQL and MongoDB")
