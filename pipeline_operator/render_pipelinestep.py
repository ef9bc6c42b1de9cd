"""PipelineStep -> Deployment, as pure functions (resource dict in, manifest out).

The runtime's manifest rides on the pod template, in the annotation `alertops.io/step.yaml`,
and a downward-API volume shows it to the container as /etc/alertops/step.yaml. A step is then
one object to apply, not two: with 1,000 steps created at once the API server is the bottleneck,
and on this project's 2-core test machine each request per step added about 6 s to applying
them all. A TrainingSetBuild keeps its ConfigMap: its partition and merge Jobs share it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pipeline_operator.children import (
    ANNOTATION_PREFIX,
    CONFIG_DIR,
    CONFIG_HASH_ANNOTATION,
    HTTP_PORT,
    NOT_ROLLED,
    STEP_CONFIG_FILE,
    RenderSettings,
    base_env,
    child_metadata,
    common_labels,
    config_hash,
    container_security_context,
    owner_reference,
    pod_security_context,
    runtime_manifest_yaml,
    secret_env,
    selector_labels,
    selector_string,
)
from pipeline_operator.render_volumes import fetch_init_containers, file_env, file_volumes, step_mounts, step_secret_refs
from pipeline_operator.rollout import model_annotations
from pipeline_operator.shadow import Footprint, footprint
from step_runtime.spec.common import parse_spec
from step_runtime.spec.pipelinestep import PipelineStepSpec

APP = "alertops-step"
COMPONENT = "pipelinestep"
CONTAINER = "step"
MANIFEST_ANNOTATION = f"{ANNOTATION_PREFIX}/{STEP_CONFIG_FILE}"


@dataclass(frozen=True)
class RenderedStep:
    """The children of one PipelineStep and the facts its status needs (not the spec model:
    the operator keeps one of these per step in memory, and the manifests say it all)."""

    suspend: bool
    config_hash: str
    deployment: dict[str, Any]
    selector: str
    processor: str
    desired_replicas: int
    footprint: Footprint  # what the shadow check needs (pipeline_operator.shadow)


def parse(resource: dict[str, Any]) -> PipelineStepSpec:
    """The validated spec of a PipelineStep resource (SpecError names the field on bad input)."""
    meta = resource.get("metadata", {})
    source = f"PipelineStep {meta.get('namespace', '')}/{meta.get('name', '')}"
    return parse_spec(PipelineStepSpec, resource.get("spec") or {}, source)


def with_image(spec: PipelineStepSpec, settings: RenderSettings) -> PipelineStepSpec:
    """The spec with its image resolved: unset means the operator's `--default-image`.

    The effective image goes into the runtime's manifest and the config hash, so a step that leaves
    `image` unset renders exactly like one that names the default image (an operator upgrade
    rolls no pod), and a new `--default-image` rolls the steps that follow it.
    """
    if spec.image is not None:
        return spec
    return spec.model_copy(update={"image": settings.default_image})


def render(resource: dict[str, Any], settings: RenderSettings = RenderSettings()) -> RenderedStep:
    """Render the Deployment of a PipelineStep resource."""
    spec = with_image(parse(resource), settings)
    meta = resource["metadata"]
    name, namespace = meta["name"], meta.get("namespace", "default")
    digest = config_hash(spec)
    labels = common_labels(APP, name, COMPONENT, meta.get("labels"))
    owner = owner_reference(resource)
    replicas = 0 if spec.suspend else spec.replicas
    selector = selector_labels(APP, name)
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": child_metadata(name, namespace, labels, owner, digest),
        "spec": {
            "replicas": replicas,
            "revisionHistoryLimit": 3,
            "progressDeadlineSeconds": 600,
            "selector": {"matchLabels": selector},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
            "template": {
                "metadata": {
                    "labels": labels,
                    "annotations": {
                        CONFIG_HASH_ANNOTATION: digest,
                        # without replicas and suspend (the runtime reads neither): a scale
                        # changes the Deployment's replicas, never its pods
                        MANIFEST_ANNOTATION: runtime_manifest_yaml(resource, spec, NOT_ROLLED),
                        "prometheus.io/scrape": "true",
                        "prometheus.io/port": str(HTTP_PORT),
                        "prometheus.io/path": "/metrics",
                        **model_annotations(spec),
                    },
                },
                "spec": pod_spec(spec, settings),
            },
        },
    }
    return RenderedStep(suspend=spec.suspend, config_hash=digest, deployment=deployment,
                        selector=selector_string(selector), processor=spec.processor.kind(),
                        desired_replicas=replicas, footprint=footprint(spec))


def container_env(spec: PipelineStepSpec) -> list[dict[str, Any]]:
    """Identity, then one env var per referenced Secret key, then the user's env."""
    env = base_env()
    env.append({"name": "ALERTOPS_HTTP_PORT", "value": str(HTTP_PORT)})
    env.extend(file_env(spec))
    env.extend(secret_env(step_secret_refs(spec)))
    for var in spec.env:
        if var.secret_key_ref is not None:
            env.append({"name": var.name, "valueFrom": {"secretKeyRef": {
                "name": var.secret_key_ref.name, "key": var.secret_key_ref.key}}})
        else:
            env.append({"name": var.name, "value": var.value})
    return env


