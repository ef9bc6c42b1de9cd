"""A client of the Confluent schema registry REST API (Confluent, Apicurio's ccompat API, Redpanda...).

Only what a consumer needs: `GET /schemas/ids/{id}` for a writer schema, and, when it references
other subjects, `GET /subjects/{subject}/versions/{version}` for each, written out into one
self-contained schema. The standard library's HTTP client is enough for these two calls.
"""
from __future__ import annotations

import base64
import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from step_runtime.step.avro.schemas import expand_references, schema_full_name
from step_runtime.step.errors import SchemaUnavailable

_MAX_RESPONSE = 16 * 1024 * 1024  # a schema is kilobytes; a larger answer is not a schema


class RegistryClient:
    """Schemas by id from a registry at `url` (e.g. http://registry:8081, or Apicurio's
    http://registry:8080/apis/ccompat/v7), with optional basic authentication."""

    def __init__(self, url: str, username: str | None = None, password: str | None = None,
                 timeout_s: float = 5.0) -> None:
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s
        self.description = f"the schema registry at {self.url}"
        self.headers = {"Accept": "application/vnd.schemaregistry.v1+json, application/json"}
        if username is not None:
            token = base64.b64encode(f"{username}:{password or ''}".encode()).decode()
            self.headers["Authorization"] = f"Basic {token}"

    def _get(self, path: str) -> Any | None:
        """The JSON answer to GET path; None on 404; SchemaUnavailable when there is no answer."""
        request = urllib.request.Request(self.url + path, headers=self.headers)  # noqa: S310 - http(s): the spec's pattern
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:  # noqa: S310 - http(s) only, checked by the spec
                body = response.read(_MAX_RESPONSE + 1)
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None
            detail = _error_message(exc)
            raise SchemaUnavailable(f"{self.description} answered {exc.code} {exc.reason} to GET {path}"
                                    + (f": {detail}" if detail else "")) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise SchemaUnavailable(f"cannot reach {self.description} (GET {path}): {reason}") from None
        if len(body) > _MAX_RESPONSE:
            raise ValueError(f"GET {path}: answer larger than {_MAX_RESPONSE} bytes")
        try:
            return json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"GET {path}: the answer is not JSON: {exc}") from None

    def check(self) -> None:
        """Ask for the subject list: a registry whose 404s mean "unknown id" answers it. Without this
        check, a wrong base URL would turn every id into an unknown one and every alert into a dead
        letter."""
        answer = self._get("/subjects")
        if not isinstance(answer, list):
            raise SchemaUnavailable(
                f"{self.description} did not answer GET /subjects with a list of subjects: is the url the "
                "base of a Confluent-compatible API (e.g. http://host:8081, or Apicurio's .../apis/ccompat/v7)?")

    def fetch(self, schema_id: int) -> bytes | None:
        """The self-contained schema JSON of `schema_id`, None when the registry does not know it."""
        answer = self._get(f"/schemas/ids/{schema_id}")
        if answer is None:
            return None
        top = _schema_of(answer, f"GET /schemas/ids/{schema_id}")
        named: dict[str, Any] = {}
        for ref in answer.get("references") or []:
            subject = urllib.parse.quote(str(ref.get("subject", "")), safe="")
            version = urllib.parse.quote(str(ref.get("version", "latest")), safe="")
            path = f"/subjects/{subject}/versions/{version}"
            referenced = self._get(path)
            if referenced is None:
                raise ValueError(f"references {ref.get('name')!r} at {path}, which the registry does not have")
            value = _schema_of(referenced, path)
            named[str(ref.get("name") or schema_full_name(value))] = value
            full = schema_full_name(value)
            if full:
                named[full] = value
        schema = expand_references(top, named) if named else top
        return json.dumps(schema, separators=(",", ":")).encode()


def _schema_of(answer: Any, what: str) -> Any:
    """The Avro schema (a JSON value) inside a registry answer."""
    if not isinstance(answer, dict) or not isinstance(answer.get("schema"), str):
        raise ValueError(f"{what}: the answer has no schema string")
    kind = answer.get("schemaType", "AVRO")
    if kind != "AVRO":
        raise ValueError(f"{what}: the schema is of type {kind}, expected AVRO")
    try:
        return json.loads(answer["schema"])
    except json.JSONDecodeError as exc:
        raise ValueError(f"{what}: the schema is not valid JSON: {exc}") from None


def _error_message(exc: urllib.error.HTTPError) -> str:
    """The registry's own error message (Confluent: {"error_code", "message"}), if it gave one."""
    try:
        body = json.loads(exc.read(4096) or b"{}")
    except (OSError, ValueError):
        return ""
    return str(body.get("message", ""))[:300] if isinstance(body, dict) else ""
