"""One reconcile of one resource: render, plan, execute, derive status. The handlers call these.

The functions take plain dicts (the resource, and the children as the operator's in-memory
indexes last saw them), do their few API calls through `pipeline_operator.kube`, and return
the status patch to write. They never touch kopf, so they read like the algorithm they are.
"""
from __future__ import annotations

import json
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable, TypeVar

from pipeline_operator import kube, render_pipelinestep, render_trainingset
from pipeline_operator.children import CONFIG_HASH_ANNOTATION, RenderSettings
from pipeline_operator.conditions import Status, Verdict, now_rfc3339, phase_changed, status_update
from pipeline_operator.derive import BuildFacts, StepFacts, pipelinestep_status, trainingset_status
from pipeline_operator.metrics import ERRORS, RECONCILES, STATUS_WRITES, TRANSITIONS, timed
from pipeline_operator.plan import Action, Apply, plan_build
from pipeline_operator.shadow import Footprint, shadow_refusal
from step_runtime.spec.common import SpecError

STEP, BUILD = "PipelineStep", "TrainingSetBuild"
_RENDER_CACHE_SIZE = 4096
_render_cache: OrderedDict[str, Any] = OrderedDict()
_render_lock = threading.Lock()


Rendered = TypeVar("Rendered")


def cached_render(render: Callable[[dict[str, Any], RenderSettings], Rendered], resource: dict[str, Any],
                  settings: RenderSettings) -> Rendered:
    """`render(resource, settings)`, memoised on what it reads (uid, generation, labels,
    annotations, settings); a SpecError is memoised too. The periodic check of hundreds of
    resources then costs a dict lookup, not a validation and a YAML dump each."""
    meta = resource.get("metadata") or {}
    key = json.dumps([resource.get("kind"), meta.get("uid"), meta.get("name"), meta.get("namespace"),
                      meta.get("generation"), meta.get("labels"), meta.get("annotations"), repr(settings)],
                     sort_keys=True, default=str)
    with _render_lock:
        hit = _render_cache.get(key)
        if hit is not None:
            _render_cache.move_to_end(key)
    if hit is None:
        try:
            hit = render(resource, settings)
        except SpecError as err:
            hit = _InvalidSpec(str(err))
        with _render_lock:
            _render_cache[key] = hit
            while len(_render_cache) > _RENDER_CACHE_SIZE:
                _render_cache.popitem(last=False)
    if isinstance(hit, _InvalidSpec):
        raise SpecError(hit.message)
    result: Rendered = hit
    return result


@dataclass(frozen=True)
class _InvalidSpec:
    message: str


@dataclass(frozen=True)
class Outcome:
    """A status patch to write (None: nothing changed), the verdict, and whether to post an Event."""

    status: dict[str, Any] | None
    verdict: Verdict
    transition: bool
    retry: bool = False


def _finish(kind: str, resource: dict[str, Any], status: Status, verdict: Verdict,
            retry: bool = False) -> Outcome:
    old = resource.get("status") or {}
    generation = (resource.get("metadata") or {}).get("generation")
    patch = status_update(old, status, verdict, generation, now_rfc3339())
    transition = phase_changed(old, patch)
    if patch is not None:
        STATUS_WRITES.labels(kind).inc()
        if transition:
            TRANSITIONS.labels(kind, str(patch.get("phase"))).inc()
    return Outcome(patch, verdict, transition, retry)


def _invalid(kind: str, err: Exception) -> Verdict:
    ERRORS.labels(kind, "InvalidSpec").inc()
    return Verdict("stalled", "InvalidSpec", f"{err}; fix the spec")


def _api_error(kind: str, err: Exception) -> Verdict:
    ERRORS.labels(kind, "ApiError").inc()
    return Verdict("stalled", "ApiError", f"could not apply children: {err}")


# ------------------------------------------------------------------------------------------
# PipelineStep
# ------------------------------------------------------------------------------------------

