"""A catalog from a PersistentVolumeClaim, mounted on the real node (issue 11 on real pods).

kwok nodes mount nothing, so the rendering is tested there (test_operator_storage.py); here a
crossmatch step's catalog given as `uri: pvc://<claim>/<file>` is mounted read-only by the real
kubelet from a hostPath PersistentVolume, loaded (checked against its sha256 pin) before the pod
is Ready, and matches the alerts the step consumes from the real Kafka.
"""
from __future__ import annotations

import hashlib
import uuid

import yaml
from operator_harness import Kubectl, OperatorProcess, wait_for
from realnode_harness import RealNode, host_path_volume
from test_realnode_step import ALERTS, _setup, committed, create_topic, produce, ready_pods, step_ready

from step_runtime.step.decode import alerts_of
from step_runtime.step.errors import DecodeError


def decoded_alerts() -> list[dict]:
    """The example alerts that decode and have an object id (the step dead-letters the others)."""
    out = []
    for path in ALERTS:
        try:
            alert = alerts_of(path.read_bytes())[0]
        except DecodeError:
            continue
        if alert["oid"]:
            out.append(alert)
    return out


def test_a_catalog_on_a_claim_is_mounted_loaded_and_matched_on_the_real_node(
        kubectl: Kubectl, realnode: RealNode, operator: OperatorProcess, realnode_namespace: str,
        kafka_bootstrap: str, postgres_dsn: str) -> None:
    import psycopg2

    ns, suffix = realnode_namespace, uuid.uuid4().hex[:8]
    name, topic, dead, table = "xmatch", f"real-xm-{suffix}", f"real-xm-dead-{suffix}", f"real_xm_{suffix}"
    alerts = decoded_alerts()
    folder = host_path_volume(kubectl, realnode, ns, "catalogs")
    # one catalog object half an arcsecond north of every alert
    rows = [f"obj{i},{a['source']['ra']!r},{a['source']['dec'] + 0.5 / 3600!r}" for i, a in enumerate(alerts)]
    (folder / "near.csv").write_text("id,ra,dec\n" + "\n".join(rows) + "\n")
    sha = hashlib.sha256((folder / "near.csv").read_bytes()).hexdigest()
    create_topic(kafka_bootstrap, topic, 1)
    create_topic(kafka_bootstrap, dead, 1)
    produce(kafka_bootstrap, topic, ALERTS)
    _setup(kubectl, ns, postgres_dsn)
    kubectl.apply(yaml.safe_dump({
        "apiVersion": "alertops.io/v1alpha1", "kind": "PipelineStep", "metadata": {"name": name},
        "spec": {
            "image": realnode.image,
            "source": {"kafka": {"bootstrapServers": kafka_bootstrap, "topics": [topic], "groupId": name,
                                 "format": "ztf-avro", "batchSize": 5, "batchTimeoutMs": 300}},
            "processor": {"crossmatch": {"uri": "pvc://catalogs/near.csv", "sha256": sha, "idColumn": "id",
                                         "radiusArcsec": 2.0}},
            "sinks": [{"name": "pg", "postgres": {"dsn": {"name": "pg", "key": "dsn"}, "table": table,
                                                  "key": ["candid"], "createTable": True}}],
            "deadLetter": {"kafka": {"topic": dead}},
            "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}},
        }}), ns)

    (pod,) = wait_for(lambda: ready_pods(kubectl, ns, name, 1), 240, "the crossmatch pod Ready on the real node")
    assert pod["spec"]["nodeName"] == realnode.name
    claims = {v["persistentVolumeClaim"]["claimName"]: v["name"] for v in pod["spec"]["volumes"]
              if "persistentVolumeClaim" in v}
    assert "catalogs" in claims
    mount = next(m for m in pod["spec"]["containers"][0]["volumeMounts"] if m["name"] == claims["catalogs"])
    assert mount.get("readOnly") is True
    wait_for(lambda: step_ready(kubectl, ns, name), 120, "PipelineStep Ready")
    wait_for(lambda: committed(kafka_bootstrap, name, topic) == len(ALERTS), 180, "every alert committed")

    conn = psycopg2.connect(postgres_dsn, connect_timeout=5)
    try:
        with conn.cursor() as cur:
            cur.execute(f'SELECT oid, xm_id, xm_separation_arcsec FROM "{table}" ORDER BY oid')
            matched = cur.fetchall()
    finally:
        conn.close()
    assert {r[0] for r in matched} == {a["oid"] for a in alerts}
    # Every alert has a catalog row 0.5" north of it; alerts of one object lie close together,
    # so another alert's row may be nearer still: the nearest is never farther than 0.5".
    assert all(r[1] is not None and r[1].startswith("obj") and r[2] <= 0.5 + 1e-6 for r in matched), matched
