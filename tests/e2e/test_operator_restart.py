"""The operator killed mid-reconcile and restarted converges, with no duplicate children."""
from __future__ import annotations

from collections import Counter

from operator_harness import (
    PRIVATE_LABELS,
    PRIVATE_SELECTOR,
    Kubectl,
    OperatorProcess,
    condition,
    step_manifest,
    wait_for,
)

STEPS = [f"restart-{i:02d}" for i in range(40)]


def _all_ready(kubectl: Kubectl, ns: str) -> bool:
    items = kubectl.json("get", "pipelinesteps", "-n", ns)["items"]
    return len(items) == len(STEPS) and all(
        condition(s, "Ready").get("status") == "True"
        and s["status"].get("observedGeneration") == s["metadata"]["generation"] for s in items)


def test_kill_mid_reconcile_then_restart(kubectl: Kubectl, kubeconfig: str, private_namespace: str):
    namespace = private_namespace
    # An operator of its own, for resources the session operator's selector excludes: it is
    # killed while busy creating children, then a fresh one is started.
    first = OperatorProcess(kubeconfig, "restart-1", *PRIVATE_SELECTOR, scope=("--namespace", namespace)).start()
    try:
        kubectl.apply("\n---\n".join(step_manifest(n, labels=PRIVATE_LABELS) for n in STEPS), namespace)
        # Kill it the moment its log reports the first finished reconcile: others are in flight.
        wait_for(lambda: "Handler 'step_apply' succeeded" in first.log_path.read_text(errors="replace"), 60,
                 "a first finished reconcile", interval=0.005)
    finally:
        first.kill()
    created = len(kubectl.json("get", "deployments", "-n", namespace)["items"])
    # Some, not necessarily all, children exist now; the new operator must finish the job.
    second = OperatorProcess(kubeconfig, "restart-2", *PRIVATE_SELECTOR, scope=("--namespace", namespace))
    try:
        second.start()
        wait_for(lambda: _all_ready(kubectl, namespace), 180, "all steps Ready after the restart")
    finally:
        second.stop()
    deployments = kubectl.json("get", "deployments", "-n", namespace)["items"]
    replicasets = kubectl.json("get", "replicasets", "-n", namespace)["items"]
    owners = Counter(d["metadata"]["ownerReferences"][0]["name"] for d in deployments)
    assert sorted(owners) == STEPS and set(owners.values()) == {1}, owners
    rs_owners = Counter(r["metadata"]["ownerReferences"][0]["name"] for r in replicasets)
    assert set(rs_owners.values()) == {1}, f"a Deployment rolled or was duplicated: {rs_owners}"
    assert created >= 1
    print(f"children existing when the operator was killed: {created}/{len(STEPS)} Deployments")
