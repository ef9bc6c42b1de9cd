"""TrainingSetBuild -> ConfigMap + Job(s), as pure functions.

parallelism 1: one Job running `alertops build FILE`. parallelism P > 1: an Indexed Job with
P completions running `alertops build FILE --partition-from-env` (the index comes from
JOB_COMPLETION_INDEX), then, once every partition succeeded, a merge Job running `--merge`.

Job names carry the config hash: a Job's pod template is immutable, so a spec edit gets new
Jobs (and the old ones are deleted) instead of a failed update.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pipeline_operator.children import (
    ANNOTATION_PREFIX,
    CONFIG_DIR,
    CONFIG_HASH_ANNOTATION,
    TERMINATION_LOG,
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
    runtime_manifest_yaml,
    secret_env,
)
from step_runtime.spec.common import parse_spec
from step_runtime.spec.trainingset import TrainingSetBuildSpec

APP = "alertops-trainingset"
COMPONENT = "trainingsetbuild"
CONFIG_FILE = "trainingset.yaml"
CONTAINER = "build"
DATA_DIR = "/data"
ROLE_LABEL = f"{ANNOTATION_PREFIX}/role"
HASH_LABEL = f"{ANNOTATION_PREFIX}/config-hash"

ROLE_BUILD, ROLE_PARTITION, ROLE_MERGE = "build", "partition", "merge"


@dataclass(frozen=True)
class RenderedBuild:
    """The children of one TrainingSetBuild. `merge_job` is None for a single-Job build."""

    suspend: bool
    config_hash: str
    config_map: dict[str, Any]
    main_job: dict[str, Any]
    merge_job: dict[str, Any] | None
    partitions: int


def parse(resource: dict[str, Any]) -> TrainingSetBuildSpec:
    """The validated spec of a TrainingSetBuild resource (SpecError names the field on bad input)."""
    meta = resource.get("metadata", {})
    source = f"TrainingSetBuild {meta.get('namespace', '')}/{meta.get('name', '')}"
    return parse_spec(TrainingSetBuildSpec, resource.get("spec") or {}, source)


def job_name(name: str, role: str, digest: str) -> str:
    """`<name>-<role>-<hash8>`, shortened so pod labels (job-name) stay within 63 characters."""
    suffix = f"-{role}-{digest[:8]}"
    return f"{name[:63 - len(suffix)].rstrip('-.')}{suffix}"


def render(resource: dict[str, Any], settings: RenderSettings = RenderSettings()) -> RenderedBuild:
    """Render the ConfigMap and Job(s) of a TrainingSetBuild resource."""
    spec = parse(resource)
    meta = resource["metadata"]
    name, namespace = meta["name"], meta.get("namespace", "default")
    digest = config_hash(spec, exclude=("suspend",))
    labels = common_labels(APP, name, COMPONENT, meta.get("labels"))
    owner = owner_reference(resource)
    cm_name = f"{name}-config"
    cm = config_map(cm_name, namespace, labels, owner, CONFIG_FILE, runtime_manifest_yaml(resource, spec), digest)
    image = spec.image or settings.default_image
    claim = spec.data_volume_claim
    partitions = spec.parallelism

    def job(role: str, extra_args: list[str], completions: int | None) -> dict[str, Any]:
        job_labels = {**labels, ROLE_LABEL: role, HASH_LABEL: digest}
        job_spec: dict[str, Any] = {
            "suspend": spec.suspend,
            "backoffLimit": spec.backoff_limit,
            "template": {
                "metadata": {"labels": job_labels, "annotations": {CONFIG_HASH_ANNOTATION: digest}},
                "spec": pod_spec(spec, cm_name, image, claim, extra_args, settings),
            },
        }
        if spec.ttl_seconds_after_finished is not None:
            job_spec["ttlSecondsAfterFinished"] = spec.ttl_seconds_after_finished
        if completions is not None:
            job_spec.update({"completionMode": "Indexed", "completions": completions, "parallelism": completions})
        return {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": child_metadata(job_name(name, role, digest), namespace, job_labels, owner, digest),
            "spec": job_spec,
        }

    if partitions == 1:
        main, merge = job(ROLE_BUILD, [], None), None
    else:
        main = job(ROLE_PARTITION, ["--partition-from-env"], partitions)
        merge = job(ROLE_MERGE, ["--merge"], None)
    return RenderedBuild(suspend=spec.suspend, config_hash=digest, config_map=cm, main_job=main, merge_job=merge,
                         partitions=partitions)


def pod_spec(spec: TrainingSetBuildSpec, cm_name: str, image: str, claim: str | None,
             extra_args: list[str], settings: RenderSettings) -> dict[str, Any]:
    """A build pod: `alertops build` on the mounted manifest, summary to the termination log."""
    env = base_env() + [{"name": "ALERTOPS_TERMINATION_MESSAGE_PATH", "value": TERMINATION_LOG},
                        # source/catalog files given by a uri are fetched into the pod's /tmp emptyDir
                        {"name": "ALERTOPS_FETCH_DIR", "value": "/tmp/alertops-fetched"}]
    env += secret_env(spec.secret_refs())
    data_volume: dict[str, Any] = (
        {"name": "data", "persistentVolumeClaim": {"claimName": claim}} if claim
        else {"name": "data", "emptyDir": {}}
    )
    resources = {k: v for k, v in (("requests", spec.resources.requests), ("limits", spec.resources.limits)) if v}
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": image,
        "imagePullPolicy": settings.image_pull_policy,
        "command": ["alertops", "build", f"{CONFIG_DIR}/{CONFIG_FILE}", "--output-dir", DATA_DIR, *extra_args],
        "env": env,
        "securityContext": container_security_context(),
        "terminationMessagePath": TERMINATION_LOG,
        # On a crash the log tail becomes the message, so status can say why the build failed.
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "volumeMounts": [
            {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
            {"name": "data", "mountPath": DATA_DIR},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
    }
    if resources:
        container["resources"] = resources
    return {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": pod_security_context(),
        "containers": [container],
        "volumes": [config_volume(cm_name), data_volume, {"name": "tmp", "emptyDir": {}}],
    }
