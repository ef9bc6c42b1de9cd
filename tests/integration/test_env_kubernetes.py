"""The test environment's Kubernetes is a real one: versioned API server, controllers, scheduler.

These tests talk to the cluster `scripts/testenv up kubernetes` starts (kube-apiserver,
kube-controller-manager, kube-scheduler and etcd built from source, kwok faking the nodes).
Each test works in its own namespace, deletes it afterwards, and bounds every wait.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

import pytest
from kubernetes import client, config
from kubernetes.client.rest import ApiException

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
VERSIONS_FILE = Path(__file__).resolve().parents[2] / "scripts/testenv.d/kubernetes.d/versions.sh"
WAIT_SECONDS = 90.0
REQUEST_TIMEOUT = 15  # seconds, for every API call

T = TypeVar("T")


def pinned_kubernetes_version(versions_sh: str) -> str:
    """The K8S_VERSION the test environment pins, read from the text of versions.sh."""
    match = re.search(r"^K8S_VERSION=(v\d+\.\d+\.\d+)\s*$", versions_sh, re.MULTILINE)
    if match is None:
        raise ValueError(f"no K8S_VERSION=vX.Y.Z line in {VERSIONS_FILE}")
    return match.group(1)


def is_local_server(url: str) -> bool:
    """True when the API server URL points at this machine (the test environment binds 127.0.0.1)."""
    return urlsplit(url).hostname in ("127.0.0.1", "localhost", "::1")


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = WAIT_SECONDS) -> T:
    """Poll `probe` until it returns something truthy; fail naming `what` at the deadline."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(0.25)
    pytest.fail(f"{what} did not happen within {timeout:.0f}s (last observation: {last!r})")


@pytest.fixture(scope="module")
def api(kubeconfig: str) -> client.ApiClient:
    """An API client for the test cluster; refuses any cluster not on this machine."""
    api_client = config.new_client_from_config(config_file=kubeconfig)
    # These tests create and delete namespaces and CRDs: never against a KUBECONFIG that
    # happens to point at a shared or production cluster.
    if not is_local_server(api_client.configuration.host):
        pytest.fail(f"KUBECONFIG={kubeconfig} points at {api_client.configuration.host}, expected the "
                    "test environment on 127.0.0.1 (eval \"$(scripts/testenv env)\")")
    return api_client


@pytest.fixture(scope="module")
def kubectl() -> str:
    """Path of the kubectl built with the cluster (ALERTOPS_KUBECTL from `scripts/testenv env`)."""
    path = os.environ.get("ALERTOPS_KUBECTL", "")
    if not path:
        message = "kubectl is not available: ALERTOPS_KUBECTL is unset (run `eval \"$(scripts/testenv env)\"`)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture
def namespace(api: client.ApiClient) -> Iterator[str]:
    """A fresh namespace for one test, deleted (with everything in it) afterwards."""
    core = client.CoreV1Api(api)
    name = f"testenv-{uuid.uuid4().hex[:10]}"
    core.create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=name)), _request_timeout=REQUEST_TIMEOUT
    )
    # Pods are rejected until the service-account controller has made the namespace's default account.
    wait_for(f"default service account in {name}", lambda: _exists(core.read_namespaced_service_account, "default", name))
    yield name
    core.delete_namespace(name, _request_timeout=REQUEST_TIMEOUT)


def _exists(read: Callable[..., object], name: str, namespace: str) -> bool:
    try:
        read(name, namespace, _request_timeout=REQUEST_TIMEOUT)
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return True


def _pod_template(labels: dict[str, str], restart_policy: str) -> client.V1PodTemplateSpec:
    container = client.V1Container(name="main", image="busybox:1.36", command=["true"])
    return client.V1PodTemplateSpec(
        metadata=client.V1ObjectMeta(labels=labels),
        spec=client.V1PodSpec(containers=[container], restart_policy=restart_policy),
    )


def test_pinned_version_is_served(api: client.ApiClient, kubectl: str, kubeconfig: str) -> None:
    pinned = pinned_kubernetes_version(VERSIONS_FILE.read_text())

    server = client.VersionApi(api).get_code(_request_timeout=REQUEST_TIMEOUT)
    out = subprocess.run(
        [kubectl, "--kubeconfig", kubeconfig, "--request-timeout=15s", "version", "-o", "json"],
        check=True, capture_output=True, text=True, timeout=30,
    )
    reported = json.loads(out.stdout)

    assert server.git_version == pinned
    assert reported["clientVersion"]["gitVersion"] == pinned
    assert reported["serverVersion"]["gitVersion"] == pinned


def test_deployment_becomes_ready(api: client.ApiClient, namespace: str) -> None:
    apps = client.AppsV1Api(api)
    labels = {"app": "web"}
    apps.create_namespaced_deployment(
        namespace,
        client.V1Deployment(
            metadata=client.V1ObjectMeta(name="web"),
            spec=client.V1DeploymentSpec(
                replicas=2,
                selector=client.V1LabelSelector(match_labels=labels),
                template=_pod_template(labels, "Always"),
            ),
        ),
        _request_timeout=REQUEST_TIMEOUT,
    )

    def ready_replicas() -> int | None:
        status = apps.read_namespaced_deployment_status("web", namespace, _request_timeout=REQUEST_TIMEOUT).status
        return status.ready_replicas if status.ready_replicas == 2 else None

    assert wait_for("Deployment web reaching 2 ready replicas", ready_replicas) == 2


