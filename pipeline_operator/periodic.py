"""The periodic level-based check: one loop over every resource, for the whole operator.

Each round re-derives the status of every resource whose inputs changed, from the in-memory
indexes (the resources and the Deployments, Jobs and Pods the operator manages, kept current
by watches), publishes it only when it changed, re-applies a child that was deleted or edited
by hand, and starts a build's merge Job. An idle cluster therefore costs no API request beyond
the watches, and a lookup per resource (`round_work`). After a watch had to list its kind
again, the round first checks that kind's index (`resync`).

A round runs every CHECK_INTERVAL seconds, or as soon as a child changes (`wake`),
after a short pause so that a burst of changes (a rollout, 200 new pods) is one round. It is
one loop rather than a kopf timer per resource because kopf puts a finalizer on every resource
with a timer, and then deleting a resource (or its namespace) hangs while the operator is down.
"""
from __future__ import annotations

import asyncio
import functools
import logging
import os
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import kopf

from pipeline_operator import kube, reconcile
from pipeline_operator.children import MANAGED_BY, RenderSettings, label_value
from pipeline_operator.metrics import CHECK_ROUNDS
from pipeline_operator.publish import publish
from pipeline_operator.reconcile import Outcome
from pipeline_operator.render_pipelinestep import COMPONENT as STEP_COMPONENT
from pipeline_operator.render_trainingset import COMPONENT as BUILD_COMPONENT
from pipeline_operator.resync import Freshness, WatchedKind, resync
from step_runtime.spec.common import GROUP_VERSION

CHECK_INTERVAL = float(os.environ.get("ALERTOPS_OPERATOR_CHECK_INTERVAL", "5"))
MIN_ROUND_SPACING = 0.5  # seconds between two rounds
CONCURRENCY = 8          # resources whose API work runs at once within a round


@dataclass(frozen=True)
class Indexes:
    """kopf's in-memory indexes the check reads (see `handlers` for what each one holds), and
    what is known of their entries' freshness (`resync`)."""

    steps: kopf.Index[Any, Any]
    builds: kopf.Index[Any, Any]
    step_deployments: kopf.Index[Any, Any]
    build_jobs: kopf.Index[Any, Any]
    managed_pods: kopf.Index[Any, Any]
    freshness: Freshness


_MANAGED = f"app.kubernetes.io/managed-by={MANAGED_BY}"
WATCHED = (
    WatchedKind("steps", "pipelinesteps", GROUP_VERSION, "PipelineStep", None),
    WatchedKind("builds", "trainingsetbuilds", GROUP_VERSION, "TrainingSetBuild", None),
    WatchedKind("step_deployments", "deployments", "apps/v1", "Deployment",
                f"{_MANAGED},app.kubernetes.io/component={STEP_COMPONENT}"),
    WatchedKind("build_jobs", "jobs", "batch/v1", "Job", f"{_MANAGED},app.kubernetes.io/component={BUILD_COMPONENT}"),
    WatchedKind("managed_pods", "pods", "v1", "Pod", _MANAGED),
)


def items(index: kopf.Index[Any, Any], key: Any, freshness: Freshness) -> list[dict[str, Any]]:
    """Everything an index holds under `key`, but for objects known to be gone."""
    return freshness.alive(index.get(key, []))


def _latest(index: kopf.Index[Any, Any], key: Any, freshness: Freshness) -> dict[str, Any] | None:
    found = items(index, key, freshness)
    return found[-1] if found else None


def shadowed(steps: kopf.Index[Any, Any], resource: dict[str, Any], freshness: Freshness) -> dict[str, Any] | None:
    """The PipelineStep a shadow names in spec.shadowOf, as last seen (None: no shadow, or none)."""
    target = (resource.get("spec") or {}).get("shadowOf")
    if not isinstance(target, str):
        return None
    return _latest(steps, (resource["metadata"].get("namespace"), target), freshness)


Work = Callable[[], Outcome]
Fingerprint = tuple[Any, ...]
# kopf writes status.kopf.last-handled-configuration once a create/update/resume handler has
# succeeded.
KOPF, HANDLED = "kopf", "last-handled-configuration"


@dataclass(frozen=True)
class Check:
    """The work of one round for one resource."""

    resource: dict[str, Any]
    work: Work
    fingerprint: Fingerprint   # the versions of everything `work` reads
    observe_only: bool         # derives status without changing a child


def _version(obj: dict[str, Any] | None) -> Any:
    return (obj.get("metadata") or {}).get("resourceVersion") if obj else None


def _key(resource: dict[str, Any]) -> tuple[str, str, str]:
    meta = resource["metadata"]
    return resource["kind"], meta.get("namespace", ""), meta["name"]


