"""PipelineStep end to end: kubectl apply -> operator -> Deployment -> kwok pods -> status."""
from __future__ import annotations

import json

from operator_harness import PRIVATE_LABELS, REPO, Kubectl, OperatorProcess, condition, step_manifest, wait_for

HASH = "alertops.io/config-hash"


def _deployment(kubectl: Kubectl, ns: str, name: str) -> dict | None:
    return kubectl.get("deployment", name, ns)


def _ready(kubectl: Kubectl, ns: str, name: str) -> dict | None:
    obj = kubectl.get("pipelinestep", name, ns)
    ok = (obj and condition(obj, "Ready").get("status") == "True"
          and obj["status"].get("observedGeneration") == obj["metadata"]["generation"])
    return obj if ok else None


def test_example_becomes_a_ready_deployment(kubectl: Kubectl, operator: OperatorProcess, namespace: str):
    kubectl.run("apply", "-n", namespace, "-f", str(REPO / "examples" / "pipelinestep-features.yaml"))
    dep = wait_for(lambda: _deployment(kubectl, namespace, "ztf-features"), 60, "the Deployment")
    pod = dep["spec"]["template"]["spec"]
    c = pod["containers"][0]
    assert dep["spec"]["replicas"] == 2
    assert c["command"] == ["alertops", "run", "/etc/alertops/step.yaml"]
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["automountServiceAccountToken"] is False
    env = {e["name"]: e for e in c["env"]}
    assert env["ALERTOPS_SECRET_ALERTS_POSTGRES_DSN"]["valueFrom"]["secretKeyRef"] == {
        "name": "alerts-postgres", "key": "dsn"}
    owner = dep["metadata"]["ownerReferences"][0]
    assert owner["kind"] == "PipelineStep" and owner["controller"] is True
    # The manifest rides on the pod template: the Deployment is the step's only child.
    assert "kind: PipelineStep" in dep["spec"]["template"]["metadata"]["annotations"]["alertops.io/step.yaml"]
    assert kubectl.get("configmap", "ztf-features-config", namespace) is None

    kubectl.run("wait", "--for=condition=Ready", "pipelinestep/ztf-features", "-n", namespace,
                "--timeout=120s", timeout=150)
    step = kubectl.get("pipelinestep", "ztf-features", namespace)
    assert step["status"]["phase"] == "Running" and step["status"]["readyReplicas"] == 2
    assert step["status"]["selector"] == ("app.kubernetes.io/instance=ztf-features,"
                                          "app.kubernetes.io/name=alertops-step")
    # kopf's diff base is in the status (written with it), not in an annotation.
    assert json.loads(step["status"]["kopf"]["last-handled-configuration"])["spec"]["replicas"] == 2
    assert not any(k.startswith("alertops.io/") for k in step["metadata"].get("annotations", {}))

    table = kubectl.run("get", "pipelinesteps", "-n", namespace).stdout
    header = table.splitlines()[0].split()
    assert header[:7] == ["NAME", "READY", "PHASE", "REPLICAS", "PROCESSOR", "MODEL", "AGE"]
    row = table.splitlines()[1].split()
    assert row[:5] == ["ztf-features", "True", "Running", "2/2", "features"]
    assert "ztf-features" in kubectl.run("get", "alertops", "-n", namespace).stdout

    events = kubectl.run("get", "events", "-n", namespace, "--field-selector",
                         "involvedObject.kind=PipelineStep,involvedObject.name=ztf-features").stdout
    assert "Running" in events


