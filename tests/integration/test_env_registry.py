"""The test environment's schema registry is a real Confluent-compatible registry (Apicurio Registry).

These tests talk to the server `scripts/testenv up registry` starts, through the calls the step
runtime makes (`GET /schemas/ids/{id}`) and the calls a test makes to prepare them (register a
schema, or put one at a chosen id). The registry keeps its data until it stops and is shared by
every test: each test registers under its own subject names, and the schemas whose id must be
new carry a unique record name.
"""
from __future__ import annotations

import json
import uuid

import pytest
from registry_support import CONFLUENT_JSON, SchemaRegistry, call, register, register_with_id, schema_by_id

# Never assigned by a test registry: ids count up from 1, and chosen ids stay far below.
UNKNOWN_ID = 2**31 - 1
# A chosen id in the style of Rubin's (schema M.m has id M*100+m), far from the published ones
# (7.0 to 11.1: 700 to 1101) so that it never takes an id a test of real LSST schemas chooses.
CHOSEN_ID = 9901
CHOSEN_SCHEMA = json.dumps({
    "type": "record", "name": "alert", "namespace": "alertops.test.v99_1",
    "fields": [{"name": "diaSourceId", "type": "long"}, {"name": "psfFlux", "type": ["null", "float"]}],
}, separators=(",", ":"))


@pytest.fixture(scope="module")
def registry(schema_registry_url: str, schema_registry_api_url: str,
             schema_registry_auth: tuple[str, str] | None) -> SchemaRegistry:
    return SchemaRegistry(schema_registry_url, schema_registry_api_url, schema_registry_auth)


def new_schema() -> str:
    """An Avro record schema no registry has seen: its record name is unique."""
    return json.dumps({
        "type": "record", "name": f"alert_{uuid.uuid4().hex[:12]}", "namespace": "alertops.test",
        "fields": [{"name": "objectId", "type": "string"}, {"name": "mjd", "type": "double"}],
    }, separators=(",", ":"))


def subject() -> str:
    return f"alertops-test-{uuid.uuid4().hex[:12]}-value"


def test_registry_answers_the_confluent_api(registry: SchemaRegistry) -> None:
    subjects = call(registry, "GET", f"{registry.url}/subjects")
    assert subjects.status == 200 and isinstance(subjects.body, list), subjects
    types = call(registry, "GET", f"{registry.url}/schemas/types")
    assert types.status == 200 and "AVRO" in types.body, types


def test_registered_schema_comes_back_equal_by_id(registry: SchemaRegistry) -> None:
    schema, first = new_schema(), subject()
    schema_id = register(registry, first, schema)
    assert schema_id > 0

    got = schema_by_id(registry, schema_id)
    assert got.status == 200, got
    assert got.content_type.startswith("application/json") or got.content_type.startswith(CONFLUENT_JSON)
    assert got.body["schema"] == schema  # the exact text, not a reformatted one
    assert json.loads(got.body["schema"]) == json.loads(schema)

    versions = call(registry, "GET", f"{registry.url}/subjects/{first}/versions")
    assert versions.status == 200 and versions.body == [1], versions
    latest = call(registry, "GET", f"{registry.url}/subjects/{first}/versions/latest")
    assert latest.status == 200 and latest.body["id"] == schema_id and latest.body["subject"] == first, latest

    # The id belongs to the text, not to the subject: the same text elsewhere has the same id,
    # another text has another one.
    assert register(registry, subject(), schema) == schema_id
    assert register(registry, first, new_schema()) not in (schema_id, 0)


def test_unknown_id_answers_404_with_a_json_error(registry: SchemaRegistry) -> None:
    answer = schema_by_id(registry, UNKNOWN_ID)
    assert answer.status == 404
    assert answer.content_type.startswith("application/json")
    assert answer.body == {"error_code": 40403, "message": f"No content with ID '{UNKNOWN_ID}' was found."}


def test_credentials_are_required(registry: SchemaRegistry) -> None:
    if registry.auth is None:
        pytest.skip("the registry runs without auth (ALERTOPS_REGISTRY_AUTH=none)")
    anonymous = call(registry, "GET", f"{registry.url}/subjects", auth=False)
    assert anonymous.status == 401 and anonymous.body is None, anonymous
    wrong = registry._replace(auth=(registry.auth[0], registry.auth[1] + "-wrong"))
    assert call(wrong, "GET", f"{registry.url}/schemas/ids/{UNKNOWN_ID}").status == 401


def test_a_schema_can_be_put_at_a_chosen_id(registry: SchemaRegistry) -> None:
    # Twice: the first call of a run imports (unless an earlier run against the same server
    # did), the second always finds the id taken by the same text and just adds the subject.
    subjects = [subject(), subject()]
    for name in subjects:
        register_with_id(registry, name, CHOSEN_SCHEMA, CHOSEN_ID)

    got = schema_by_id(registry, CHOSEN_ID)
    assert got.status == 200 and got.body["schema"] == CHOSEN_SCHEMA, got
    for name in subjects:
        latest = call(registry, "GET", f"{registry.url}/subjects/{name}/versions/latest")
        assert latest.status == 200 and latest.body["id"] == CHOSEN_ID, latest
    # A producer registering the same text through the Confluent API gets the chosen id too.
    assert register(registry, subject(), CHOSEN_SCHEMA) == CHOSEN_ID


def test_a_chosen_id_holding_another_schema_is_refused(registry: SchemaRegistry) -> None:
    register_with_id(registry, subject(), CHOSEN_SCHEMA, CHOSEN_ID)
    with pytest.raises(AssertionError, match=f"schema id {CHOSEN_ID} already holds another schema"):
        register_with_id(registry, subject(), new_schema(), CHOSEN_ID)
