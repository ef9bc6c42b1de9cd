"""Deciding what to change, as pure functions: desired children + observed children in, a list of
actions out. `reconcile.execute` carries them out; nothing here calls the API server.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pipeline_operator.derive import build_finished, merge_due
from pipeline_operator.render_trainingset import RenderedBuild


@dataclass(frozen=True)
class Apply:
    """Server-side apply one child (create it, or bring it to this manifest)."""

    manifest: dict[str, Any]

    def __str__(self) -> str:
        return f"apply {self.manifest['kind']} {self.manifest['metadata']['name']}"


@dataclass(frozen=True)
class Delete:
    """Delete one child (its dependents in the background)."""

    api_version: str
    kind: str
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"delete {self.kind} {self.name}"


Action = Apply | Delete


def _name(obj: dict[str, Any]) -> str:
    return str((obj.get("metadata") or {}).get("name", ""))


def _find(jobs: list[dict[str, Any]], name: str | None) -> dict[str, Any] | None:
    return next((j for j in jobs if _name(j) == name), None) if name else None


def plan_build(rendered: RenderedBuild, previous_status: dict[str, Any], jobs: list[dict[str, Any]],
               full_apply: bool) -> list[Action]:
    """What to change so a TrainingSetBuild's children match its spec, in order.

    `jobs` are the build's Jobs as last seen. With `full_apply` (create, update, resume) Jobs of
    another config are deleted and the ConfigMap, the main Job (and an existing merge Job) are
    applied; otherwise only what is missing is created, so an idle build changes nothing. A
    finished build of the current config is never started again. Once every partition is done
    the merge Job is created.
    """
    main_name = _name(rendered.main_job)
    merge_name = _name(rendered.merge_job) if rendered.merge_job is not None else None
    main, merge = _find(jobs, main_name), _find(jobs, merge_name)
    actions: list[Action] = []
    if full_apply:
        namespace = rendered.config_map["metadata"]["namespace"]
        actions += [Delete("batch/v1", "Job", namespace, _name(job)) for job in jobs
                    if _name(job) not in (main_name, merge_name)]
        actions.append(Apply(rendered.config_map))
    if not build_finished(previous_status, rendered.config_hash) and (full_apply or main is None):
        actions.append(Apply(rendered.main_job))
        if merge is not None and full_apply and rendered.merge_job is not None:
            actions.append(Apply(rendered.merge_job))
    if rendered.merge_job is not None and merge_due(rendered.partitions, main, merge):
        actions.append(Apply(rendered.merge_job))
    return actions