def round_work(ix: Indexes, settings: RenderSettings, quiet: dict[tuple[str, str, str], Fingerprint]) -> list[Check]:
    """What one round does: per live resource, the reconcile to run on what the indexes hold.

    Left out: resources kopf has not handled yet (their create handler applies the children
    and reports; doing it here too would double the API requests of a burst of creations), and
    resources whose inputs have not changed since a round found nothing to do for them (`quiet`:
    the same inputs derive the same status, so an idle cluster costs a lookup per resource).
    """
    fresh = ix.freshness
    checks: list[Check] = []
    live: set[tuple[str, str, str]] = set()

    def handled(index: kopf.Index[Any, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
        for namespace, name in list(index.keys()):
            resource = _latest(index, (namespace, name), fresh)
            if resource is None or (resource.get("metadata") or {}).get("deletionTimestamp"):
                continue
            if HANDLED in ((resource.get("status") or {}).get(KOPF) or {}):
                live.add(_key(resource))
                yield namespace, name, resource

    for namespace, name, resource in handled(ix.steps):
        deployment = _latest(ix.step_deployments, (namespace, name), fresh)
        pods = items(ix.managed_pods, (namespace, STEP_COMPONENT, label_value(name)), fresh)
        target = shadowed(ix.steps, resource, fresh)
        fingerprint: Fingerprint = (_version(resource), _version(deployment), tuple(_version(p) for p in pods),
                                    _version(target))
        if quiet.get(_key(resource)) == fingerprint:
            continue
        if reconcile.step_needs_apply(resource, deployment, settings, target):
            work = functools.partial(reconcile.apply_step, resource, pods, settings, target)
            checks.append(Check(resource, work, fingerprint, observe_only=False))
        else:
            work = functools.partial(reconcile.observe_step, resource, deployment, pods, settings, target)
            checks.append(Check(resource, work, fingerprint, observe_only=True))
    for namespace, name, resource in handled(ix.builds):
        jobs = items(ix.build_jobs, (namespace, name), fresh)
        pods = items(ix.managed_pods, (namespace, BUILD_COMPONENT, label_value(name)), fresh)
        fingerprint = (_version(resource), tuple(_version(j) for j in jobs), tuple(_version(p) for p in pods))
        if quiet.get(_key(resource)) == fingerprint:
            continue
        # plan_build decides whether anything is applied; an empty plan is an observation.
        work = functools.partial(reconcile.reconcile_build, resource, jobs, pods, settings, False)
        checks.append(Check(resource, work, fingerprint, observe_only=True))
    for gone in quiet.keys() - live:  # deleted resources
        del quiet[gone]
    return checks


async def _resync(ix: Indexes, logger: logging.Logger) -> None:
    """Compare the indexes of the kinds listed again with the API server (see `resync`)."""
    fresh = ix.freshness
    pending, fresh.relisted = fresh.relisted, set()
    for watched in WATCHED:
        if watched.plural not in pending:
            continue
        try:
            buried = await asyncio.to_thread(resync, getattr(ix, watched.index), watched, fresh)
        except kube.KubeError as err:
            fresh.relisted.add(watched.plural)  # the API server is not back yet: next round
            logger.warning(f"checking the {watched.plural} index against the API server: {err}")
            continue
        if buried:
            logger.info(f"{buried} {watched.plural} deleted while the watch was down, dropped from the index")


async def _check(check: Check, limit: asyncio.Semaphore, logger: logging.Logger) -> bool:
    """Run one resource's check and publish its outcome; True when there was nothing to do."""
    meta = check.resource["metadata"]
    where = f"{check.resource['kind']} {meta.get('namespace')}/{meta['name']}"
    async with limit:
        try:
            outcome = await asyncio.to_thread(check.work)
            await asyncio.to_thread(publish, check.resource, outcome)
        except kube.KubeError as err:
            logger.warning(f"periodic check of {where}: {err}")
            return False
        except Exception:  # one bad resource must not stop the checks of all others
            logger.exception(f"periodic check of {where} failed")
            return False
    return check.observe_only and outcome.status is None and not outcome.transition and not outcome.retry


async def run(ix: Indexes, wake: asyncio.Event, settings: Callable[[], RenderSettings],
              logger: logging.Logger) -> None:
    """Check every resource, round after round, until cancelled."""
    limit = asyncio.Semaphore(CONCURRENCY)
    quiet: dict[tuple[str, str, str], Fingerprint] = {}
    while True:
        try:
            await asyncio.wait_for(wake.wait(), timeout=CHECK_INTERVAL)
        except asyncio.TimeoutError:
            pass
        await asyncio.sleep(MIN_ROUND_SPACING)  # gathers a burst of changes into one round
        wake.clear()
        started = time.perf_counter()
        if ix.freshness.relisted:
            await _resync(ix, logger)
            quiet.clear()  # buried entries change what the indexes say
        checks = round_work(ix, settings(), quiet)
        if checks:
            results = await asyncio.gather(*(_check(c, limit, logger) for c in checks))
            for check, nothing_to_do in zip(checks, results):
                if nothing_to_do:
                    quiet[_key(check.resource)] = check.fingerprint
                else:
                    quiet.pop(_key(check.resource), None)
        CHECK_ROUNDS.observe(time.perf_counter() - started)
