"""Fixtures of the operator's end-to-end tests (local to tests/e2e)."""
from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Iterator

import pytest

from operator_harness import REPO, Kubectl, OperatorProcess, wait_for

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
    # Only the e2e-* namespaces: tests that run their own operator use other namespaces.
    op = OperatorProcess(kubeconfig, "session", "--log-format", "json", scope=("--namespace", "e2e-*")).start()
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
    """A fresh namespace the session operator does not watch (for tests with their own operator)."""
    name = make_namespace(kubectl, "own")
    yield name
    kubectl.run("delete", "namespace", name, "--wait=false", check=False)

