"""A PipelineStep as a real pod on the real node: the image built from the Dockerfile, the pod as
the operator renders it (read-only root, uid 10001, no capabilities, the manifest mount, the
Secret env, the probes), consuming the real Kafka and writing the real PostgreSQL.

The pods reach the test services at the very addresses the tests use (127.0.0.1:<port>): the real
node's network maps them into every pod (docs/testenv-kubernetes.md).
"""
from __future__ import annotations

import urllib.request
import uuid
from pathlib import Path
from typing import Any

import yaml
from operator_harness import REPO, Kubectl, OperatorProcess, condition, pg_oids, wait_for
from realnode_harness import RealNode, pod_ready, pods

ALERTS = sorted((REPO / "examples" / "data" / "alerts").glob("*.avro"))
DEMO = REPO / "examples" / "step-demo.yaml"
MODEL_IN_IMAGE = "/opt/alertops-examples/models/demo_classifier.joblib"
# examples/step-demo.yaml: one packet is corrupt and one has no objectId; both are dead-lettered.
BAD_PACKETS = 2


# A killed consumer's partitions go to the others after 6 s (the broker's minimum) instead of
# librdkafka's default 45 s session timeout: the kill tests wait on that rebalance.
FAST_REBALANCE = {"session.timeout.ms": "6000", "heartbeat.interval.ms": "2000"}


def step_manifest(name: str, image: str, bootstrap: str, topic: str, table: str, dead_topic: str,
                  batch_size: int = 5, replicas: int = 1) -> str:
    """Features + the demo classifier: Kafka -> PostgreSQL (probability table), dead letters to Kafka."""
    sha = yaml.safe_load(DEMO.read_text())["spec"]["processor"]["model"]["sha256"]
    return yaml.safe_dump({
        "apiVersion": "alertops.io/v1alpha1", "kind": "PipelineStep", "metadata": {"name": name},
        "spec": {
            "image": image, "replicas": replicas,
            "source": {"kafka": {"bootstrapServers": bootstrap, "topics": [topic], "groupId": name,
                                 "format": "ztf-avro", "batchSize": batch_size, "batchTimeoutMs": 300,
                                 "config": FAST_REBALANCE}},
            "processor": {"model": {"path": MODEL_IN_IMAGE, "sha256": sha, "classifierName": "demo",
                                    "classifierVersion": "0.1.0", "featuresFrom": "alert"}},
            "sinks": [{"name": "pg", "postgres": {"dsn": {"name": "pg", "key": "dsn"}, "table": table,
                                                  "mode": "probability", "createTable": True}}],
            "deadLetter": {"kafka": {"topic": dead_topic}},
            "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}},
        },
    })


# --- Kafka and PostgreSQL, seen from the test ---------------------------------------------------

def create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)],
                        operation_timeout=30, request_timeout=30)[topic].result(timeout=60)


def produce(bootstrap: str, topic: str, files: list[Path]) -> None:
    """Every alert file as one message, keyed by its file name (so partitions share them out)."""
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "message.max.bytes": 10_000_000})
    for f in files:
        producer.produce(topic, value=f.read_bytes(), key=f.stem.encode())
    assert producer.flush(60) == 0, "alerts not acknowledged by Kafka within 60 s"


def _partitions(bootstrap: str, topic: str) -> list[int]:
    from confluent_kafka.admin import AdminClient

    meta = AdminClient({"bootstrap.servers": bootstrap}).list_topics(topic, timeout=10)
    return sorted(meta.topics[topic].partitions)


def end_offsets(bootstrap: str, topic: str) -> int:
    """Messages in the topic (sum of its partitions' high watermarks)."""
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"probe-{uuid.uuid4().hex[:6]}"})
    try:
        return sum(c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                   for p in _partitions(bootstrap, topic))
    finally:
        c.close()


