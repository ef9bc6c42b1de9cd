"""Conditions: build the Ready/Reconciling/Stalled triple and keep transition times honest."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any


@dataclass(frozen=True)
class Verdict:
    """What a status derivation concluded, before it becomes conditions.

    `state` is one of "ready", "reconciling", "stalled", "idle" (idle: nothing to do and not
    ready, e.g. suspended); `reason` is CamelCase, `message` is for people.
    """

    state: str
    reason: str
    message: str


def now_rfc3339() -> str:
    """Current UTC time as metav1.Time formats it."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def conditions_for(verdict: Verdict, generation: int | None) -> list[dict[str, Any]]:
    """Ready, Reconciling and Stalled for a verdict (kstatus: at most one of them is True)."""
    def cond(kind: str, on: bool) -> dict[str, Any]:
        if on or kind == "Ready":
            reason, message = verdict.reason, verdict.message
        else:
            reason, message = "AsExpected", ""
        return {"type": kind, "status": "True" if on else "False", "reason": reason,
                "message": message, "observedGeneration": generation}

    return [
        cond("Ready", verdict.state == "ready"),
        cond("Reconciling", verdict.state == "reconciling"),
        cond("Stalled", verdict.state == "stalled"),
    ]


def merge_conditions(old: list[dict[str, Any]] | None, new: list[dict[str, Any]],
                     now: str) -> list[dict[str, Any]]:
    """`new` with lastTransitionTime kept from `old` where a condition's status did not change."""
    previous = {c.get("type"): c for c in (old or [])}
    merged = []
    for c in new:
        before = previous.get(c["type"])
        same = before is not None and before.get("status") == c["status"] and before.get("lastTransitionTime")
        merged.append({**c, "lastTransitionTime": before["lastTransitionTime"] if same else now})
    return merged


def status_update(old: dict[str, Any] | None, fields: dict[str, Any], verdict: Verdict,
                  generation: int | None, now: str) -> dict[str, Any] | None:
    """The status patch to write, or None when it would change nothing (no API call when idle).

    A field set to None in `fields` is removed from the status (merge-patch semantics).
    """
    old = old or {}
    conditions = merge_conditions(old.get("conditions"), conditions_for(verdict, generation), now)
    new = {**fields, "conditions": conditions}
    changed = any(old.get(k) != v for k, v in new.items())
    return new if changed else None


def phase_changed(old: dict[str, Any] | None, new: dict[str, Any] | None) -> bool:
    """Whether a status patch moves the phase or the Ready reason (worth a Kubernetes Event)."""
    if not new:
        return False

    def key(s: dict[str, Any]) -> tuple[Any, Any]:
        ready = next((c for c in s.get("conditions") or [] if c.get("type") == "Ready"), {})
        return s.get("phase"), ready.get("reason")

    return key(old or {}) != key(new)
