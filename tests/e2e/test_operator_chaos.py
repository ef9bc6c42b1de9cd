"""Chaos for the operator on the real control plane.

- The API server the operator talks to is killed and restarted while the operator runs: the
  same operator process converges on what changed meanwhile, without restarting.
- The operator is killed at a deterministic point: a build's ConfigMap applied and its Job
  refused, a step's Deployment (its only child) refused. The next operator converges, with no
  duplicate children.
"""
from __future__ import annotations

import json
import os
from collections import Counter
from typing import Iterator

import pytest
from operator_harness import (
    PRIVATE_LABELS,
    PRIVATE_SELECTOR,
    ExtraApiServer,
    Kubectl,
    OperatorProcess,
    condition,
    step_manifest,
    wait_for,
)
from test_operator_trainingset import build_manifest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _ready(kubectl: Kubectl, ns: str, name: str, replicas: int = 1) -> dict | None:
    step = kubectl.get("pipelinestep", name, ns)
    ok = (step and condition(step, "Ready").get("status") == "True"
          and step["status"].get("observedGeneration") == step["metadata"]["generation"]
          and step["status"].get("readyReplicas") == replicas)
    return step if ok else None


def _managed(kubectl: Kubectl, kind: str, ns: str) -> list[dict]:
    return [o for o in kubectl.json("get", kind, "-n", ns)["items"]
            if (o["metadata"].get("labels") or {}).get("app.kubernetes.io/managed-by") == "alertops-operator"]


def _owners(objects: list[dict]) -> Counter:
    return Counter(o["metadata"]["ownerReferences"][0]["name"] for o in objects)


@pytest.fixture
def extra_apiserver(kubectl: Kubectl, kubeconfig: str) -> Iterator[ExtraApiServer]:
    """A kube-apiserver of our own over the test cluster's etcd, free to be killed."""
    try:
        server = ExtraApiServer(kubeconfig)
    except LookupError as exc:
        if IN_CI:
            pytest.fail(str(exc))
        pytest.skip(str(exc))
    server.start(kubectl.binary)
    yield server
    server.kill()


def test_api_server_restart_while_the_operator_runs(kubectl: Kubectl, private_namespace: str,
                                                    extra_apiserver: ExtraApiServer):
    ns = private_namespace
    operator = OperatorProcess(str(extra_apiserver.kubeconfig), "apiserver-restart", *PRIVATE_SELECTOR,
                               scope=("--namespace", ns)).start()
    try:
        kubectl.apply("\n---\n".join(step_manifest(n, labels=PRIVATE_LABELS) for n in ("before", "victim", "gone")), ns)
        for name in ("before", "victim", "gone"):
            wait_for(lambda name=name: _ready(kubectl, ns, name), 120, f"{name} Ready")
        victim_uid = kubectl.get("deployment", "victim", ns)["metadata"]["uid"]
        pid = operator.proc.pid

        extra_apiserver.kill()
        # The operator has noticed: a request of its failed (its watches reconnect every second).
        dead = f"failed; will retry: GET https://127.0.0.1:{extra_apiserver.port}/"
        wait_for(lambda: dead in operator.log_path.read_text(errors="replace"), 60,
                 "the operator to meet the dead API server")
        # Meanwhile, through the test environment's own API server: a new step, a scale, a deleted
        # child and a deleted step. The restarted server's watch cache cannot replay them: the
        # operator's watches list again, and must notice the deletions too.
        kubectl.apply(step_manifest("during", labels=PRIVATE_LABELS), ns)
        kubectl.run("scale", "pipelinestep", "before", "--replicas=2", "-n", ns)
        kubectl.run("delete", "deployment", "victim", "-n", ns, "--wait=false")
        kubectl.run("delete", "pipelinestep", "gone", "-n", ns, "--wait=false")
        wait_for(lambda: kubectl.get("deployment", "gone", ns) is None, 60, "the deleted step's Deployment collected")
        assert operator.proc.poll() is None  # still running while its API server is down

        extra_apiserver.start(kubectl.binary)
        wait_for(lambda: _ready(kubectl, ns, "during"), 180, "the step created during the outage Ready")
        wait_for(lambda: _ready(kubectl, ns, "before", replicas=2), 180, "the step scaled during the outage Ready")
        wait_for(lambda: (d := kubectl.get("deployment", "victim", ns)) and d["metadata"]["uid"] != victim_uid
                 and _ready(kubectl, ns, "victim"), 180, "the deleted Deployment re-created and Ready")
        wait_for(lambda: "pipelinesteps deleted while the watch was down" in operator.log_path.read_text(),
                 60, "the operator to drop the step deleted during the outage")
        assert operator.proc.pid == pid and operator.proc.poll() is None, "the operator restarted"
    finally:
        operator.stop()
    assert _owners(_managed(kubectl, "deployments", ns)) == Counter({"before": 1, "victim": 1, "during": 1})
    assert not _managed(kubectl, "configmaps", ns)  # a step's manifest rides on its pod template


