"""Conditions and status patches: the Ready/Reconciling/Stalled triple, honest transition
times, and the one function that turns a status model into what is written to the API server."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Literal

from pipeline_operator.status import Condition, ConditionType, PipelineStepStatus, TrainingSetBuildStatus

VerdictState = Literal["ready", "reconciling", "stalled", "idle"]
Status = PipelineStepStatus | TrainingSetBuildStatus


@dataclass(frozen=True)
class Verdict:
    """What a status derivation concluded, before it becomes conditions.

    `state`: idle means nothing to do and not ready (e.g. suspended); `reason` is CamelCase,
    `message` is for people.
    """

    state: VerdictState
    reason: str
    message: str


def now_rfc3339() -> str:
    """Current UTC time as metav1.Time formats it."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def conditions_for(verdict: Verdict, generation: int | None) -> list[Condition]:
    """Ready, Reconciling and Stalled for a verdict (kstatus: at most one of them is True)."""
    def cond(kind: ConditionType, on: bool) -> Condition:
        if on or kind == "Ready":
            reason, message = verdict.reason, verdict.message
        else:
            reason, message = "AsExpected", ""
        return Condition(type=kind, status="True" if on else "False", reason=reason, message=message,
                         observed_generation=generation)

    return [
        cond("Ready", verdict.state == "ready"),
        cond("Reconciling", verdict.state == "reconciling"),
        cond("Stalled", verdict.state == "stalled"),
    ]


def merge_conditions(old: list[dict[str, Any]] | None, new: list[Condition], now: str) -> list[Condition]:
    """`new` with lastTransitionTime kept from `old` (as read from the API) where a condition's
    status did not change."""
    previous = {c.get("type"): c for c in (old or [])}
    merged = []
    for c in new:
        before = previous.get(c.type)
        same = before is not None and before.get("status") == c.status and before.get("lastTransitionTime")
        kept = before["lastTransitionTime"] if same and before is not None else now
        merged.append(c.model_copy(update={"last_transition_time": kept}))
    return merged


def dump_status(status: Status) -> dict[str, Any]:
    """A status model as the API server stores it: camelCase, only the fields that were set.

    A field set to None is written as null, which a merge patch removes from the status; a
    field never set is left out, so the patch leaves it as it is.
    """
    return status.model_dump(by_alias=True, exclude_unset=True, mode="json")


def status_update(old: dict[str, Any] | None, status: Status, verdict: Verdict,
                  generation: int | None, now: str) -> dict[str, Any] | None:
    """The status patch to write, or None when it would change nothing (no API call when idle)."""
    old = old or {}
    conditions = merge_conditions(old.get("conditions"), conditions_for(verdict, generation), now)
    new = dump_status(status.model_copy(update={"conditions": conditions}))
    changed = any(old.get(k) != v for k, v in new.items())
    return new if changed else None


def phase_changed(old: dict[str, Any] | None, new: dict[str, Any] | None) -> bool:
    """Whether a status patch moves the phase or the Ready reason (worth a Kubernetes Event).

    A resource's first status saying Pending is not a move: it only says the resource was
    created, which the user just did, and at 1,000 resources created at once it was one Event
    each, a fifth of the operator's API requests. A first status that is already Running or
    Failed is one.
    """
    if not new or (not (old or {}).get("phase") and new.get("phase") == "Pending"):
        return False

    def key(s: dict[str, Any]) -> tuple[Any, Any]:
        ready: dict[str, Any] = next((c for c in s.get("conditions") or [] if c.get("type") == "Ready"), {})
        return s.get("phase"), ready.get("reason")

    return key(old or {}) != key(new)
