"""Fixtures of the operator's end-to-end tests (local to tests/e2e)."""
from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Iterator

import pytest
from operator_harness import LOG_DIR, REPO, SESSION_SELECTOR, Kubectl, OperatorProcess, wait_for
from realnode_harness import RealNode, delete_volumes, make_real_node_namespace, real_node

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


@pytest.fixture(scope="session")
def kubectl(kubeconfig: str) -> Kubectl:
    """The real kubectl of the test environment ($ALERTOPS_KUBECTL)."""
    binary = os.environ.get("ALERTOPS_KUBECTL", "")
    if not binary or not Path(binary).exists():
        message = "kubectl of the test environment is not available: ALERTOPS_KUBECTL is unset"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return Kubectl(binary, kubeconfig)


@pytest.fixture(scope="session")
def crds(kubectl: Kubectl) -> None:
    """The CRDs from crds/, applied and Established."""
    kubectl.run("apply", "--server-side", "--force-conflicts", "-f", str(REPO / "crds" / "pipelinesteps.alertops.io.yaml"),
                "-f", str(REPO / "crds" / "trainingsetbuilds.alertops.io.yaml"))
    kubectl.run("wait", "--for=condition=Established", "--timeout=60s",
                "crd/pipelinesteps.alertops.io", "crd/trainingsetbuilds.alertops.io", timeout=90)


@pytest.fixture(scope="session")
def operator(kubeconfig: str, crds: None) -> Iterator[OperatorProcess]:
    """One `alertops operator` for the session (tests that kill it start their own)."""
    # Cluster-wide, as deploy/ runs it. Not `--namespace e2e-*`: with a namespace pattern kopf
    # (1.45) starts and stops watchers as namespaces come and go, and a namespace deleted before
    # its first listing finished leaves a readiness toggle that blocks every handler for good.
    # Tests that run an operator of their own label their resources, and this selector skips them.
    op = OperatorProcess(kubeconfig, "session", "--log-format", "json", *SESSION_SELECTOR,
                         scope=("--all-namespaces",)).start()
    yield op
    op.stop()


def make_namespace(kubectl: Kubectl, prefix: str) -> str:
    """Create a namespace `<prefix>-<random>` and wait for its default ServiceAccount."""
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    kubectl.run("create", "namespace", name)
    wait_for(lambda: kubectl.get("serviceaccount", "default", name), 30, f"default ServiceAccount in {name}")
    return name


@pytest.fixture
def namespace(kubectl: Kubectl, crds: None) -> Iterator[str]:
    """A fresh namespace per test (watched by the session operator), deleted afterwards."""
    name = make_namespace(kubectl, "e2e")
    yield name
    kubectl.run("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture
def private_namespace(kubectl: Kubectl, crds: None) -> Iterator[str]:
    """A fresh namespace for tests with an operator of their own (their resources carry PRIVATE_LABELS)."""
    name = make_namespace(kubectl, "own")
    yield name
    kubectl.run("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture(scope="session")
def realnode(kubectl: Kubectl) -> RealNode:
    """The test environment's real node (kubelet + containerd); skipped (failed in CI) when it is not up."""
    return real_node(kubectl)


@pytest.fixture
def realnode_namespace(kubectl: Kubectl, crds: None, realnode: RealNode) -> Iterator[str]:
    """A fresh namespace whose pods run on the real node (restricted Pod Security), deleted afterwards."""
    name = make_real_node_namespace(kubectl)
    yield name
    kubectl.run("delete", "namespace", name, "--wait=false", check=False)
    delete_volumes(kubectl, realnode, name)


def _diagnostics(kubectl: Kubectl, namespace: str) -> str:
    """What a person debugging a failed e2e test looks at first: the namespace's objects, the
    alertops resources' status, and the end of the session operator's log."""
    parts = []
    listing = kubectl.run("get", "pipelinesteps,trainingsetbuilds,deployments,jobs,pods", "-n", namespace,
                          "-o", "wide", check=False, timeout=30)
    parts.append(listing.stdout + listing.stderr)
    events = kubectl.run("get", "events", "-n", namespace, "--sort-by=.lastTimestamp", check=False, timeout=30)
    parts.append("events:\n" + "\n".join((events.stdout + events.stderr).splitlines()[-30:]))
    for kind in ("pipelinesteps", "trainingsetbuilds"):
        for item in kubectl.json("get", kind, "-n", namespace)["items"]:
            parts.append(f"{kind}/{item['metadata']['name']} status: {json.dumps(item.get('status'))}")
    log = LOG_DIR / "operator-session.log"
    if log.exists():
        parts.append("session operator log (last 30 lines):\n" + "\n".join(
            log.read_text(errors="replace").splitlines()[-30:]))
    return "\n".join(parts)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    """On a failed e2e test, add the cluster's and the operator's view to its report (CI prints it)."""
    outcome = yield
    report = outcome.get_result()
    if report.when != "call" or not report.failed:
        return
    kubectl = item.funcargs.get("kubectl")
    namespace = item.funcargs.get("namespace") or item.funcargs.get("realnode_namespace")
    if isinstance(kubectl, Kubectl) and isinstance(namespace, str):
        try:
            report.sections.append(("e2e diagnostics", _diagnostics(kubectl, namespace)))
        except Exception as exc:
            report.sections.append(("e2e diagnostics", f"could not collect: {exc}"))