def _step_facts(resource: dict[str, Any], rendered: render_pipelinestep.RenderedStep | None,
                error: Verdict | None) -> StepFacts:
    meta = resource["metadata"]
    if rendered is None:
        return StepFacts(generation=meta.get("generation"), deployment_name=meta["name"], error=error)
    return StepFacts(
        generation=meta.get("generation"), config_hash=rendered.config_hash,
        desired_replicas=rendered.desired_replicas, suspend=rendered.suspend,
        selector=rendered.selector, processor=rendered.processor,
        deployment_name=rendered.deployment["metadata"]["name"], error=error,
    )


def apply_step(resource: dict[str, Any], pods: list[dict[str, Any]], settings: RenderSettings,
               shadowed: dict[str, Any] | None = None) -> Outcome:
    """Render and server-side-apply a PipelineStep's Deployment; derive status.

    `shadowed` is the step named by spec.shadowOf as last seen: a shadow that would write where
    it writes is not applied (see `shadow.shadow_refusal`).
    """
    with timed(STEP):
        try:
            rendered = cached_render(render_pipelinestep.render, resource, settings)
        except SpecError as err:
            RECONCILES.labels(STEP, "invalid").inc()
            error = _invalid(STEP, err)
            fields, verdict = pipelinestep_status(_step_facts(resource, None, error), None, [])
            return _finish(STEP, resource, fields, verdict)
        refusal = _shadow_refusal(resource, rendered, shadowed, settings)
        if refusal is not None:
            RECONCILES.labels(STEP, "refused").inc()
            ERRORS.labels(STEP, refusal.reason).inc()
            fields, verdict = pipelinestep_status(_step_facts(resource, rendered, refusal), None, pods)
            return _finish(STEP, resource, fields, verdict)
        try:
            applied = execute([Apply(rendered.deployment)])
        except kube.KubeError as err:
            RECONCILES.labels(STEP, "error").inc()
            error = _api_error(STEP, err)
            fields, verdict = pipelinestep_status(_step_facts(resource, rendered, error), None, [])
            return _finish(STEP, resource, fields, verdict, retry=True)
        RECONCILES.labels(STEP, "applied").inc()
        deployment = applied[("Deployment", rendered.deployment["metadata"]["name"])]
        fields, verdict = pipelinestep_status(_step_facts(resource, rendered, None), deployment, pods)
        return _finish(STEP, resource, fields, verdict)


def step_needs_apply(resource: dict[str, Any], deployment: dict[str, Any] | None,
                     settings: RenderSettings, shadowed: dict[str, Any] | None = None) -> bool:
    """Level check: the Deployment is missing or drifted from what the spec renders to (a
    refused shadow needs no apply: observing it reports the refusal)."""
    try:
        rendered = cached_render(render_pipelinestep.render, resource, settings)
    except SpecError:
        return False
    if deployment is None:
        return _shadow_refusal(resource, rendered, shadowed, settings) is None
    annotations = (deployment.get("metadata") or {}).get("annotations") or {}
    replicas = (deployment.get("spec") or {}).get("replicas")
    return bool(annotations.get(CONFIG_HASH_ANNOTATION) != rendered.config_hash or replicas != rendered.desired_replicas)


def _shadow_refusal(resource: dict[str, Any], rendered: render_pipelinestep.RenderedStep,
                    shadowed: dict[str, Any] | None, settings: RenderSettings) -> Verdict | None:
    """`shadow.shadow_refusal` on the two steps' footprints, each from the render cache (the
    shadowed step is rendered in the same round)."""
    if rendered.footprint.shadow_of is None:
        return None
    original: Footprint | SpecError | None = None
    if shadowed is not None:
        try:
            original = cached_render(render_pipelinestep.render, shadowed, settings).footprint
        except SpecError as err:
            original = err
    return shadow_refusal(resource, rendered.footprint, original)


