"""`kubectl apply -k deploy/` on the real API server, and the operator working with exactly
the RBAC it ships (its ServiceAccount's token, not the admin kubeconfig)."""
from __future__ import annotations

from pathlib import Path

from operator_harness import (
    PRIVATE_LABELS,
    PRIVATE_SELECTOR,
    REPO,
    Kubectl,
    OperatorProcess,
    condition,
    service_account_kubeconfig,
    step_manifest,
    wait_for,
)

SA = "system:serviceaccount:alertops-system:alertops-operator"


def test_apply_kustomize_base(kubectl: Kubectl, crds: None):
    kubectl.run("apply", "--server-side", "--force-conflicts", "-k", str(REPO / "deploy"), timeout=120)
    dep = kubectl.get("deployment", "alertops-operator", "alertops-system")
    assert dep["spec"]["replicas"] == 1 and dep["spec"]["strategy"]["type"] == "Recreate"
    assert dep["spec"]["template"]["spec"]["serviceAccountName"] == "alertops-operator"
    for verb, resource in [("patch", "pipelinesteps.alertops.io/status"), ("create", "deployments.apps"),
                           ("watch", "pods"), ("delete", "jobs.batch"), ("create", "events")]:
        assert kubectl.run("auth", "can-i", verb, resource, "--as", SA, "-A").stdout.strip() == "yes", (verb, resource)
    for verb, resource in [("get", "secrets"), ("delete", "deployments.apps"), ("create", "pods"),
                           ("delete", "pipelinesteps.alertops.io")]:
        result = kubectl.run("auth", "can-i", verb, resource, "--as", SA, "-A", check=False)
        assert result.stdout.strip() == "no", (verb, resource)


def test_operator_runs_with_its_own_rbac(kubectl: Kubectl, crds: None, private_namespace: str, tmp_path: Path):
    kubectl.run("apply", "--server-side", "--force-conflicts", "-k", str(REPO / "deploy"), timeout=120)
    path = service_account_kubeconfig(kubectl, tmp_path / "operator-kubeconfig")
    op = OperatorProcess(str(path), "rbac", *PRIVATE_SELECTOR, scope=("--namespace", private_namespace)).start()
    try:
        kubectl.apply(step_manifest("rbac-step", labels=PRIVATE_LABELS), private_namespace)
        step = wait_for(lambda: (s := kubectl.get("pipelinestep", "rbac-step", private_namespace))
                        and condition(s, "Ready").get("status") == "True" and s, 120,
                        "Ready with the operator's own RBAC")
        assert step["status"]["phase"] == "Running"
    finally:
        op.stop()
    assert "forbidden" not in op.log_path.read_text().lower(), op.log_tail()