def _refuse_workloads(ns: str) -> str:
    """A ValidatingAdmissionPolicy (+ binding) that refuses Deployments and Jobs in `ns` only."""
    name = f"e2e-refuse-workloads-{ns}"
    policy = {
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": name},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {"resourceRules": [
                {"apiGroups": ["apps"], "apiVersions": ["v1"], "operations": ["CREATE", "UPDATE"],
                 "resources": ["deployments"]},
                {"apiGroups": ["batch"], "apiVersions": ["v1"], "operations": ["CREATE", "UPDATE"],
                 "resources": ["jobs"]},
            ]},
            "validations": [{"expression": "false", "message": "e2e fault: workloads are refused here"}],
        },
    }
    binding = {
        "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": name},
        "spec": {"policyName": name, "validationActions": ["Deny"],
                 "matchResources": {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}}}},
    }
    return "\n---\n".join(json.dumps(o) for o in (policy, binding))


def test_operator_killed_between_config_map_and_workload(kubectl: Kubectl, kubeconfig: str, private_namespace: str):
    ns = private_namespace
    fault = _refuse_workloads(ns)
    kubectl.run("apply", "-f", "-", input=fault)
    try:
        # The fault is in force once a server-side dry run of a Deployment is refused.
        wait_for(lambda: "e2e fault" in kubectl.run("create", "deployment", "probe", "--image=registry.example/p:1",
                                                    "-n", ns, "--dry-run=server", check=False).stderr,
                 60, "the admission policy to refuse Deployments")
        first = OperatorProcess(kubeconfig, "between-1", *PRIVATE_SELECTOR, scope=("--namespace", ns)).start()
        try:
            labelled = build_manifest("between-build", 1).replace(
                "metadata:\n", "metadata:\n  labels: {e2e.alertops.io/operator: private}\n", 1)
            kubectl.apply(step_manifest("between-step", labels=PRIVATE_LABELS) + "\n---\n" + labelled, ns)
            # The deterministic point: the build's ConfigMap is applied, each workload refused.
            for kind, name in (("pipelinestep", "between-step"), ("trainingsetbuild", "between-build")):
                wait_for(lambda kind=kind, name=name: "e2e fault" in (
                    (kubectl.get(kind, name, ns) or {}).get("status") or {}).get("lastError", ""),
                         60, f"{name}: workload refused")
            wait_for(lambda: kubectl.get("configmap", "between-build-config", ns), 60, "the build's ConfigMap applied")
        finally:
            first.kill()
    finally:
        kubectl.run("delete", "-f", "-", "--ignore-not-found", input=fault)
    assert not _managed(kubectl, "deployments", ns) and not _managed(kubectl, "jobs", ns)
    config_maps = {c["metadata"]["name"]: c["metadata"]["uid"] for c in _managed(kubectl, "configmaps", ns)}
    assert set(config_maps) == {"between-build-config"}

    second = OperatorProcess(kubeconfig, "between-2", *PRIVATE_SELECTOR, scope=("--namespace", ns)).start()
    try:
        wait_for(lambda: _ready(kubectl, ns, "between-step"), 180, "the step Ready after the restart")
        wait_for(lambda: (b := kubectl.get("trainingsetbuild", "between-build", ns))
                 and (b.get("status") or {}).get("phase") == "Succeeded", 180, "the build Succeeded after the restart")
    finally:
        second.stop()
    assert _owners(_managed(kubectl, "deployments", ns)) == Counter({"between-step": 1})
    assert _owners(_managed(kubectl, "jobs", ns)) == Counter({"between-build": 1})
    # The same ConfigMap, applied again in place, not re-created.
    assert {c["metadata"]["name"]: c["metadata"]["uid"] for c in _managed(kubectl, "configmaps", ns)} == config_maps
    assert not kubectl.get("pipelinestep", "between-step", ns)["status"].get("lastError")