def observe_step(resource: dict[str, Any], deployment: dict[str, Any] | None, pods: list[dict[str, Any]],
                 settings: RenderSettings, shadowed: dict[str, Any] | None = None) -> Outcome:
    """Status of a PipelineStep from its children as last seen (no API call)."""
    try:
        rendered = cached_render(render_pipelinestep.render, resource, settings)
        error = _shadow_refusal(resource, rendered, shadowed, settings)
    except SpecError as err:
        rendered, error = None, Verdict("stalled", "InvalidSpec", f"{err}; fix the spec")
    fields, verdict = pipelinestep_status(_step_facts(resource, rendered, error), deployment, pods)
    return _finish(STEP, resource, fields, verdict)


# ------------------------------------------------------------------------------------------
# TrainingSetBuild
# ------------------------------------------------------------------------------------------

def _build_facts(resource: dict[str, Any], rendered: render_trainingset.RenderedBuild | None,
                 error: Verdict | None) -> BuildFacts:
    meta = resource["metadata"]
    previous = resource.get("status") or {}
    if rendered is None:
        return BuildFacts(generation=meta.get("generation"), error=error, previous=previous)
    return BuildFacts(
        generation=meta.get("generation"), config_hash=rendered.config_hash, partitions=rendered.partitions,
        suspend=rendered.suspend, main_job_name=rendered.main_job["metadata"]["name"],
        merge_job_name=rendered.merge_job["metadata"]["name"] if rendered.merge_job else None,
        error=error, previous=previous,
    )


def execute(actions: list[Action]) -> dict[tuple[str, str], dict[str, Any]]:
    """Carry out `actions` in order through the API server; stop at the first error (KubeError).

    Returns what the server answered for each applied child, by (kind, name).
    """
    applied: dict[tuple[str, str], dict[str, Any]] = {}
    for action in actions:
        if isinstance(action, Apply):
            meta = action.manifest["metadata"]
            applied[(action.manifest["kind"], meta["name"])] = kube.apply(action.manifest)
        else:
            kube.delete(action.api_version, action.kind, action.namespace, action.name)
    return applied


def _find(jobs: list[dict[str, Any]], name: str | None) -> dict[str, Any] | None:
    return next((j for j in jobs if j.get("metadata", {}).get("name") == name), None) if name else None


def reconcile_build(resource: dict[str, Any], jobs: list[dict[str, Any]], pods: list[dict[str, Any]],
                    settings: RenderSettings, full_apply: bool) -> Outcome:
    """Bring a TrainingSetBuild's children to its spec (`plan_build`, then `execute`) and
    derive its status from the children as they are afterwards.

    `jobs`/`pods` are the build's children as last seen. With `full_apply` (create, update,
    resume) the ConfigMap and main Job are applied and Jobs of an older config deleted;
    otherwise only what is missing is created, so an idle build makes no API calls.
    """
    with timed(BUILD):
        try:
            rendered = cached_render(render_trainingset.render, resource, settings)
        except SpecError as err:
            RECONCILES.labels(BUILD, "invalid").inc()
            outcome = trainingset_status(_build_facts(resource, None, _invalid(BUILD, err)), None, None, [])
            return _finish(BUILD, resource, outcome.status, outcome.verdict)
        facts = _build_facts(resource, rendered, None)
        try:
            applied = execute(plan_build(rendered, facts.previous, jobs, full_apply))
        except kube.KubeError as err:
            RECONCILES.labels(BUILD, "error").inc()
            outcome = trainingset_status(_build_facts(resource, rendered, _api_error(BUILD, err)), None, None, [])
            return _finish(BUILD, resource, outcome.status, outcome.verdict, retry=True)
        main = applied.get(("Job", facts.main_job_name or "")) or _find(jobs, facts.main_job_name)
        merge = applied.get(("Job", facts.merge_job_name or "")) or _find(jobs, facts.merge_job_name)
        outcome = trainingset_status(facts, main, merge, pods)
        if full_apply:
            RECONCILES.labels(BUILD, "applied").inc()
        return _finish(BUILD, resource, outcome.status, outcome.verdict)