def test_scale_edit_suspend_delete(kubectl: Kubectl, operator: OperatorProcess, namespace: str):
    kubectl.apply(step_manifest("lifecycle"), namespace)
    wait_for(lambda: _ready(kubectl, namespace, "lifecycle"), 120, "lifecycle Ready")
    first_hash = _deployment(kubectl, namespace, "lifecycle")["spec"]["template"]["metadata"]["annotations"][HASH]

    # kubectl scale goes through the scale subresource and reaches the Deployment, without a roll.
    kubectl.run("scale", "pipelinestep", "lifecycle", "--replicas=3", "-n", namespace)
    dep = wait_for(lambda: (d := _deployment(kubectl, namespace, "lifecycle")) and d["spec"]["replicas"] == 3 and d,
                   60, "Deployment scaled to 3")
    assert dep["spec"]["template"]["metadata"]["annotations"][HASH] == first_hash
    step = wait_for(lambda: (s := _ready(kubectl, namespace, "lifecycle")) and s["status"]["replicas"] == 3 and s,
                    120, "3 ready replicas in status")
    scale = json.loads(kubectl.run(
        "get", "--raw", f"/apis/alertops.io/v1alpha1/namespaces/{namespace}/pipelinesteps/lifecycle/scale").stdout)
    assert scale["spec"]["replicas"] == 3 and scale["status"]["replicas"] == 3
    assert "app.kubernetes.io/instance=lifecycle" in scale["status"]["selector"]

    # A config edit rolls the pods with a new hash.
    kubectl.run("patch", "pipelinestep", "lifecycle", "-n", namespace, "--type=merge",
                "-p", '{"spec":{"processor":{"crossmatch":{"radiusArcsec":2.5}}}}')
    dep = wait_for(lambda: (d := _deployment(kubectl, namespace, "lifecycle"))
                   and d["spec"]["template"]["metadata"]["annotations"][HASH] != first_hash and d,
                   60, "a new config hash on the pod template")
    step = wait_for(lambda: _ready(kubectl, namespace, "lifecycle"), 120, "Ready after the roll")
    assert step["status"]["configHash"] == dep["spec"]["template"]["metadata"]["annotations"][HASH]
    assert "radiusArcsec: 2.5" in dep["spec"]["template"]["metadata"]["annotations"]["alertops.io/step.yaml"]

    # suspend scales to 0 and says so.
    kubectl.run("patch", "pipelinestep", "lifecycle", "-n", namespace, "--type=merge", "-p", '{"spec":{"suspend":true}}')
    step = wait_for(lambda: (s := kubectl.get("pipelinestep", "lifecycle", namespace))
                    and s["status"].get("phase") == "Suspended" and s, 120, "phase Suspended")
    assert _deployment(kubectl, namespace, "lifecycle")["spec"]["replicas"] == 0
    assert condition(step, "Ready")["reason"] == "Suspended"

    # Deleting the resource removes its children (ownerReferences + garbage collector).
    kubectl.run("delete", "pipelinestep", "lifecycle", "-n", namespace, "--timeout=60s", timeout=90)
    wait_for(lambda: _deployment(kubectl, namespace, "lifecycle") is None, 90, "the Deployment garbage-collected")


def test_drifted_or_deleted_child_is_restored(kubectl: Kubectl, operator: OperatorProcess, namespace: str):
    kubectl.apply(step_manifest("selfheal", replicas=2), namespace)
    wait_for(lambda: _ready(kubectl, namespace, "selfheal"), 120, "selfheal Ready")
    kubectl.run("scale", "deployment", "selfheal", "--replicas=5", "-n", namespace)
    wait_for(lambda: (d := _deployment(kubectl, namespace, "selfheal")) and d["spec"]["replicas"] == 2, 60,
             "the operator to put replicas back to 2")
    kubectl.run("delete", "deployment", "selfheal", "-n", namespace, "--wait=true", "--timeout=60s", timeout=90)
    wait_for(lambda: _deployment(kubectl, namespace, "selfheal"), 60, "the Deployment re-created")
    wait_for(lambda: _ready(kubectl, namespace, "selfheal"), 120, "selfheal Ready again")


def test_operator_metrics(operator: OperatorProcess, kubectl: Kubectl, namespace: str):
    kubectl.apply(step_manifest("metered"), namespace)
    wait_for(lambda: _ready(kubectl, namespace, "metered"), 120, "metered Ready")
    text = operator.metrics()
    assert 'alertops_operator_reconciles_total{kind="PipelineStep",result="applied"}' in text
    assert "alertops_operator_reconcile_duration_seconds_bucket" in text


