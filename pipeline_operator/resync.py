"""Keeping the in-memory indexes honest after a watch had to start over.

kopf's indexes follow the watches. When a watch cannot resume where it stopped (an API server
restart empties its watch cache, or the connection was down longer than etcd keeps history:
`410 Gone`), kopf lists the resources again and indexes what the listing returns, but an
object deleted while nobody was watching is never reported as deleted: its entry stays in
the index for good. A PipelineStep deleted during an API server restart would then be
"reconciled" for ever (its children re-applied, garbage-collected, re-applied...), and a
deleted Deployment would never be re-created.

So after every listing of a kind (kopf delivers its objects with event type None), the
periodic check compares that kind's index with a fresh metadata-only LIST per namespace, and
confirms each entry the LIST lacks with a GET: an object the server no longer has (404, or
the name now belongs to a new object) is buried, and every reader skips buried entries.
A quiet cluster never lists anything; a listing costs one LIST per namespace and kind.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

from pipeline_operator import kube


@dataclass(frozen=True)
class WatchedKind:
    """One index and what the API server calls its objects."""

    index: str                 # attribute of periodic.Indexes
    plural: str                # kopf's resource plural, as event handlers see it
    api_version: str
    kind: str
    selector: str | None       # label selector of the operator's own objects (None: all)


@dataclass
class Freshness:
    """Kinds listed again since the last resync, and the uids of objects known to be gone."""

    relisted: set[str] = field(default_factory=set)
    buried: set[str] = field(default_factory=set)

    def alive(self, entries: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
        """`entries` without those of objects known to be gone."""
        return [e for e in entries if _uid(e) not in self.buried]


def _uid(entry: dict[str, Any]) -> str | None:
    return (entry.get("metadata") or {}).get("uid")


def unlisted(entries: Iterable[dict[str, Any]], listed: set[str], buried: set[str]) -> list[tuple[str, str]]:
    """(name, uid) of the entries a fresh LIST did not return: deleted, or created after it."""
    found = []
    for entry in entries:
        uid = _uid(entry)
        if uid and uid not in listed and uid not in buried:
            found.append(((entry.get("metadata") or {}).get("name", ""), uid))
    return found


def resync(index: Any, watched: WatchedKind, freshness: Freshness) -> int:
    """Bury the entries of `index` whose objects the API server no longer has; return how many.

    Raises KubeError when the API server cannot answer (the caller tries again later).
    """
    by_namespace: dict[str, list[dict[str, Any]]] = {}
    for key in list(index.keys()):
        by_namespace.setdefault(key[0], []).extend(index.get(key, []))
    count = 0
    for namespace, entries in by_namespace.items():
        listed = kube.list_uids(watched.api_version, watched.kind, namespace, watched.selector)
        for name, uid in unlisted(entries, listed, freshness.buried):
            # Not listed: either deleted, or created after the LIST. Only the server knows.
            if kube.get_uid(watched.api_version, watched.kind, namespace, name) != uid:
                freshness.buried.add(uid)
                count += 1
    return count
