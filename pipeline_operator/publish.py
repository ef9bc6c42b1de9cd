"""Publishing an outcome: the status patch and the Kubernetes Event, written one way only.

Both the create/update/resume handlers and the periodic check publish through `publish`, so a
status is written and an Event posted the same way whichever of them reached the outcome.
"""
from __future__ import annotations

import logging
from typing import Any, MutableMapping

from pipeline_operator import kube
from pipeline_operator.children import MANAGED_BY
from pipeline_operator.reconcile import Outcome

EVENT_MESSAGE_LIMIT = 1000  # characters of an Event's message (the API server allows 1 KiB)
_log = logging.getLogger(__name__)


def _where(resource: dict[str, Any]) -> str:
    meta = resource.get("metadata") or {}
    return f"{resource.get('kind')} {meta.get('namespace')}/{meta.get('name')}"


def publish(resource: dict[str, Any], outcome: Outcome,
            handler_status: MutableMapping[str, Any] | None = None) -> None:
    """Write `outcome`'s status patch (if anything changed) and post an Event when the phase or
    the Ready reason moved: `Warning` when stalled, `Normal` otherwise.

    From a kopf handler, pass its `patch.status` as `handler_status`: kopf then writes the status
    with its own bookkeeping and knows the resourceVersion that results. A status patched
    behind its back while the handler runs reaches kopf as a newer event without kopf's
    annotation, and kopf runs the create handler a second time (11% of 1,000 steps created at
    once did). Elsewhere the status subresource is patched here.

    A resource deleted meanwhile is not an error: there is nothing left to report on. Any other
    error writing the status propagates (KubeError) so the caller retries or logs it; an Event
    that cannot be posted is logged only.
    """
    if outcome.status is not None:
        if handler_status is not None:
            handler_status.update(outcome.status)
        else:
            try:
                kube.patch_status(resource, outcome.status)
            except kube.KubeError as err:
                if err.status == kube.NOT_FOUND:
                    return
                raise
    if outcome.transition:
        kind = "Warning" if outcome.verdict.state == "stalled" else "Normal"
        try:
            kube.post_event(resource, kind, outcome.verdict.reason,
                            outcome.verdict.message[:EVENT_MESSAGE_LIMIT], MANAGED_BY)
        except kube.KubeError as err:
            # The status already says it; an Event that cannot be posted (namespace being
            # deleted, events quota) must not fail or repeat the reconcile.
            if err.status != kube.NOT_FOUND:
                _log.warning(f"could not post Event {outcome.verdict.reason} for {_where(resource)}: {err}")