def test_image_pull_failure_is_reported(kubectl: Kubectl, operator: OperatorProcess, namespace: str):
    """kwok runs no kubelet, so the test writes the pod status a kubelet writes when it cannot
    pull the image; the operator must turn it into Stalled with a message naming the image."""
    kubectl.apply(step_manifest("pull", image="registry.example/no-such-image:1"), namespace)
    wait_for(lambda: _ready(kubectl, namespace, "pull"), 120, "pull Ready")
    (pod,) = kubectl.json("get", "pods", "-n", namespace, "-l", "app.kubernetes.io/instance=pull")["items"]
    status = {"status": {"phase": "Pending",
                         "conditions": [{"type": "Ready", "status": "False"}, {"type": "PodScheduled", "status": "True"}],
                         "containerStatuses": [{
                             "name": "step", "image": "registry.example/no-such-image:1", "imageID": "",
                             "ready": False, "restartCount": 0, "started": False,
                             "state": {"waiting": {"reason": "ImagePullBackOff",
                                                   "message": 'Back-off pulling image '
                                                               '"registry.example/no-such-image:1"'}}}]}}
    kubectl.run("patch", "pod", pod["metadata"]["name"], "-n", namespace, "--subresource=status", "--type=merge",
                "-p", json.dumps(status))
    step = wait_for(lambda: (s := kubectl.get("pipelinestep", "pull", namespace))
                    and condition(s, "Stalled").get("status") == "True" and s, 60, "Stalled=True")
    stalled = condition(step, "Stalled")
    assert stalled["reason"] == "ImagePullFailed"
    assert "registry.example/no-such-image:1" in stalled["message"] and "spec.image" in stalled["message"]
    assert step["status"]["phase"] == "Failed" and condition(step, "Ready")["status"] == "False"
    assert step["status"]["lastError"] == stalled["message"]
    events = kubectl.run("get", "events", "-n", namespace, "--field-selector",
                         "involvedObject.kind=PipelineStep,involvedObject.name=pull,type=Warning").stdout
    assert "ImagePullFailed" in events


def test_refused_child_is_reported_then_retried(kubectl: Kubectl, operator: OperatorProcess, namespace: str):
    """A ResourceQuota that allows no Deployment: the API server refuses the child, the step says
    so (Stalled/ApiError, naming the quota), and converges once the quota is lifted."""
    kubectl.apply("""
apiVersion: v1
kind: ResourceQuota
metadata: {name: no-deployments}
spec: {hard: {count/deployments.apps: "0"}}
""", namespace)
    wait_for(lambda: (q := kubectl.get("resourcequota", "no-deployments", namespace))
             and (q.get("status") or {}).get("hard"), 60, "the quota to be active")
    kubectl.apply(step_manifest("quota"), namespace)
    step = wait_for(lambda: (s := kubectl.get("pipelinestep", "quota", namespace))
                    and condition(s, "Stalled").get("status") == "True" and s, 60, "Stalled=True")
    stalled = condition(step, "Stalled")
    assert stalled["reason"] == "ApiError"
    assert "exceeded quota" in stalled["message"] and "no-deployments" in stalled["message"]
    kubectl.run("delete", "resourcequota", "no-deployments", "-n", namespace)
    wait_for(lambda: _ready(kubectl, namespace, "quota"), 120, "Ready once the quota is gone")


def test_selector_leaves_other_resources_alone(kubectl: Kubectl, operator: OperatorProcess, namespace: str):
    """The session operator runs with a selector excluding PRIVATE_LABELS: of two steps applied
    together, it makes its own Ready and never touches the other (no child, no status)."""
    kubectl.apply(step_manifest("mine") + "\n---\n" + step_manifest("theirs", labels=PRIVATE_LABELS), namespace)
    wait_for(lambda: _ready(kubectl, namespace, "mine"), 120, "mine Ready")
    theirs = kubectl.get("pipelinestep", "theirs", namespace)
    assert theirs is not None and "status" not in theirs, theirs.get("status")
    assert _deployment(kubectl, namespace, "theirs") is None
