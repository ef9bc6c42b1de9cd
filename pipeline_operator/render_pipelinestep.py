"""PipelineStep -> ConfigMap + Deployment, as pure functions (resource dict in, manifests out)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pipeline_operator.children import (
    CONFIG_DIR,
    CONFIG_HASH_ANNOTATION,
    HTTP_PORT,
    STEP_CONFIG_FILE,
    RenderSettings,
    base_env,
    child_metadata,
    common_labels,
    config_hash,
    config_map,
    config_volume,
    container_security_context,
    owner_reference,
    pod_security_context,
    runtime_manifest,
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


@dataclass(frozen=True)
class RenderedStep:
    """The children of one PipelineStep and the facts its status needs (not the spec model:
    the operator keeps one of these per step in memory, and the manifests say it all)."""

    suspend: bool
    config_hash: str
    config_map: dict[str, Any]
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


def config_map_name(name: str) -> str:
    """Name of the ConfigMap of PipelineStep `name`."""
    return f"{name}-config"


def with_image(spec: PipelineStepSpec, settings: RenderSettings) -> PipelineStepSpec:
    """The spec with its image resolved: unset means the operator's `--default-image`.

    The effective image goes into the ConfigMap and the config hash, so a step that leaves
    `image` unset renders exactly like one that names the default image (an operator upgrade
    rolls no pod), and a new `--default-image` rolls the steps that follow it.
    """
    if spec.image is not None:
        return spec
    return spec.model_copy(update={"image": settings.default_image})


def render(resource: dict[str, Any], settings: RenderSettings = RenderSettings()) -> RenderedStep:
    """Render the ConfigMap and Deployment of a PipelineStep resource."""
    spec = with_image(parse(resource), settings)
    meta = resource["metadata"]
    name, namespace = meta["name"], meta.get("namespace", "default")
    digest = config_hash(spec)
    labels = common_labels(APP, name, COMPONENT, meta.get("labels"))
    owner = owner_reference(resource)
    cm = config_map(config_map_name(name), namespace, labels, owner, STEP_CONFIG_FILE,
                    runtime_manifest(resource, spec), digest)
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
                        "prometheus.io/scrape": "true",
                        "prometheus.io/port": str(HTTP_PORT),
                        "prometheus.io/path": "/metrics",
                        **model_annotations(spec),
                    },
                },
                "spec": pod_spec(spec, config_map_name(name), settings),
            },
        },
    }
    return RenderedStep(suspend=spec.suspend, config_hash=digest, config_map=cm, deployment=deployment,
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


def pod_spec(spec: PipelineStepSpec, cm_name: str, settings: RenderSettings) -> dict[str, Any]:
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
        "volumes": [config_volume(cm_name), {"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}}, *file_volumes(spec)],
    }
    init = fetch_init_containers(spec, image, settings.image_pull_policy, resources)
    if init:
        pod["initContainers"] = init
    return pod