def test_job_completes(api: client.ApiClient, namespace: str) -> None:
    batch = client.BatchV1Api(api)
    batch.create_namespaced_job(
        namespace,
        client.V1Job(
            metadata=client.V1ObjectMeta(name="once"),
            spec=client.V1JobSpec(backoff_limit=0, template=_pod_template({"job": "once"}, "Never")),
        ),
        _request_timeout=REQUEST_TIMEOUT,
    )

    def complete_condition() -> client.V1JobCondition | None:
        status = batch.read_namespaced_job_status("once", namespace, _request_timeout=REQUEST_TIMEOUT).status
        for condition in status.conditions or []:
            if condition.type in ("Complete", "Failed") and condition.status == "True":
                return condition
        return None

    condition = wait_for("Job once finishing", complete_condition)
    assert condition.type == "Complete"
    status = batch.read_namespaced_job_status("once", namespace, _request_timeout=REQUEST_TIMEOUT).status
    assert status.succeeded == 1


def test_deleting_owner_cascades_to_child(api: client.ApiClient, namespace: str) -> None:
    core = client.CoreV1Api(api)
    owner = core.create_namespaced_config_map(
        namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="owner")), _request_timeout=REQUEST_TIMEOUT
    )
    reference = client.V1OwnerReference(api_version="v1", kind="ConfigMap", name="owner", uid=owner.metadata.uid)
    core.create_namespaced_config_map(
        namespace,
        client.V1ConfigMap(metadata=client.V1ObjectMeta(name="child", owner_references=[reference])),
        _request_timeout=REQUEST_TIMEOUT,
    )
    assert _exists(core.read_namespaced_config_map, "child", namespace)

    # Background propagation: the API deletes the owner at once, the garbage collector the child.
    core.delete_namespaced_config_map(
        "owner", namespace, propagation_policy="Background", _request_timeout=REQUEST_TIMEOUT
    )

    wait_for("garbage collection of the child", lambda: not _exists(core.read_namespaced_config_map, "child", namespace))


def test_custom_resource_definition_is_served(api: client.ApiClient, namespace: str) -> None:
    extensions = client.ApiextensionsV1Api(api)
    group = f"t{uuid.uuid4().hex[:8]}.testenv.alertops.io"
    crd_name = f"widgets.{group}"
    schema = client.V1JSONSchemaProps(
        type="object",
        properties={
            "spec": client.V1JSONSchemaProps(
                type="object", properties={"size": client.V1JSONSchemaProps(type="integer")}
            )
        },
    )
    extensions.create_custom_resource_definition(
        client.V1CustomResourceDefinition(
            metadata=client.V1ObjectMeta(name=crd_name),
            spec=client.V1CustomResourceDefinitionSpec(
                group=group,
                scope="Namespaced",
                names=client.V1CustomResourceDefinitionNames(plural="widgets", singular="widget", kind="Widget"),
                versions=[
                    client.V1CustomResourceDefinitionVersion(
                        name="v1", served=True, storage=True,
                        schema=client.V1CustomResourceValidation(open_apiv3_schema=schema),
                    )
                ],
            ),
        ),
        _request_timeout=REQUEST_TIMEOUT,
    )
    try:
        def established() -> bool:
            crd = extensions.read_custom_resource_definition(crd_name, _request_timeout=REQUEST_TIMEOUT)
            return any(c.type == "Established" and c.status == "True" for c in crd.status.conditions or [])

        wait_for(f"CRD {crd_name} becoming Established", established)
        custom = client.CustomObjectsApi(api)
        body = {"apiVersion": f"{group}/v1", "kind": "Widget", "metadata": {"name": "w1"}, "spec": {"size": 3}}

        def created() -> bool:
            # Established can precede the new endpoint answering by a moment: retry a 404 only.
            try:
                custom.create_namespaced_custom_object(
                    group, "v1", namespace, "widgets", body, _request_timeout=REQUEST_TIMEOUT
                )
            except ApiException as exc:
                if exc.status == 404:
                    return False
                raise
            return True

        wait_for("creating a Widget", created)

        stored = custom.get_namespaced_custom_object(group, "v1", namespace, "widgets", "w1",
                                                     _request_timeout=REQUEST_TIMEOUT)
        assert stored["spec"] == {"size": 3}
        listed = custom.list_namespaced_custom_object(group, "v1", namespace, "widgets", _request_timeout=REQUEST_TIMEOUT)
        assert [item["metadata"]["name"] for item in listed["items"]] == ["w1"]
    finally:
        extensions.delete_custom_resource_definition(crd_name, _request_timeout=REQUEST_TIMEOUT)


def test_pinned_version_parser_rejects_a_file_without_the_line() -> None:
    assert pinned_kubernetes_version("ETCD_VERSION=v3.6.5\nK8S_VERSION=v1.34.4\n") == "v1.34.4"
    with pytest.raises(ValueError, match="K8S_VERSION"):
        pinned_kubernetes_version("K8S_VERSION=latest\n")


def test_only_local_api_servers_are_accepted() -> None:
    assert is_local_server("https://127.0.0.1:56443")
    assert is_local_server("https://localhost:6443/")
    assert not is_local_server("https://k8s.example.org:6443")
    assert not is_local_server("https://10.0.0.1")
