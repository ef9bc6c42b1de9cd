"""Shared fixtures: where the real services of the test environment are.

`scripts/testenv env` exports the addresses; `make test` evaluates it before pytest.
Outside CI a missing service skips its tests (so unit tests run anywhere); with CI=true a
missing service fails them, because a skipped integration test proves nothing.
"""
from __future__ import annotations

import os

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _service(var: str, what: str) -> str:
    value = os.environ.get(var, "")
    if not value:
        message = f"{what} is not available: {var} is unset (run `eval \"$(scripts/testenv env)\"`)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return value


@pytest.fixture(scope="session")
def kubeconfig() -> str:
    """Path of the kubeconfig of the test cluster (kube-apiserver with kwok nodes).

    Read from ALERTOPS_KUBECONFIG, not the generic KUBECONFIG, so that a developer's shell
    pointing at a real cluster never gets test namespaces created and deleted in it.
    """
    return _service("ALERTOPS_KUBECONFIG", "Kubernetes")


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    """bootstrap.servers of the test Kafka broker."""
    return _service("ALERTOPS_KAFKA_BOOTSTRAP", "Kafka")


@pytest.fixture(scope="session")
def postgres_dsn() -> str:
    """libpq DSN of the test PostgreSQL database."""
    return _service("ALERTOPS_POSTGRES_DSN", "PostgreSQL")


@pytest.fixture(scope="session")
def mongodb_uri() -> str:
    """URI of the test MongoDB-wire server (FerretDB)."""
    return _service("ALERTOPS_MONGODB_URI", "MongoDB-wire server")


@pytest.fixture(scope="session")
def schema_registry_url() -> str:
    """Base URL of the test schema registry's Confluent-compatible API: GET {url}/schemas/ids/{id}."""
    return _service("ALERTOPS_SCHEMA_REGISTRY_URL", "Schema registry")


@pytest.fixture(scope="session")
def schema_registry_api_url(schema_registry_url: str) -> str:
    """Base URL of the same registry's own API (Apicurio v3), for its admin import (chosen ids)."""
    return _service("ALERTOPS_SCHEMA_REGISTRY_API_URL", "Schema registry (Apicurio API)")


@pytest.fixture(scope="session")
def schema_registry_auth(schema_registry_url: str) -> tuple[str, str] | None:
    """(user, password) of the test registry's HTTP basic auth; None when it runs without auth."""
    user = os.environ.get("ALERTOPS_SCHEMA_REGISTRY_USER")
    return None if user is None else (user, os.environ.get("ALERTOPS_SCHEMA_REGISTRY_PASSWORD", ""))


@pytest.fixture(scope="session")
def s3_store() -> dict[str, str]:
    """The test object store's S3 endpoint and admin credentials (SeaweedFS)."""
    return {"endpoint": _service("ALERTOPS_S3_ENDPOINT", "S3 object store"),
            "access_key_id": os.environ.get("ALERTOPS_S3_ACCESS_KEY_ID", ""),
            "secret_access_key": os.environ.get("ALERTOPS_S3_SECRET_ACCESS_KEY", "")}
