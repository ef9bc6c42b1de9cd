"""kopf registrations, and nothing else: every handler hands its work to `reconcile`.

- create/update/resume: render and server-side-apply the children, write status.
- indexes of the resources and of the children (Deployments, Jobs, Pods) the operator manages,
  kept in memory from watches, so the periodic level-based check reads them without an API call.
- one periodic check for all resources (started at startup; woken early when a child changes):
  re-derives status from the indexes
  and writes it only when it changed, re-applies children that went missing or drifted, and
  starts a build's merge Job. An idle cluster therefore costs no API requests beyond the
  watches. It is one loop rather than a kopf timer per resource because kopf puts a finalizer
  on every resource with a timer, and then deleting a resource (or its namespace) hangs while
  the operator is down; without timers the operator adds no finalizer at all.
"""
from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
from typing import Any

import kopf

from pipeline_operator import kube, reconcile
from pipeline_operator.children import ANNOTATION_PREFIX, MANAGED_BY, RenderSettings, label_value
from pipeline_operator.reconcile import Outcome
from pipeline_operator.selector import parse_selector
from pipeline_operator.render_pipelinestep import COMPONENT as STEP_COMPONENT
from pipeline_operator.render_trainingset import COMPONENT as BUILD_COMPONENT
from step_runtime.spec.common import API_GROUP, API_VERSION

STEPS = (API_GROUP, API_VERSION, "pipelinesteps")
BUILDS = (API_GROUP, API_VERSION, "trainingsetbuilds")
MANAGED = {"app.kubernetes.io/managed-by": MANAGED_BY}
CHECK_INTERVAL = float(os.environ.get("ALERTOPS_OPERATOR_CHECK_INTERVAL", "5"))
RETRY_DELAY = 10.0
MIN_ROUND_SPACING = 0.5  # seconds between two rounds of the periodic check
# kopf filters are fixed when the handlers are registered, so `alertops operator --selector`
# passes its (already validated) selector through the environment before importing this module.
SELECTOR = parse_selector(os.environ.get("ALERTOPS_OPERATOR_SELECTOR"))


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    """All kopf settings in one place."""
    # kopf's bookkeeping lives in annotations under our prefix, never in .status.
    settings.persistence.finalizer = f"{ANNOTATION_PREFIX}/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=ANNOTATION_PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=ANNOTATION_PREFIX, key="last-handled-configuration")
    # Ask the server to end each watch after 5 minutes and give up on a silent connection a
    # little later: a stale watch (a proxy dropped it without closing) is re-established.
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 10
    settings.watching.reconnect_backoff = 1.0
    settings.networking.request_timeout = 60
    settings.networking.connect_timeout = 10
    # Only the Events we post on purpose (phase transitions), not one per handler run.
    settings.posting.loggers = False
    settings.posting.level = logging.INFO
    settings.posting.reporting_component = MANAGED_BY
    settings.posting.reporting_instance = os.environ.get("POD_NAME", "local")
    settings.execution.max_workers = 16
    settings.persistence.consistency_timeout = 5.0
    memo.setdefault("render_settings", RenderSettings(
        default_image=os.environ.get("ALERTOPS_DEFAULT_IMAGE", RenderSettings.default_image)))


def _plain(body: kopf.Body) -> dict[str, Any]:
    """A detached plain-dict copy of a resource (kopf bodies are live views)."""
    return json.loads(json.dumps(dict(body)))


def _trim(body: kopf.Body) -> dict[str, Any]:
    """What status derivation needs of a child; keeps the indexes small."""
    meta = body.get("metadata", {})
    return json.loads(json.dumps({
        "metadata": {k: meta.get(k) for k in ("name", "namespace", "generation", "labels", "annotations",
                                              "creationTimestamp")},
        "spec": {k: body.get("spec", {}).get(k) for k in ("replicas", "suspend", "completions")},
        "status": dict(body.get("status", {})),
    }))


def _owner(body: kopf.Body, kind: str) -> str | None:
    for ref in body.get("metadata", {}).get("ownerReferences") or []:
        if ref.get("kind") == kind and ref.get("apiVersion", "").startswith(f"{API_GROUP}/"):
            return ref.get("name")
    return None


