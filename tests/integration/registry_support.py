"""Helpers of the tests that use the test environment's schema registry (Apicurio Registry).

Registering through the Confluent-compatible API (`register`) gives the id the registry picks:
the id of the schema's content, the next free one, or the existing id when the same schema text is
already registered under any subject. A test that needs a chosen id (Rubin's convention: schema
M.m has id M*100+m, 11.1 -> 1101) uses `register_with_id`, which goes through Apicurio's admin
import, because its Confluent API ignores the "id" of a registration and has no IMPORT mode.
Every request is bounded by a timeout. Standard library only.
"""
from __future__ import annotations

import base64
import hashlib
import io
import json
import time
import urllib.error
import urllib.request
import zipfile
from typing import Any, NamedTuple

TIMEOUT_SECONDS = 15.0
CONFLUENT_JSON = "application/vnd.schemaregistry.v1+json"


class SchemaRegistry(NamedTuple):
    """Where the test registry is: its Confluent API, its native API, its basic-auth credentials."""

    url: str  # Confluent-compatible API, e.g. http://127.0.0.1:58081/apis/ccompat/v7
    api_url: str  # Apicurio's own API v3 (admin import), e.g. http://127.0.0.1:58081/apis/registry/v3
    auth: tuple[str, str] | None  # (user, password), None when the registry runs without auth


class Response(NamedTuple):
    status: int
    content_type: str
    body: Any  # parsed JSON, or None for an empty body


def call(registry: SchemaRegistry, method: str, url: str, body: bytes | None = None,
         content_type: str = CONFLUENT_JSON, headers: dict[str, str] | None = None,
         auth: bool = True) -> Response:
    """One HTTP request to the registry; HTTP errors are returned as a Response, not raised."""
    request = urllib.request.Request(url, data=body, method=method)
    if body is not None:
        request.add_header("Content-Type", content_type)
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    if auth and registry.auth is not None:
        token = base64.b64encode(":".join(registry.auth).encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:
            status, ctype, raw = response.status, response.headers.get("Content-Type", ""), response.read()
    except urllib.error.HTTPError as err:
        status, ctype, raw = err.code, err.headers.get("Content-Type", ""), err.read()
    return Response(status, ctype, json.loads(raw) if raw else None)


def register(registry: SchemaRegistry, subject: str, schema: str) -> int:
    """Register an Avro schema under `subject` through the Confluent API; return its id."""
    answer = call(registry, "POST", f"{registry.url}/subjects/{subject}/versions",
                  json.dumps({"schema": schema}).encode())
    assert answer.status == 200, f"registering under {subject!r}: HTTP {answer.status} {answer.body!r}"
    return int(answer.body["id"])


def schema_by_id(registry: SchemaRegistry, schema_id: int) -> Response:
    """`GET /schemas/ids/{id}`, the call the step runtime makes."""
    return call(registry, "GET", f"{registry.url}/schemas/ids/{schema_id}")


def export_zip(subject: str, schema: str, schema_id: int) -> bytes:
    """An Apicurio 3 export archive holding one Avro schema as version 1 of `subject`.

    The schema's id in the Confluent API is its content id, which an import with
    X-Registry-Preserve-ContentId keeps. The content hash must be the SHA-256 of the exact text,
    as the registry computes it, so that registering the same text later finds this content.
    """
    digest = hashlib.sha256(schema.encode()).hexdigest()
    now = int(time.time() * 1000)
    stamps = {"owner": "", "createdOn": now, "modifiedBy": "", "modifiedOn": now}
    base = f"groups/default/artifacts/{subject}"
    entities: dict[str, str] = {
        # the manifest must be the first entry: the importer reads it to pick the format version
        "manifest.Manifest.json": json.dumps({
            "systemVersion": "3.0.9", "systemName": "alertops tests", "systemDescription": "",
            "exportVersion": "3.0", "exportedOn": now, "exportedBy": "", "dbVersion": "101"}),
        f"content/{digest}.Content.json": json.dumps({
            "contentId": schema_id, "canonicalHash": digest, "contentHash": digest,
            "artifactType": "AVRO", "contentType": "application/json", "serializedReferences": None}),
        f"content/{digest}.Content.data": schema,
        f"{base}/MetaData.Artifact.json": json.dumps({
            "groupId": None, "artifactId": subject, "artifactType": "AVRO", "name": None,
            "description": None, "labels": None, **stamps}),
        f"{base}/versions/1.ArtifactVersion.json": json.dumps({
            "globalId": schema_id, "groupId": None, "artifactId": subject, "version": "1",
            "versionOrder": 1, "state": "ENABLED", "name": None, "description": None,
            "labels": None, "contentId": schema_id, **stamps}),
        f"{base}/branches/latest.Branch.json": json.dumps({
            "groupId": None, "artifactId": subject, "branchId": "latest", "description": None,
            "systemDefined": True, "versions": ["1"], **stamps}),
    }
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        for name, text in entities.items():
            zf.writestr(name, text)
    return archive.getvalue()


def register_with_id(registry: SchemaRegistry, subject: str, schema: str, schema_id: int) -> None:
    """Make `schema` answer `GET /schemas/ids/{schema_id}` and be version 1 of a new `subject`.

    Idempotent for the same schema text (the registry is shared and keeps its data until it is
    stopped): when the id already holds this text, the subject is registered through the Confluent
    API, which finds the existing content and answers with its id. An id holding another schema,
    or a schema text that already has another id (each text has one id), is an error.
    """
    existing = schema_by_id(registry, schema_id)
    if existing.status == 200:
        assert existing.body["schema"] == schema, (
            f"schema id {schema_id} already holds another schema: {existing.body['schema'][:200]!r}")
        got = register(registry, subject, schema)
        assert got == schema_id, f"registering the text of id {schema_id} under {subject!r} answered id {got}"
        return
    answer = call(registry, "POST", f"{registry.api_url}/admin/import?requireEmptyRegistry=false",
                  export_zip(subject, schema, schema_id), content_type="application/zip",
                  # the global id (Apicurio's version id, not seen by Confluent clients) may be
                  # taken already: let the registry pick one
                  headers={"X-Registry-Preserve-ContentId": "true", "X-Registry-Preserve-GlobalId": "false"})
    assert answer.status == 204, f"admin import: HTTP {answer.status} {answer.body!r}"
    # The import answers 204 even when it skipped an entity (the reason is only in the registry's
    # log, e.g. "Unique index ... CONTENTHASH" when the text already has another id): check.
    imported = schema_by_id(registry, schema_id)
    assert imported.status == 200 and imported.body["schema"] == schema, (
        f"the import did not put the schema at id {schema_id} (HTTP {imported.status} {imported.body!r}); "
        "does the same text already have another id? see ~/.cache/alertops/testenv/registry/registry.log")
