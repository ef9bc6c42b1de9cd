"""Helpers of the real-node end-to-end tests: the node the test environment runs beside the kwok
nodes (scripts/testenv.d/realnode), namespaces whose pods go there, and the volumes they mount.

A real-node namespace carries two annotations that the API server's PodNodeSelector and
PodTolerationRestriction admission plugins turn into a node selector and a toleration on every
pod created in it: the operator renders nothing special, yet its pods run on `real-node-0`
with the image built from the repository's Dockerfile, under the restricted Pod Security level.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from operator_harness import Kubectl, wait_for

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

NODE_LABEL = "alertops.io/node=real"
NODE_TAINT = "alertops.io/real-node"
NAMESPACE_ANNOTATIONS = {
    "scheduler.alpha.kubernetes.io/node-selector": NODE_LABEL,
    "scheduler.alpha.kubernetes.io/defaultTolerations": json.dumps(
        [{"key": NODE_TAINT, "operator": "Exists", "effect": "NoSchedule"}]),
}


@dataclass(frozen=True)
class RealNode:
    """The real node of the test environment, as `scripts/testenv env` describes it."""

    name: str
    image: str            # the repository's Dockerfile built on a Debian base, plus examples/models
                          # (a spec's model must be in the image: `FROM alertops` + `COPY`)
    containerd: str       # socket of the node's containerd
    volumes: Path         # folder on this machine for the hostPath PersistentVolumes of tests

    def ctr(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """`ctr` on the node's containerd, in the CRI namespace (k8s.io)."""
        cmd = ["ctr", "--address", self.containerd, "--namespace", "k8s.io", *args]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if result.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} failed ({result.returncode}):\n{result.stderr}")
        return result

    def kill_container(self, container_id: str) -> None:
        """SIGKILL the container's process, as the OOM killer or a crash would: no cleanup."""
        self.ctr("tasks", "kill", "--signal", "SIGKILL", container_id.removeprefix("containerd://"))


def _unavailable(message: str) -> None:
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


def real_node(kubectl: Kubectl) -> RealNode:
    """The real node, Ready; outside CI a missing node skips the test with the reason, in CI it fails."""
    name = os.environ.get("ALERTOPS_REALNODE", "")
    if not name:
        why = os.environ.get("ALERTOPS_REALNODE_UNAVAILABLE") or \
            "ALERTOPS_REALNODE is unset (run scripts/testenv up, then eval \"$(scripts/testenv env)\")"
        _unavailable(f"the real node is not available: {why}")
    node = kubectl.get("node", name, "")
    ready = [c for c in ((node or {}).get("status") or {}).get("conditions") or [] if c.get("type") == "Ready"]
    if not ready or ready[0].get("status") != "True":
        _unavailable(f"the real node {name} is not Ready in the test cluster: "
                     f"{ready[0].get('message') if ready else 'no such node'} (scripts/testenv status realnode)")
    return RealNode(name=name, image=os.environ["ALERTOPS_REALNODE_IMAGE"],
                    containerd=os.environ["ALERTOPS_REALNODE_CONTAINERD"],
                    volumes=Path(os.environ["ALERTOPS_REALNODE_VOLUMES"]))


def make_real_node_namespace(kubectl: Kubectl) -> str:
    """A namespace `real-<random>` whose pods run on the real node, at the restricted Pod Security level."""
    name = f"real-{uuid.uuid4().hex[:8]}"
    kubectl.run("apply", "-f", "-", input=json.dumps({
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": name, "annotations": NAMESPACE_ANNOTATIONS,
                     "labels": {"pod-security.kubernetes.io/enforce": "restricted",
                                "pod-security.kubernetes.io/enforce-version": "latest"}}}))
    wait_for(lambda: kubectl.get("serviceaccount", "default", name), 30, f"default ServiceAccount in {name}")
    return name


def host_path_volume(kubectl: Kubectl, node: RealNode, namespace: str, claim: str) -> Path:
    """A static hostPath PersistentVolume bound to PVC `claim` in `namespace`: a folder on this machine
    (returned) that every pod of the claim mounts, read-write, whatever its uid (mode 0777)."""
    folder = node.volumes / f"{namespace}-{claim}"
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o777)
    pv = f"{namespace}-{claim}"
    kubectl.run("apply", "-f", "-", input=json.dumps({
        "apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": {"name": pv, "labels": {"e2e.alertops.io/namespace": namespace}},
        "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteMany"],
                 "persistentVolumeReclaimPolicy": "Retain", "storageClassName": "",
                 "claimRef": {"namespace": namespace, "name": claim},
                 "hostPath": {"path": str(folder), "type": "Directory"}}}))
    kubectl.run("apply", "-n", namespace, "-f", "-", input=json.dumps({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": claim},
        "spec": {"storageClassName": "", "volumeName": pv, "accessModes": ["ReadWriteMany"],
                 "resources": {"requests": {"storage": "1Gi"}}}}))
    wait_for(lambda: ((kubectl.get("pvc", claim, namespace) or {}).get("status") or {}).get("phase") == "Bound",
             60, f"PVC {claim} Bound")
    return folder


def delete_volumes(kubectl: Kubectl, node: RealNode, namespace: str) -> None:
    """Remove the PersistentVolumes `host_path_volume` made for `namespace`, and their folders."""
    kubectl.run("delete", "pv", "-l", f"e2e.alertops.io/namespace={namespace}", "--wait=false", check=False)
    for folder in node.volumes.glob(f"{namespace}-*"):
        shutil.rmtree(folder, ignore_errors=True)


def pods(kubectl: Kubectl, namespace: str, selector: str) -> list[dict[str, Any]]:
    """The pods of `selector` in `namespace` (not yet deleted ones only)."""
    items = kubectl.json("get", "pods", "-n", namespace, "-l", selector)["items"]
    return [p for p in items if not p["metadata"].get("deletionTimestamp")]


def pod_ready(pod: dict[str, Any]) -> bool:
    """Whether the pod's Ready condition is True (its readiness probe passed)."""
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])
