"""The periodic level-based check: one loop over every resource, for the whole operator.

Each round re-derives every resource's status from the in-memory indexes (the resources and
the Deployments, Jobs and Pods the operator manages, kept current by watches), publishes it
only when it changed, re-applies a child that was deleted or edited by hand, and starts a
build's merge Job. An idle cluster therefore costs no API request beyond the watches. After a
watch had to list its kind again, the round first checks that kind's index (`resync`).

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
from typing import Any, Callable

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

    steps: kopf.Index
    builds: kopf.Index
    step_deployments: kopf.Index
    build_jobs: kopf.Index
    managed_pods: kopf.Index
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


def items(index: kopf.Index, key: Any, freshness: Freshness) -> list[dict[str, Any]]:
    """Everything an index holds under `key`, but for objects known to be gone."""
    return freshness.alive(index.get(key, []))


def _latest(index: kopf.Index, key: Any, freshness: Freshness) -> dict[str, Any] | None:
    found = items(index, key, freshness)
    return found[-1] if found else None


Work = Callable[[], Outcome]


def round_work(ix: Indexes, settings: RenderSettings) -> list[tuple[dict[str, Any], Work]]:
    """What one round does: per live resource, the reconcile to run on what the indexes hold."""
    fresh = ix.freshness
    work: list[tuple[dict[str, Any], Work]] = []
    for key in list(ix.steps.keys()):
        resource = _latest(ix.steps, key, fresh)
        if resource is None or resource["metadata"].get("deletionTimestamp"):
            continue
        namespace, name = key
        deployment = _latest(ix.step_deployments, key, fresh)
        pods = items(ix.managed_pods, (namespace, STEP_COMPONENT, label_value(name)), fresh)
        if reconcile.step_needs_apply(resource, deployment, settings):
            work.append((resource, functools.partial(reconcile.apply_step, resource, pods, settings)))
        else:
            work.append((resource, functools.partial(reconcile.observe_step, resource, deployment, pods, settings)))
    for key in list(ix.builds.keys()):
        resource = _latest(ix.builds, key, fresh)
        if resource is None or resource["metadata"].get("deletionTimestamp"):
            continue
        namespace, name = key
        jobs = items(ix.build_jobs, key, fresh)
        pods = items(ix.managed_pods, (namespace, BUILD_COMPONENT, label_value(name)), fresh)
        work.append((resource, functools.partial(reconcile.reconcile_build, resource, jobs, pods, settings, False)))
    return work


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


async def _check(resource: dict[str, Any], work: Work, limit: asyncio.Semaphore, logger: logging.Logger) -> None:
    meta = resource["metadata"]
    where = f"{resource['kind']} {meta.get('namespace')}/{meta['name']}"
    async with limit:
        try:
            outcome = await asyncio.to_thread(work)
            await asyncio.to_thread(publish, resource, outcome)
        except kube.KubeError as err:
            logger.warning(f"periodic check of {where}: {err}")
        except Exception:  # one bad resource must not stop the checks of all others
            logger.exception(f"periodic check of {where} failed")


async def run(ix: Indexes, wake: asyncio.Event, settings: Callable[[], RenderSettings],
              logger: logging.Logger) -> None:
    """Check every resource, round after round, until cancelled."""
    limit = asyncio.Semaphore(CONCURRENCY)
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
        checks = [_check(resource, work, limit, logger) for resource, work in round_work(ix, settings())]
        if checks:
            await asyncio.gather(*checks)
        CHECK_ROUNDS.observe(time.perf_counter() - started)