def pod_spec(spec: PipelineStepSpec, settings: RenderSettings) -> dict[str, Any]:
    """The pod of a step: `alertops run` on the mounted manifest, probed on its HTTP port."""
    resources = {k: v for k, v in (("requests", spec.resources.requests), ("limits", spec.resources.limits)) if v}
    image = spec.image or settings.default_image
    pod: dict[str, Any] = {
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        # A batch in flight is finished or abandoned (never half-committed) before exit.
        "terminationGracePeriodSeconds": 60,
        "securityContext": pod_security_context(),
        "containers": [{
            "name": CONTAINER,
            "image": image,
            "imagePullPolicy": settings.image_pull_policy,
            "command": ["alertops", "run", f"{CONFIG_DIR}/{STEP_CONFIG_FILE}"],
            "ports": [{"name": "http", "containerPort": HTTP_PORT, "protocol": "TCP"}],
            "env": container_env(spec),
            "resources": resources,
            "livenessProbe": {
                "httpGet": {"path": "/healthz", "port": "http"},
                "initialDelaySeconds": 10, "periodSeconds": 10, "timeoutSeconds": 5, "failureThreshold": 6,
            },
            "readinessProbe": {
                "httpGet": {"path": "/readyz", "port": "http"},
                "periodSeconds": 5, "timeoutSeconds": 5, "failureThreshold": 3,
            },
            "securityContext": container_security_context(),
            # A refused model or a crash at start: its one-line error becomes the status message.
            "terminationMessagePolicy": "FallbackToLogsOnError",
            "volumeMounts": [
                {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
                {"name": "tmp", "mountPath": "/tmp"},
                *step_mounts(spec),
            ],
        }],
        "volumes": [manifest_volume(), {"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}}, *file_volumes(spec)],
    }
    init = fetch_init_containers(spec, image, settings.image_pull_policy, resources)
    if init:
        pod["initContainers"] = init
    return pod


def manifest_volume() -> dict[str, Any]:
    """The volume that shows the pod's MANIFEST_ANNOTATION as the file STEP_CONFIG_FILE."""
    return {"name": "config", "downwardAPI": {"items": [{
        "path": STEP_CONFIG_FILE,
        "fieldRef": {"fieldPath": f"metadata.annotations['{MANIFEST_ANNOTATION}']"},
    }]}}


def manifest_text(deployment: dict[str, Any]) -> str:
    """The runtime manifest a step's Deployment carries (what its pods read as STEP_CONFIG_FILE)."""
    text: str = deployment["spec"]["template"]["metadata"]["annotations"][MANIFEST_ANNOTATION]
    return text