def committed(bootstrap: str, group: str, topic: str) -> int:
    """Messages the group committed, summed over the topic's partitions."""
    from confluent_kafka import Consumer, TopicPartition

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        tps = c.committed([TopicPartition(topic, p) for p in _partitions(bootstrap, topic)], timeout=10)
    finally:
        c.close()
    return sum(max(tp.offset, 0) for tp in tps)


def group_assignment(bootstrap: str, group: str) -> dict[str, list[int]]:
    """Partitions per member (client id + host) of a consumer group that is Stable, else {}."""
    from confluent_kafka import ConsumerGroupState
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap})
    desc = admin.describe_consumer_groups([group], request_timeout=10)[group].result(timeout=15)
    if desc.state != ConsumerGroupState.STABLE:
        return {}
    return {m.member_id: sorted(tp.partition for tp in m.assignment.topic_partitions) for m in desc.members}


def alert_oids() -> set[str]:
    """objectId of every example alert that decodes (the corrupt one does not)."""
    import fastavro

    oids = set()
    for f in ALERTS:
        try:
            with f.open("rb") as fh:
                for record in fastavro.reader(fh):
                    if record.get("objectId"):
                        oids.add(record["objectId"])
        except Exception:
            continue
    return oids


# --- the step -----------------------------------------------------------------------------------

def _only_pod(kubectl: Kubectl, ns: str, name: str) -> dict[str, Any] | None:
    found = pods(kubectl, ns, f"app.kubernetes.io/instance={name}")
    return found[0] if len(found) == 1 else None


def ready_pods(kubectl: Kubectl, ns: str, name: str, n: int, uids_not: set[str] = frozenset()) -> list[dict] | None:
    """Exactly `n` pods of step `name`, all Ready, none of them with a uid in `uids_not`."""
    found = pods(kubectl, ns, f"app.kubernetes.io/instance={name}")
    if len(found) == n and all(pod_ready(p) for p in found) and not {p["metadata"]["uid"] for p in found} & uids_not:
        return found
    return None


def step_ready(kubectl: Kubectl, ns: str, name: str) -> dict | None:
    obj = kubectl.get("pipelinestep", name, ns)
    return obj if condition(obj, "Ready").get("status") == "True" else None


def metrics(pod: dict[str, Any]) -> str:
    """GET http://<pod IP>:8080/metrics from this machine (through the real node's bridge)."""
    with urllib.request.urlopen(f"http://{pod['status']['podIP']}:8080/metrics", timeout=10) as r:
        return r.read().decode()


def _setup(kubectl: Kubectl, ns: str, postgres_dsn: str) -> None:
    kubectl.run("create", "secret", "generic", "pg", f"--from-literal=dsn={postgres_dsn}", "-n", ns)


