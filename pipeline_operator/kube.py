"""The operator's calls to the API server: server-side apply, status patches, Events, deletes,
and the metadata-only reads that check the in-memory indexes after a watch started over.

Server-side apply with a fixed field manager is idempotent: applying the same manifest twice,
or after an operator restart, never creates a second child and never fights other managers
over fields the operator does not set.
"""
from __future__ import annotations

import json
import os
from typing import Any

FIELD_MANAGER = "alertops-operator"
REQUEST_TIMEOUT = (5, 30)  # connect, read seconds
NOT_FOUND = 404

_PLURALS = {"ConfigMap": "configmaps", "Deployment": "deployments", "Job": "jobs", "Pod": "pods",
            "PipelineStep": "pipelinesteps", "TrainingSetBuild": "trainingsetbuilds"}
# Ask for metadata only (names and uids): a listing of 1,000 Deployments stays small.
METADATA_LIST = "application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io,application/json"
METADATA = "application/json;as=PartialObjectMetadata;v=v1;g=meta.k8s.io,application/json"


class KubeError(RuntimeError):
    """An API call failed; the message carries the status code and the server's reason.

    `status` is the HTTP status code, or None when no response came (connection refused,
    timeout): callers decide by it, never by the message's text.
    """

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def _client() -> Any:
    from kubernetes import client, config

    global _api_client
    if _api_client is None:
        configuration = client.Configuration()
        try:
            # The kubernetes client ships no annotations for its config loaders.
            config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        except config.ConfigException:
            config.load_kube_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        # As many connections as threads that may call at once (kopf's 16 workers + the
        # periodic check's 8), so connections are reused rather than opened and discarded.
        configuration.connection_pool_maxsize = 32
        _api_client = client.ApiClient(configuration)
    return _api_client


_api_client: Any = None


def object_path(api_version: str, kind: str, namespace: str, name: str | None = None) -> str:
    """REST path of a namespaced object (or of its collection when `name` is None)."""
    plural = _PLURALS[kind]
    base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    path = f"{base}/namespaces/{namespace}/{plural}"
    return f"{path}/{name}" if name else path


def _call(method: str, path: str, *, body: Any = None, query: list[tuple[str, str]] | None = None,
          content_type: str = "application/json", accept: str = "application/json") -> dict[str, Any]:
    from kubernetes.client.exceptions import ApiException

    api = _client()
    try:
        _, url, headers, payload, _ = api.param_serialize(
            method, path, query_params=query or [],
            header_params={"Content-Type": content_type, "Accept": accept},
            body=body, auth_settings=["BearerToken"],
        )
        resp = api.call_api(method, url, header_params=headers, body=payload,
                            _request_timeout=REQUEST_TIMEOUT)
        data = resp.read()
    except ApiException as exc:
        raise KubeError(f"{method} {path}: {exc.status} {exc.reason}", exc.status) from None
    except OSError as exc:  # connection refused/reset, timeouts (urllib3 errors derive from it)
        raise KubeError(f"{method} {path}: {exc}") from None
    if resp.status >= 400:
        reason = resp.reason
        try:
            reason = json.loads(data).get("message", reason)
        except (TypeError, ValueError):
            pass
        raise KubeError(f"{method} {path}: {resp.status} {reason}", resp.status)
    return json.loads(data) if data else {}


def apply(obj: dict[str, Any]) -> dict[str, Any]:
    """Server-side apply `obj` as the operator's field manager (force: the operator owns its children)."""
    meta = obj["metadata"]
    path = object_path(obj["apiVersion"], obj["kind"], meta["namespace"], meta["name"])
    return _call("PATCH", path, body=obj,
                 query=[("fieldManager", FIELD_MANAGER), ("force", "true")],
                 content_type="application/apply-patch+yaml")


def patch_status(resource: dict[str, Any], status: dict[str, Any]) -> dict[str, Any]:
    """Merge-patch the status subresource of one of our resources (None values remove fields)."""
    meta = resource["metadata"]
    path = object_path(resource["apiVersion"], resource["kind"], meta["namespace"], meta["name"]) + "/status"
    return _call("PATCH", path, body={"status": status}, content_type="application/merge-patch+json")


def post_event(resource: dict[str, Any], type_: str, reason: str, message: str, component: str) -> None:
    """Create a core/v1 Event about one of our resources (what `kubectl describe` lists)."""
    import uuid
    from datetime import datetime, timezone

    meta = resource["metadata"]
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    event = {
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"name": f"{meta['name']}.{uuid.uuid4().hex[:16]}", "namespace": meta["namespace"]},
        "involvedObject": {"apiVersion": resource["apiVersion"], "kind": resource["kind"], "name": meta["name"],
                           "namespace": meta["namespace"], "uid": meta.get("uid")},
        "type": type_, "reason": reason, "message": message[:1024],
        "source": {"component": component}, "reportingComponent": component,
        "reportingInstance": os.environ.get("POD_NAME", "local"),
        "firstTimestamp": now, "lastTimestamp": now, "count": 1,
    }
    _call("POST", f"/api/v1/namespaces/{meta['namespace']}/events", body=event)


def list_uids(api_version: str, kind: str, namespace: str, selector: str | None) -> set[str]:
    """The uids of the objects of `kind` in `namespace` (matching `selector`), from one LIST."""
    query = [("labelSelector", selector)] if selector else []
    listing = _call("GET", object_path(api_version, kind, namespace), query=query, accept=METADATA_LIST)
    return {str((item.get("metadata") or {}).get("uid")) for item in listing.get("items") or []}


def get_uid(api_version: str, kind: str, namespace: str, name: str) -> str | None:
    """The uid of the object named `name` now, or None when there is none."""
    try:
        found = _call("GET", object_path(api_version, kind, namespace, name), accept=METADATA)
    except KubeError as exc:
        if exc.status == NOT_FOUND:
            return None
        raise
    return (found.get("metadata") or {}).get("uid")


def delete(api_version: str, kind: str, namespace: str, name: str) -> None:
    """Delete one object and (in the background) its dependents; a missing object is fine."""
    path = object_path(api_version, kind, namespace, name)
    try:
        _call("DELETE", path, body={"propagationPolicy": "Background"})
    except KubeError as exc:
        if exc.status != NOT_FOUND:
            raise
