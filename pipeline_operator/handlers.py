"""kopf registrations, and nothing else: `register` puts the handlers on a registry, and every
handler hands its work to `reconcile` (what to do), `publish` (writing it back) or `periodic`
(the level-based check).

- create/update/resume: render and server-side-apply the children, publish the status.
- indexes of the resources and of the children (Deployments, Jobs, Pods) the operator manages,
  kept in memory from watches, so the periodic check reads them without an API call.
- one periodic check for all resources (`periodic.run`, started at startup; woken early when
  a child changes, or when a watch listed its kind again: then `resync` checks that index).

The label selector of `alertops operator --selector` is an argument of `register`: kopf fixes
filters when handlers are registered, so it must be known then.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
from typing import Any

import kopf

from pipeline_operator import periodic, reconcile
from pipeline_operator.children import ANNOTATION_PREFIX, MANAGED_BY, RenderSettings, label_value
from pipeline_operator.publish import publish
from pipeline_operator.reconcile import Outcome
from pipeline_operator.render_pipelinestep import COMPONENT as STEP_COMPONENT
from pipeline_operator.render_pipelinestep import MANIFEST_ANNOTATION as STEP_MANIFEST_ANNOTATION
from pipeline_operator.render_trainingset import COMPONENT as BUILD_COMPONENT
from pipeline_operator.resync import Freshness
from pipeline_operator.selector import LabelFilter
from step_runtime.spec.common import API_GROUP, API_VERSION

STEPS = (API_GROUP, API_VERSION, "pipelinesteps")
BUILDS = (API_GROUP, API_VERSION, "trainingsetbuilds")
DEPLOYMENTS = ("apps", "v1", "deployments")
JOBS = ("batch", "v1", "jobs")
PODS = ("", "v1", "pods")
MANAGED = {"app.kubernetes.io/managed-by": MANAGED_BY}
RETRY_DELAY = 10.0


class _QuietWakeUps(logging.Filter):
    """Drops kopf's "Handler 'child_changed' succeeded." lines (and resource_listed's): those
    handlers run on every watch event only to wake the periodic check, and a line per event
    (6,500 for 1,000 steps created at once) says nothing."""

    QUIET = frozenset({"Handler 'child_changed' succeeded.", "Handler 'resource_listed' succeeded."})

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() not in self.QUIET


_QUIET_WAKE_UPS = _QuietWakeUps()


def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    """All kopf settings in one place (a startup handler)."""
    logging.getLogger("kopf.objects").addFilter(_QUIET_WAKE_UPS)  # adding twice keeps one
    # kopf's bookkeeping (the spec last handled, a retried handler's progress) lives in
    # status.kopf, next to what the handler reports: kopf then writes both in one request to
    # the status subresource. In annotations it took a second request per create or update
    # (kopf patches an object and its status separately), a fifth of the API requests of
    # 1,000 steps created at once.
    settings.persistence.finalizer = f"{ANNOTATION_PREFIX}/finalizer"
    settings.persistence.progress_storage = kopf.StatusProgressStorage(field=f"status.{periodic.KOPF}.progress")
    settings.persistence.diffbase_storage = kopf.StatusDiffBaseStorage(field=f"status.{periodic.KOPF}.{periodic.HANDLED}")
    # Ask the server to end each watch after 5 minutes and give up on a silent connection a
    # little later: a stale watch (a proxy dropped it without closing) is re-established.
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 10
    settings.watching.reconnect_backoff = 1.0
    settings.networking.request_timeout = 60
    settings.networking.connect_timeout = 10
    # Only the Events we post on purpose (phase transitions, see `publish`), none of kopf's own.
    settings.posting.loggers = False
    settings.posting.level = logging.INFO
    settings.posting.reporting_component = MANAGED_BY
    settings.posting.reporting_instance = os.environ.get("POD_NAME", "local")
    settings.execution.max_workers = 16
    settings.persistence.consistency_timeout = 5.0
    memo.setdefault("render_settings", RenderSettings(
        default_image=os.environ.get("ALERTOPS_DEFAULT_IMAGE", RenderSettings.default_image)))
    memo.setdefault("freshness", Freshness())


# What the operator keeps in memory of each object, per kind: one entry per PipelineStep,
# Deployment and Pod, so at 1,000 steps every field left out here is 3,000 fewer copies.
_CHILD_META = ("name", "namespace", "uid", "resourceVersion", "generation", "labels", "annotations",
               "creationTimestamp")
_STATUS_KEPT = {
    # Exactly what derive.py reads.
    "Deployment": ("replicas", "readyReplicas", "updatedReplicas", "observedGeneration", "conditions"),
    "Pod": ("phase", "conditions", "containerStatuses", "initContainerStatuses"),
}
_CONTAINER_KEPT = ("name", "image", "ready", "restartCount", "state", "lastState")
# Copies of the spec the operator never reads: kubectl's annotation, and kopf's status field,
# which is kept as a marker, since the periodic check asks whether it is there.
_BULKY_ANNOTATIONS = ("kubectl.kubernetes.io/last-applied-configuration",)
# A step pod's copy of its runtime manifest: status derivation never reads it.
_BULKY_CHILD_ANNOTATIONS = (STEP_MANIFEST_ANNOTATION,)


def _plain(body: kopf.Body) -> dict[str, Any]:
    """A detached plain-dict copy of one of our resources (kopf bodies are live views), without
    what the operator never reads (managedFields, copies of the spec in annotations)."""
    data: dict[str, Any] = json.loads(json.dumps(dict(body)))
    meta = data.get("metadata") or {}
    meta.pop("managedFields", None)
    annotations = meta.get("annotations") or {}
    for key in _BULKY_ANNOTATIONS:
        annotations.pop(key, None)
    kopf_status = (data.get("status") or {}).get(periodic.KOPF) or {}
    if periodic.HANDLED in kopf_status:
        kopf_status[periodic.HANDLED] = ""
    return data


def _trim(body: kopf.Body) -> dict[str, Any]:
    """What status derivation needs of a child; keeps the indexes small."""
    meta = body.get("metadata", {})
    status = dict(body.get("status", {}))
    kept = _STATUS_KEPT.get(body.get("kind", ""))
    if kept is not None:
        status = {k: status[k] for k in kept if k in status}
    for key in ("containerStatuses", "initContainerStatuses"):
        if key in status:
            status[key] = [{k: c[k] for k in _CONTAINER_KEPT if k in c} for c in status[key]]
    kept_meta = {k: meta.get(k) for k in _CHILD_META}
    if kept_meta["annotations"]:
        kept_meta["annotations"] = {k: v for k, v in kept_meta["annotations"].items()
                                    if k not in _BULKY_CHILD_ANNOTATIONS}
    trimmed: dict[str, Any] = json.loads(json.dumps({
        "metadata": kept_meta,
        "spec": {k: body.get("spec", {}).get(k) for k in ("replicas", "suspend", "completions")},
        "status": status,
    }))
    return trimmed


def _owner(body: kopf.Body, kind: str) -> str | None:
    for ref in body.get("metadata", {}).get("ownerReferences") or []:
        if ref.get("kind") == kind and ref.get("apiVersion", "").startswith(f"{API_GROUP}/"):
            return str(ref["name"])
    return None


def _publish(resource: dict[str, Any], outcome: Outcome, patch: kopf.Patch) -> None:
    publish(resource, outcome, handler_status=patch.status)
    if outcome.retry:
        raise kopf.TemporaryError(outcome.verdict.message, delay=RETRY_DELAY)


# ------------------------------------------------------------------------------------------
# Indexes (async: kopf runs them in its event loop, in microseconds, instead of queueing each
# child's event for a worker thread behind the handlers that wait on the API server)
# ------------------------------------------------------------------------------------------

async def step_deployments(body: kopf.Body, namespace: str, **_: Any) -> dict[Any, Any]:
    """(namespace, PipelineStep name) -> its Deployment."""
    owner = _owner(body, "PipelineStep")
    return {(namespace, owner): _trim(body)} if owner else {}


async def build_jobs(body: kopf.Body, namespace: str, **_: Any) -> dict[Any, Any]:
    """(namespace, TrainingSetBuild name) -> its Jobs."""
    owner = _owner(body, "TrainingSetBuild")
    return {(namespace, owner): _trim(body)} if owner else {}


async def managed_pods(body: kopf.Body, namespace: str, labels: kopf.Labels, **_: Any) -> dict[Any, Any]:
    """(namespace, component, instance label) -> pods of a step or build."""
    key = (namespace, labels.get("app.kubernetes.io/component"), labels.get("app.kubernetes.io/instance"))
    return {key: _trim(body)}


async def steps(body: kopf.Body, namespace: str, name: str, **_: Any) -> dict[Any, Any]:
    """(namespace, name) -> the PipelineStep as last seen."""
    return {(namespace, name): _plain(body)}


async def builds(body: kopf.Body, namespace: str, name: str, **_: Any) -> dict[Any, Any]:
    """(namespace, name) -> the TrainingSetBuild as last seen."""
    return {(namespace, name): _plain(body)}


# ------------------------------------------------------------------------------------------
# Create, update, resume
# ------------------------------------------------------------------------------------------

def step_apply(body: kopf.Body, patch: kopf.Patch, name: str, namespace: str, memo: kopf.Memo,
               managed_pods: kopf.Index[Any, Any], steps: kopf.Index[Any, Any], **_: Any) -> None:
    """Render and apply a PipelineStep's children, then publish its status."""
    resource = _plain(body)
    pods = periodic.items(managed_pods, (namespace, STEP_COMPONENT, label_value(name)), memo["freshness"])
    shadowed = periodic.shadowed(steps, resource, memo["freshness"])
    _publish(resource, reconcile.apply_step(resource, pods, memo["render_settings"], shadowed), patch)