def test_step_pod_moves_alerts_and_survives_a_kill(kubectl: Kubectl, realnode: RealNode,
                                                   operator: OperatorProcess, realnode_namespace: str,
                                                   kafka_bootstrap: str, postgres_dsn: str):
    ns, suffix = realnode_namespace, uuid.uuid4().hex[:8]
    name, topic, dead, table = "classifier", f"real-{suffix}", f"real-dead-{suffix}", f"real_prob_{suffix}"
    create_topic(kafka_bootstrap, topic, 1)
    create_topic(kafka_bootstrap, dead, 1)
    produce(kafka_bootstrap, topic, ALERTS)
    _setup(kubectl, ns, postgres_dsn)
    kubectl.apply(step_manifest(name, realnode.image, kafka_bootstrap, topic, table, dead), ns)

    # Ready through its real probes: the kubelet marks the pod Ready only after /readyz answered.
    (pod,) = wait_for(lambda: ready_pods(kubectl, ns, name, 1), 240, "the step pod Ready on the real node")
    assert pod["spec"]["nodeName"] == realnode.name
    container = pod["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert pod["status"]["containerStatuses"][0]["imageID"], "no image ID: the container never ran"
    wait_for(lambda: step_ready(kubectl, ns, name), 120, "PipelineStep Ready")

    # Alerts from the real Kafka land in PostgreSQL; the bad packets in the dead-letter topic.
    wait_for(lambda: committed(kafka_bootstrap, name, topic) == len(ALERTS), 180, f"all {len(ALERTS)} alerts committed")
    oids = pg_oids(postgres_dsn, table)
    assert len(oids) >= 5 and oids <= alert_oids(), sorted(oids)
    assert end_offsets(kafka_bootstrap, dead) == BAD_PACKETS

    # Its /metrics answers on the pod's address and counts what it did.
    text = metrics(pod)
    assert "alertops_step_messages_in_total" in text and "alertops_step_dead_letters_total" in text

    # Killed (SIGKILL, no cleanup): the kubelet restarts the container, nothing is lost. The second
    # round is produced just before the kill, so the kill may land in the middle of its batches.
    produce(kafka_bootstrap, topic, ALERTS)
    realnode.kill_container(pod["status"]["containerStatuses"][0]["containerID"])

    def restarted() -> dict | None:
        p = _only_pod(kubectl, ns, name)
        ok = p and p["metadata"]["uid"] == pod["metadata"]["uid"] and pod_ready(p) \
            and p["status"]["containerStatuses"][0]["restartCount"] >= 1
        return p if ok else None

    after = wait_for(restarted, 240, "the same pod Ready again after its container was killed")
    last = after["status"]["containerStatuses"][0]["lastState"]["terminated"]
    assert last["exitCode"] == 137 or last.get("signal") == 9 or last["reason"] == "Error", last
    wait_for(lambda: committed(kafka_bootstrap, name, topic) == 2 * len(ALERTS), 180,
             f"all {2 * len(ALERTS)} alerts committed after the restart")
    # At least once: every bad packet of the second round is dead-lettered too (a replayed batch
    # may send one twice); the probability rows are upserts, so they are the same set.
    assert end_offsets(kafka_bootstrap, dead) >= 2 * BAD_PACKETS
    assert pg_oids(postgres_dsn, table) == oids


def test_step_pod_runs_as_rendered(kubectl: Kubectl, realnode: RealNode, operator: OperatorProcess,
                                   realnode_namespace: str, kafka_bootstrap: str, postgres_dsn: str):
    """The securityContext the operator renders, in force in a real container of the built image."""
    ns, suffix = realnode_namespace, uuid.uuid4().hex[:8]
    name, topic = "secure", f"real-sec-{suffix}"
    create_topic(kafka_bootstrap, topic, 1)
    _setup(kubectl, ns, postgres_dsn)
    kubectl.apply(step_manifest(name, realnode.image, kafka_bootstrap, topic, f"real_sec_{suffix}",
                                f"real-sec-dead-{suffix}"), ns)
    (pod,) = wait_for(lambda: ready_pods(kubectl, ns, name, 1), 240, "the step pod Ready on the real node")
    pod_name = pod["metadata"]["name"]

    def sh(script: str) -> tuple[int, str]:
        r = kubectl.run("exec", "-n", ns, pod_name, "-c", "step", "--", "sh", "-c", script, check=False)
        return r.returncode, (r.stdout + r.stderr).strip()

    assert sh("id") == (0, "uid=10001(alertops) gid=10001(alertops) groups=10001(alertops)")
    code, out = sh("touch /written-by-the-step")
    assert code != 0 and "Read-only file system" in out, out
    code, out = sh("touch /home/alertops/x")
    assert code != 0 and "Read-only file system" in out, out
    assert sh("touch /tmp/x && echo ok") == (0, "ok")
    # Nothing anywhere on the root filesystem is writable (/tmp is the emptyDir, another filesystem).
    assert sh("find / -xdev -path /tmp -prune -o -writable -print 2>/dev/null | head -5") == (0, "")
    status = dict(line.split(":\t", 1) for line in sh("cat /proc/1/status")[1].splitlines() if ":\t" in line)
    assert int(status["CapEff"], 16) == 0 and int(status["CapPrm"], 16) == 0, status["CapEff"]
    assert status["NoNewPrivs"].strip() == "1"
    assert status["Seccomp"].strip() == "2", "no seccomp filter (RuntimeDefault)"
    code, out = sh("alertops --help")
    assert code == 0 and "run" in out and "build" in out
    # The manifest (the pod template's annotation, through the downward API) is mounted
    # read-only; the Secret reaches the process as an env var only.
    code, out = sh("cat /etc/alertops/step.yaml")
    assert code == 0 and yaml.safe_load(out)["metadata"]["name"] == name
    assert postgres_dsn not in out and sh("touch /etc/alertops/x")[0] != 0
    assert sh("printenv ALERTOPS_SECRET_PG_DSN") == (0, postgres_dsn), "the Secret is not in the environment"
    # kubectl logs reaches the kubelet through the API server (its kubelet client certificate).
    logs = kubectl.run("logs", "-n", ns, pod_name, "-c", "step").stdout
    assert logs.strip(), "no log from the step"


def test_scale_splits_partitions_and_spec_change_rolls(kubectl: Kubectl, realnode: RealNode,
                                                       operator: OperatorProcess, realnode_namespace: str,
                                                       kafka_bootstrap: str, postgres_dsn: str):
    ns, suffix = realnode_namespace, uuid.uuid4().hex[:8]
    name, topic, table = "scaled", f"real-scale-{suffix}", f"real_scale_{suffix}"
    create_topic(kafka_bootstrap, topic, 4)
    _setup(kubectl, ns, postgres_dsn)
    kubectl.apply(step_manifest(name, realnode.image, kafka_bootstrap, topic, table,
                                f"real-scale-dead-{suffix}"), ns)
    (first,) = wait_for(lambda: ready_pods(kubectl, ns, name, 1), 240, "one step pod Ready")
    assignment = wait_for(lambda: group_assignment(kafka_bootstrap, name), 120, "a stable consumer group")
    assert list(assignment.values()) == [[0, 1, 2, 3]]

    # Scale: a second pod joins, the first one is not replaced, the group splits the partitions.
    kubectl.run("scale", "pipelinestep", name, "-n", ns, "--replicas=2")
    two = wait_for(lambda: ready_pods(kubectl, ns, name, 2), 240, "two step pods Ready")
    assert first["metadata"]["uid"] in {p["metadata"]["uid"] for p in two}, "scaling replaced the pod"

    def split() -> dict[str, list[int]] | None:
        a = group_assignment(kafka_bootstrap, name)
        return a if len(a) == 2 and all(a.values()) else None

    members = wait_for(split, 180, "both pods consuming")
    assert sorted(p for parts in members.values() for p in parts) == [0, 1, 2, 3]
    produce(kafka_bootstrap, topic, ALERTS)
    wait_for(lambda: committed(kafka_bootstrap, name, topic) == len(ALERTS), 180, "every alert committed by the pair")
    assert len(pg_oids(postgres_dsn, table)) >= 5

    # A spec change (the batch size) rolls both pods; the replicas stay 2.
    old = {p["metadata"]["uid"] for p in two}
    kubectl.apply(step_manifest(name, realnode.image, kafka_bootstrap, topic, table,
                                f"real-scale-dead-{suffix}", batch_size=7, replicas=2), ns)
    new = wait_for(lambda: ready_pods(kubectl, ns, name, 2, uids_not=old), 360, "two new pods Ready after the spec change")
    dep = kubectl.get("deployment", name, ns)
    assert dep["spec"]["replicas"] == 2
    for pod in new:  # each new pod reads the new manifest
        text = kubectl.run("exec", "-n", ns, pod["metadata"]["name"], "-c", "step", "--",
                           "cat", "/etc/alertops/step.yaml").stdout
        assert yaml.safe_load(text)["spec"]["source"]["kafka"]["batchSize"] == 7
