"""What every child object shares: names, labels, owner references, the config hash and the
hardened pod pieces. Pure functions only."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from step_runtime.spec.common import SecretKeyRef

MANAGED_BY = "alertops-operator"
PART_OF = "alertops"
ANNOTATION_PREFIX = "alertops.io"
CONFIG_HASH_ANNOTATION = f"{ANNOTATION_PREFIX}/config-hash"
CONFIG_DIR = "/etc/alertops"
STEP_CONFIG_FILE = "step.yaml"  # a PipelineStep's runtime manifest in CONFIG_DIR, read by run and fetch
HTTP_PORT = 8080
RUNTIME_UID = 10001
TERMINATION_LOG = "/dev/termination-log"
DEFAULT_IMAGE = "ghcr.io/alertops/alertops:0.1.0"


@dataclass(frozen=True)
class RenderSettings:
    """Operator-wide choices that are not in a resource's spec."""

    default_image: str = DEFAULT_IMAGE
    image_pull_policy: str = "IfNotPresent"


def label_value(value: str) -> str:
    """A label value (at most 63 characters); long names keep a hash suffix to stay unique."""
    if len(value) <= 63:
        return value
    digest = hashlib.sha256(value.encode()).hexdigest()[:8]
    return f"{value[:54].rstrip('-_.')}-{digest}"


def selector_labels(app: str, instance: str) -> dict[str, str]:
    """The labels that select a resource's pods; they never change after creation."""
    return {"app.kubernetes.io/name": app, "app.kubernetes.io/instance": label_value(instance)}


def common_labels(app: str, instance: str, component: str, user_labels: dict[str, str] | None = None) -> dict[str, str]:
    """Labels of every child: the user's labels, then ours (ours win: they select pods)."""
    labels = dict(user_labels or {})
    labels.update(selector_labels(app, instance))
    labels.update({
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/managed-by": MANAGED_BY,
        "app.kubernetes.io/part-of": PART_OF,
    })
    return labels


def selector_string(labels: dict[str, str]) -> str:
    """`a=b,c=d` as the scale subresource's `.status.selector` wants it."""
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def owner_reference(resource: dict[str, Any]) -> dict[str, Any]:
    """The controller ownerReference that makes deletion of `resource` cascade to a child."""
    meta = resource["metadata"]
    return {
        "apiVersion": resource["apiVersion"],
        "kind": resource["kind"],
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def canonical_spec(spec: BaseModel) -> dict[str, Any]:
    """The spec as the runtime will read it: camelCase, defaults filled in, nulls left out."""
    return spec.model_dump(by_alias=True, exclude_none=True, mode="json")


# Spec fields that scale a step's pods but never change them: a kubectl scale must not roll.
NOT_ROLLED = ("replicas", "suspend")


def _spec_without(spec: BaseModel, exclude: tuple[str, ...]) -> dict[str, Any]:
    return {k: v for k, v in canonical_spec(spec).items() if k not in exclude}


def config_hash(spec: BaseModel, exclude: tuple[str, ...] = NOT_ROLLED) -> str:
    """Hash of the spec minus the fields that must not roll pods (replicas, suspend)."""
    text = json.dumps(_spec_without(spec, exclude), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def runtime_manifest(resource: dict[str, Any], spec: BaseModel, exclude: tuple[str, ...] = ()) -> dict[str, Any]:
    """The manifest the runtime reads from CONFIG_DIR: the resource minus status and noise, and
    minus the spec fields in `exclude`."""
    meta = resource["metadata"]
    return {
        "apiVersion": resource["apiVersion"],
        "kind": resource["kind"],
        "metadata": {"name": meta["name"], "namespace": meta.get("namespace", "default")},
        "spec": _spec_without(spec, exclude),
    }


def secret_env(refs: list[SecretKeyRef]) -> list[dict[str, Any]]:
    """One env var per Secret key, named as the runtime expects (`SecretKeyRef.env_var_name`)."""
    return [
        {"name": ref.env_var_name(), "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}}}
        for ref in refs
    ]


def pod_security_context() -> dict[str, Any]:
    """Pod-level hardening: a fixed non-root user and the runtime's default seccomp profile."""
    return {
        "runAsNonRoot": True,
        "runAsUser": RUNTIME_UID,
        "runAsGroup": RUNTIME_UID,
        "fsGroup": RUNTIME_UID,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container_security_context() -> dict[str, Any]:
    """Container-level hardening: read-only root, no privilege escalation, no capabilities."""
    return {
        "runAsNonRoot": True,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def child_metadata(name: str, namespace: str, labels: dict[str, str], owner: dict[str, Any],
                   digest: str) -> dict[str, Any]:
    """Metadata every child carries: its labels, the config hash, and the owner that deletes it."""
    return {
        "name": name,
        "namespace": namespace,
        "labels": labels,
        "annotations": {CONFIG_HASH_ANNOTATION: digest},
        "ownerReferences": [owner],
    }


def runtime_manifest_yaml(resource: dict[str, Any], spec: BaseModel, exclude: tuple[str, ...] = ()) -> str:
    """`runtime_manifest` as the YAML file the runtime reads (no secrets: only references)."""
    import yaml

    text: str = yaml.safe_dump(runtime_manifest(resource, spec, exclude), sort_keys=False)
    return text


def config_map(name: str, namespace: str, labels: dict[str, str], owner: dict[str, Any],
               file_name: str, content: str, digest: str) -> dict[str, Any]:
    """A ConfigMap holding the runtime's manifest as one YAML file."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": child_metadata(name, namespace, labels, owner, digest),
        "data": {file_name: content},
    }


def config_volume(config_map_name: str) -> dict[str, Any]:
    """The ConfigMap volume mounted read-only at CONFIG_DIR."""
    return {"name": "config", "configMap": {"name": config_map_name}}


def base_env() -> list[dict[str, Any]]:
    """Env every runtime container gets: its own identity, for logs and metrics."""
    return [
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
    ]