def build_apply(body: kopf.Body, patch: kopf.Patch, name: str, namespace: str, memo: kopf.Memo,
                build_jobs: kopf.Index[Any, Any], managed_pods: kopf.Index[Any, Any], **_: Any) -> None:
    """Render and apply a TrainingSetBuild's ConfigMap and Job, then publish its status."""
    resource = _plain(body)
    jobs = periodic.items(build_jobs, (namespace, name), memo["freshness"])
    pods = periodic.items(managed_pods, (namespace, BUILD_COMPONENT, label_value(name)), memo["freshness"])
    _publish(resource, reconcile.reconcile_build(resource, jobs, pods, memo["render_settings"], full_apply=True),
             patch)


# ------------------------------------------------------------------------------------------
# The periodic check
# ------------------------------------------------------------------------------------------

async def start_periodic_check(memo: kopf.Memo, steps: kopf.Index[Any, Any], builds: kopf.Index[Any, Any],
                               step_deployments: kopf.Index[Any, Any], build_jobs: kopf.Index[Any, Any],
                               managed_pods: kopf.Index[Any, Any], logger: logging.Logger, **_: Any) -> None:
    """Start the one loop that checks every resource (a startup handler)."""
    indexes = periodic.Indexes(steps=steps, builds=builds, step_deployments=step_deployments,
                               build_jobs=build_jobs, managed_pods=managed_pods, freshness=memo["freshness"])
    memo["wake"] = asyncio.Event()
    memo["periodic"] = asyncio.create_task(
        periodic.run(indexes, memo["wake"], lambda: memo["render_settings"], logger))