def _write(outcome: Outcome, body: kopf.Body, patch: kopf.Patch) -> None:
    if outcome.status is not None:
        for key, value in outcome.status.items():
            patch.status[key] = value
    if outcome.transition:
        kind = "Warning" if outcome.verdict.state == "stalled" else "Normal"
        kopf.event(body, type=kind, reason=outcome.verdict.reason, message=outcome.verdict.message[:1000])
    if outcome.retry:
        raise kopf.TemporaryError(outcome.verdict.message, delay=RETRY_DELAY)


# ------------------------------------------------------------------------------------------
# Indexes of the children
# ------------------------------------------------------------------------------------------

@kopf.index("apps", "v1", "deployments", labels={**MANAGED, "app.kubernetes.io/component": STEP_COMPONENT})
def step_deployments(body: kopf.Body, namespace: str, **_: Any) -> dict[Any, Any]:
    """(namespace, PipelineStep name) -> its Deployment."""
    owner = _owner(body, "PipelineStep")
    return {(namespace, owner): _trim(body)} if owner else {}


@kopf.index("batch", "v1", "jobs", labels={**MANAGED, "app.kubernetes.io/component": BUILD_COMPONENT})
def build_jobs(body: kopf.Body, namespace: str, **_: Any) -> dict[Any, Any]:
    """(namespace, TrainingSetBuild name) -> its Jobs."""
    owner = _owner(body, "TrainingSetBuild")
    return {(namespace, owner): _trim(body)} if owner else {}


@kopf.index("", "v1", "pods", labels=MANAGED)
def managed_pods(body: kopf.Body, namespace: str, labels: kopf.Labels, **_: Any) -> dict[Any, Any]:
    """(namespace, component, instance label) -> pods of a step or build."""
    key = (namespace, labels.get("app.kubernetes.io/component"), labels.get("app.kubernetes.io/instance"))
    return {key: _trim(body)}


def _items(index: kopf.Index, key: Any) -> list[dict[str, Any]]:
    return list(index.get(key, []))


# ------------------------------------------------------------------------------------------
# PipelineStep
# ------------------------------------------------------------------------------------------

@kopf.on.resume(*STEPS, labels=SELECTOR)
@kopf.on.create(*STEPS, labels=SELECTOR)
@kopf.on.update(*STEPS, labels=SELECTOR)
def step_apply(body: kopf.Body, patch: kopf.Patch, name: str, namespace: str, memo: kopf.Memo,
               managed_pods: kopf.Index, **_: Any) -> None:
    """Render and apply a PipelineStep's children, then write its status."""
    pods = _items(managed_pods, (namespace, STEP_COMPONENT, label_value(name)))
    _write(reconcile.apply_step(_plain(body), pods, memo["render_settings"]), body, patch)


# ------------------------------------------------------------------------------------------
# TrainingSetBuild
# ------------------------------------------------------------------------------------------

@kopf.on.resume(*BUILDS, labels=SELECTOR)
@kopf.on.create(*BUILDS, labels=SELECTOR)
@kopf.on.update(*BUILDS, labels=SELECTOR)
def build_apply(body: kopf.Body, patch: kopf.Patch, name: str, namespace: str, memo: kopf.Memo,
                build_jobs: kopf.Index, managed_pods: kopf.Index, **_: Any) -> None:
    """Render and apply a TrainingSetBuild's ConfigMap and Job, then write its status."""
    jobs = _items(build_jobs, (namespace, name))
    pods = _items(managed_pods, (namespace, BUILD_COMPONENT, label_value(name)))
    outcome = reconcile.reconcile_build(_plain(body), jobs, pods, memo["render_settings"], full_apply=True)
    _write(outcome, body, patch)


# ------------------------------------------------------------------------------------------
# The periodic level-based check
# ------------------------------------------------------------------------------------------

@kopf.index(*STEPS, labels=SELECTOR)
def steps(body: kopf.Body, namespace: str, name: str, **_: Any) -> dict[Any, Any]:
    """(namespace, name) -> the PipelineStep as last seen."""
    return {(namespace, name): _plain(body)}


@kopf.index(*BUILDS, labels=SELECTOR)
def builds(body: kopf.Body, namespace: str, name: str, **_: Any) -> dict[Any, Any]:
    """(namespace, name) -> the TrainingSetBuild as last seen."""
    return {(namespace, name): _plain(body)}


