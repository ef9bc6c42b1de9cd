"""Pod Security admission: a namespace that enforces the `restricted` level admits every pod the
operator renders, steps and builds alike (partitions and merge included).

The API server enforces Pod Security at admission, when a controller creates a pod, so kwok
nodes suffice: a refused pod never exists and its controller records FailedCreate.
"""
from __future__ import annotations

import json

from operator_harness import Kubectl, OperatorProcess, condition, step_manifest, wait_for
from test_operator_trainingset import build_manifest

RESTRICTED = ("pod-security.kubernetes.io/enforce=restricted", "pod-security.kubernetes.io/enforce-version=latest")

# Every pod-level feature a step can render: Secret env vars, user env, resources.
STEP_EXTRAS = """
  env:
    - {name: LOG_LEVEL, value: debug}
    - {name: API_TOKEN, secretKeyRef: {name: tokens, key: api}}
  resources: {requests: {cpu: 50m, memory: 64Mi}, limits: {memory: 256Mi}}
"""

# Not what the operator renders: a privileged pod, which the namespace must refuse.
PRIVILEGED_POD = {
    "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "psa-probe"},
    "spec": {"containers": [{"name": "c", "image": "registry.example/probe:1",
                             "securityContext": {"privileged": True}}]},
}


def _pods(kubectl: Kubectl, ns: str, instance: str) -> list[dict]:
    return kubectl.json("get", "pods", "-n", ns, "-l", f"app.kubernetes.io/instance={instance}")["items"]


def _failed_creates(kubectl: Kubectl, ns: str) -> list[str]:
    events = kubectl.json("get", "events", "-n", ns, "--field-selector", "reason=FailedCreate")["items"]
    return [e.get("message", "") for e in events]


def test_restricted_namespace_admits_every_rendered_pod(kubectl: Kubectl, operator: OperatorProcess, namespace: str):
    kubectl.run("label", "namespace", namespace, *RESTRICTED)
    # The level is enforced here: a pod that does not meet it is refused at admission.
    refused = kubectl.run("apply", "-n", namespace, "-f", "-", input=json.dumps(PRIVILEGED_POD), check=False)
    assert refused.returncode != 0 and 'violates PodSecurity "restricted:latest"' in refused.stderr, refused.stderr

    kubectl.apply(step_manifest("psa-step", replicas=2) + STEP_EXTRAS, namespace)
    kubectl.apply(build_manifest("psa-single", 1), namespace)
    kubectl.apply(build_manifest("psa-parts", 3), namespace)
    with_claim = build_manifest("psa-claim", 1).replace("spec:\n", "spec:\n  dataVolumeClaim: training-data\n", 1)
    kubectl.apply(with_claim, namespace)

    wait_for(lambda: len(_pods(kubectl, namespace, "psa-step")) == 2, 120, "2 step pods created")
    for name in ("psa-single", "psa-parts"):
        build = wait_for(lambda name=name: (b := kubectl.get("trainingsetbuild", name, namespace))
                         and (b.get("status") or {}).get("phase") == "Succeeded" and b, 180, f"{name} Succeeded")
        assert condition(build, "Ready")["status"] == "True"
    # The claim does not exist, so its pod is never scheduled; but it was admitted.
    wait_for(lambda: _pods(kubectl, namespace, "psa-claim"), 120, "the build pod with a data volume claim")

    roles = {p["metadata"]["labels"].get("alertops.io/role") for p in _pods(kubectl, namespace, "psa-parts")}
    assert roles == {"partition", "merge"}
    assert len(_pods(kubectl, namespace, "psa-parts")) == 4 and len(_pods(kubectl, namespace, "psa-single")) == 1
    assert _failed_creates(kubectl, namespace) == []
