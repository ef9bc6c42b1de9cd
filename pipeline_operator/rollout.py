"""Which model the ready pods of a step run, as pure functions.

The operator writes the model's name, version, sha256 and source into the pod template's
annotations. Every pod of a ReplicaSet carries its template's annotations, and the runtime
passes its readiness probe only after it loaded the pinned file, so the annotations of the
*ready* pods say what is running: during a rollout, the old and the new version side by side;
after it, the one version everyone runs. The spec alone would only say what is wanted.
"""
from __future__ import annotations

from typing import Any

from pipeline_operator.children import ANNOTATION_PREFIX
from pipeline_operator.conditions import Verdict
from step_runtime.spec.pipelinestep import PipelineStepSpec

MODEL_NAME = f"{ANNOTATION_PREFIX}/model-name"
MODEL_VERSION = f"{ANNOTATION_PREFIX}/model-version"
MODEL_SHA256 = f"{ANNOTATION_PREFIX}/model-sha256"
MODEL_SOURCE = f"{ANNOTATION_PREFIX}/model-source"


def model_annotations(spec: PipelineStepSpec) -> dict[str, str]:
    """Pod-template annotations naming the step's model (none for other processors)."""
    model = spec.processor.model
    if model is None:
        return {}
    return {MODEL_NAME: model.classifier_name, MODEL_VERSION: model.classifier_version,
            MODEL_SHA256: model.sha256, MODEL_SOURCE: model.uri or model.path or ""}


def _ready(pod: dict[str, Any]) -> bool:
    for c in (pod.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            return bool(c.get("status") == "True")
    return False


def ready_models(pods: list[dict[str, Any]]) -> dict[str, Any]:
    """Status fields `models`, `modelVersion` and `modelSha256` from the ready pods' annotations.

    `models` lists each distinct model with its ready pods; `modelVersion` is the one version
    all ready pods run, or the versions joined by ", " mid-rollout; `modelSha256` is set only
    when every ready pod runs the same file. No ready pod: all empty.
    """
    groups: dict[tuple[str, str, str, str], int] = {}
    for pod in pods:
        notes = (pod.get("metadata") or {}).get("annotations") or {}
        if MODEL_VERSION not in notes or not _ready(pod):
            continue
        key = (notes.get(MODEL_NAME, ""), notes[MODEL_VERSION], notes.get(MODEL_SHA256, ""),
               notes.get(MODEL_SOURCE, ""))
        groups[key] = groups.get(key, 0) + 1
    models: list[dict[str, Any]] = [
        {"classifierName": n, "classifierVersion": v, "sha256": h, "source": s, "readyReplicas": count}
        for (n, v, h, s), count in sorted(groups.items(), key=lambda kv: (-kv[1], kv[0]))]
    versions = sorted({m["classifierVersion"] for m in models})
    hashes = {m["sha256"] for m in models}
    return {
        "models": models,
        "modelVersion": ", ".join(versions) or None,
        "modelSha256": next(iter(hashes)) if len(hashes) == 1 else None,
    }


# ------------------------------------------------------------------------------------------
# The fetch init container, as pod status shows it
# ------------------------------------------------------------------------------------------

FETCH_CONTAINER = "fetch"
# The runtime's and the fetch's refusal of a file whose sha256 is not the pinned one ends so.
PIN_REFUSAL_MARK = ", the spec pins "


def fetch_problem(pod_name: str, container_status: dict[str, Any], detail: str) -> Verdict | None:
    """The verdict for a crash-looping container whose last words are about a model or catalog
    file: `ChecksumMismatch` (the message names the URI or path and both hashes) or, for the
    fetch init container, `FetchFailed`. None for any other crash."""

    restarts = container_status.get("restartCount", 0)
    detail = " ".join(detail.split())[-600:]
    if PIN_REFUSAL_MARK in detail:
        return Verdict("stalled", "ChecksumMismatch",
                       f"pod {pod_name} refuses its file ({restarts} restarts): {detail}; pin the file you mean "
                       f"(sha256sum it) or put the pinned file back where the spec points")
    if container_status.get("name") == FETCH_CONTAINER:
        return Verdict("stalled", "FetchFailed",
                       f"pod {pod_name} cannot fetch its files ({restarts} restarts, retried with backoff): {detail}")
    return None


def fetching(pods: list[dict[str, Any]]) -> Verdict | None:
    """A Reconciling verdict while some pod's fetch init container is still downloading."""

    for pod in sorted(pods, key=lambda p: (p.get("metadata") or {}).get("name", "")):
        for cs in (pod.get("status") or {}).get("initContainerStatuses") or []:
            if cs.get("name") == FETCH_CONTAINER and (cs.get("state") or {}).get("running"):
                name = (pod.get("metadata") or {}).get("name", "?")
                return Verdict("reconciling", "Fetching", f"pod {name} is fetching its model/catalog files")
    return None