@kopf.on.startup()
async def start_periodic_check(memo: kopf.Memo, steps: kopf.Index, builds: kopf.Index,
                               step_deployments: kopf.Index, build_jobs: kopf.Index,
                               managed_pods: kopf.Index, logger: logging.Logger, **_: Any) -> None:
    """Start the one loop that checks every resource every CHECK_INTERVAL seconds."""
    indexes = {"steps": steps, "builds": builds, "step_deployments": step_deployments,
               "build_jobs": build_jobs, "managed_pods": managed_pods}
    memo["wake"] = asyncio.Event()
    memo["periodic"] = asyncio.create_task(_periodic(memo, indexes, logger))


@kopf.on.event("apps", "v1", "deployments", labels=MANAGED)
@kopf.on.event("batch", "v1", "jobs", labels=MANAGED)
@kopf.on.event("", "v1", "pods", labels=MANAGED)
async def child_changed(memo: kopf.Memo, **_: Any) -> None:
    """A child changed: run the check now rather than at the next interval (status is prompt)."""
    wake = memo.get("wake")
    if wake is not None:
        wake.set()


@kopf.on.cleanup()
async def stop_periodic_check(memo: kopf.Memo, **_: Any) -> None:
    """Stop the periodic loop with the operator."""
    task = memo.get("periodic")
    if task is not None:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def _latest(index: kopf.Index, key: Any) -> dict[str, Any] | None:
    items = _items(index, key)
    return items[-1] if items else None


async def _periodic(memo: kopf.Memo, ix: dict[str, kopf.Index], logger: logging.Logger) -> None:
    limit = asyncio.Semaphore(8)  # concurrent API work of one round

    async def one(resource: dict[str, Any], work: Any) -> None:
        meta = resource["metadata"]
        where = f"{resource['kind']} {meta.get('namespace')}/{meta['name']}"
        async with limit:
            try:
                outcome = await asyncio.to_thread(work)
                if outcome.status is not None:
                    await asyncio.to_thread(kube.patch_status, resource, outcome.status)
                if outcome.transition:
                    kind = "Warning" if outcome.verdict.state == "stalled" else "Normal"
                    await asyncio.to_thread(kube.post_event, resource, kind, outcome.verdict.reason,
                                            outcome.verdict.message, MANAGED_BY)
            except kube.KubeError as err:
                if err.status != kube.NOT_FOUND:  # deleted meanwhile: nothing to report
                    logger.warning(f"periodic check of {where}: {err}")
            except Exception:  # one bad resource must not stop the checks of all others
                logger.exception(f"periodic check of {where} failed")

    wake: asyncio.Event = memo["wake"]
    while True:
        # Wait for a child's change or the interval, whichever comes first; then a short pause
        # so that a burst of changes (a rollout, 200 new pods) is handled in one round.
        try:
            await asyncio.wait_for(wake.wait(), timeout=CHECK_INTERVAL)
        except asyncio.TimeoutError:
            pass
        await asyncio.sleep(MIN_ROUND_SPACING)
        wake.clear()
        settings = memo["render_settings"]
        jobs = []
        for key in list(ix["steps"].keys()):
            resource = _latest(ix["steps"], key)
            if resource is None or resource["metadata"].get("deletionTimestamp"):
                continue
            namespace, name = key
            deployment = _latest(ix["step_deployments"], key)
            pods = _items(ix["managed_pods"], (namespace, STEP_COMPONENT, label_value(name)))
            if reconcile.step_needs_apply(resource, deployment, settings):
                work = functools.partial(reconcile.apply_step, resource, pods, settings)
            else:
                work = functools.partial(reconcile.observe_step, resource, deployment, pods, settings)
            jobs.append(one(resource, work))
        for key in list(ix["builds"].keys()):
            resource = _latest(ix["builds"], key)
            if resource is None or resource["metadata"].get("deletionTimestamp"):
                continue
            namespace, name = key
            children = _items(ix["build_jobs"], key)
            pods = _items(ix["managed_pods"], (namespace, BUILD_COMPONENT, label_value(name)))
            jobs.append(one(resource, functools.partial(
                reconcile.reconcile_build, resource, children, pods, settings, False)))
        if jobs:
            await asyncio.gather(*jobs)