async def child_changed(memo: kopf.Memo, type: str | None, resource: kopf.Resource, **_: Any) -> None:
    """A child changed: run the check now rather than at the next interval (status is prompt)."""
    _note_listing(memo, type, resource)
    wake = memo.get("wake")
    if wake is not None:
        wake.set()


async def resource_listed(memo: kopf.Memo, type: str | None, resource: kopf.Resource, **_: Any) -> None:
    """A PipelineStep or TrainingSetBuild event: only a listing matters here (see `resync`)."""
    if _note_listing(memo, type, resource) and memo.get("wake") is not None:
        memo["wake"].set()


def _note_listing(memo: kopf.Memo, type: str | None, resource: kopf.Resource) -> bool:
    # kopf delivers the objects of a (re)listing with event type None: the index may now hold
    # objects deleted while the watch was down, so the next round checks it (`resync`).
    if type is None and "freshness" in memo:
        memo["freshness"].relisted.add(resource.plural)
        return True
    return False


async def stop_periodic_check(memo: kopf.Memo, **_: Any) -> None:
    """Stop the periodic loop with the operator (a cleanup handler)."""
    task = memo.get("periodic")
    if task is not None:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


# ------------------------------------------------------------------------------------------
# Registration
# ------------------------------------------------------------------------------------------

def register(registry: kopf.OperatorRegistry, selector: LabelFilter | None) -> None:
    """Register every handler on `registry`; `selector` (a kopf label filter, None: all) picks
    the PipelineSteps and TrainingSetBuilds this operator handles."""
    # The credentials the kubernetes client uses too (in-cluster ServiceAccount, else
    # $KUBECONFIG); kopf adds this only to its default registry, not to one made here.
    kopf.on.login(registry=registry)(kopf.login_via_client)
    kopf.on.startup(registry=registry)(configure)
    kopf.index(*DEPLOYMENTS, labels={**MANAGED, "app.kubernetes.io/component": STEP_COMPONENT}, registry=registry)(
        step_deployments)
    kopf.index(*JOBS, labels={**MANAGED, "app.kubernetes.io/component": BUILD_COMPONENT}, registry=registry)(build_jobs)
    kopf.index(*PODS, labels=MANAGED, registry=registry)(managed_pods)
    kopf.index(*STEPS, labels=selector, registry=registry)(steps)
    kopf.index(*BUILDS, labels=selector, registry=registry)(builds)
    for resource, handler in ((STEPS, step_apply), (BUILDS, build_apply)):
        kopf.on.resume(*resource, labels=selector, registry=registry)(handler)
        kopf.on.create(*resource, labels=selector, registry=registry)(handler)
        kopf.on.update(*resource, labels=selector, registry=registry)(handler)
    kopf.on.startup(registry=registry)(start_periodic_check)
    for child in (DEPLOYMENTS, JOBS, PODS):
        kopf.on.event(*child, labels=MANAGED, registry=registry)(child_changed)
    for resource in (STEPS, BUILDS):
        kopf.on.event(*resource, labels=selector, registry=registry)(resource_listed)
    kopf.on.cleanup(registry=registry)(stop_periodic_check)
