"""crdgen: pydantic JSON Schema -> structural OpenAPI v3, and the generated CRDs in crds/."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import pytest
import yaml
from pydantic import Field

from pipeline_operator.crdgen import CelRule, SchemaConversionError, add_cel_rules, model_schema
from pipeline_operator.crds import DEFINITIONS, all_crds
from pipeline_operator.crds_command import render_files
from step_runtime.spec.common import SecretKeyRef, SpecModel

REPO = Path(__file__).resolve().parents[2]


class Inner(SpecModel):
    """Inner docstring."""

    radius_arcsec: float = Field(gt=0, le=3600, description="Radius.")


class Sample(SpecModel):
    """A sample model."""

    inner: Inner = Field(description="The inner object.")
    maybe: Inner | None = Field(None, description="Optional inner.")
    password: SecretKeyRef | None = Field(None, description="A secret.")
    tags: set[str] = Field(default_factory=set, description="Tags.")
    mode: Literal["a", "b"] = Field("a", description="Mode.")
    fixed: Literal["k"] = Field("k", description="Constant.")
    port: int | str = Field(8080, description="Port number or name.")
    labels: dict[str, str] = Field(default_factory=dict, description="Labels.")
    free: Any = Field(None, description="Free-form.")


def walk(node: Any):
    """Every (key, value) pair of a nested schema."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield k, v
            yield from walk(v)
    elif isinstance(node, list):
        for v in node:
            yield from walk(v)


def test_refs_are_inlined_and_field_description_wins():
    s = model_schema(Sample)
    inner = s["properties"]["inner"]
    assert inner["type"] == "object"
    assert inner["description"] == "The inner object."
    assert inner["required"] == ["radiusArcsec"]
    assert not any(k in ("$ref", "$defs", "anyOf", "allOf", "title") for k, _ in walk(s))


def test_optional_becomes_nullable_without_null_default():
    maybe = model_schema(Sample)["properties"]["maybe"]
    assert maybe["nullable"] is True and maybe["type"] == "object" and "default" not in maybe


def test_exclusive_bounds_use_openapi_v3_form():
    radius = model_schema(Sample)["properties"]["inner"]["properties"]["radiusArcsec"]
    assert radius == {"description": "Radius.", "type": "number", "minimum": 0, "exclusiveMinimum": True,
                      "maximum": 3600}


def test_enums_consts_sets_int_or_string_maps_and_any():
    p = model_schema(Sample)["properties"]
    assert p["mode"]["enum"] == ["a", "b"] and p["mode"]["default"] == "a"
    assert p["fixed"]["enum"] == ["k"]
    assert p["tags"]["x-kubernetes-list-type"] == "set" and "uniqueItems" not in p["tags"]
    assert p["port"]["x-kubernetes-int-or-string"] is True and p["port"]["default"] == 8080
    assert p["labels"]["additionalProperties"] == {"type": "string"}
    assert p["free"]["x-kubernetes-preserve-unknown-fields"] is True
    # Structural: additionalProperties never sits beside properties.
    assert not any(isinstance(v, dict) and "properties" in v and "additionalProperties" in v for _, v in walk(p))


def test_secret_ref_is_a_typed_object():
    ref = model_schema(Sample)["properties"]["password"]
    assert ref["properties"]["name"]["pattern"] and ref["required"] == ["name", "key"]


def test_a_union_of_objects_is_refused_naming_the_field():
    class Other(SpecModel):
        x: int = 1

    class Bad(SpecModel):
        either: Inner | Other = Field(description="Either.")

    with pytest.raises(SchemaConversionError, match="either"):
        model_schema(Bad)


def test_cel_rules_are_placed_at_their_path():
    s = add_cel_rules(model_schema(Sample), [CelRule("inner", "self.radiusArcsec < 10", "too far"),
                                             CelRule("", "has(self.inner)", "need inner")])
    assert s["properties"]["inner"]["x-kubernetes-validations"] == [{"rule": "self.radiusArcsec < 10",
                                                                     "message": "too far"}]
    assert s["x-kubernetes-validations"][0]["rule"] == "has(self.inner)"
    with pytest.raises(SchemaConversionError, match="nosuch"):
        add_cel_rules(model_schema(Sample), [CelRule("nosuch", "true", "x")])


def test_crds_dir_matches_the_models():
    """Fails when crds/ drifts from the spec models: run `alertops crds --write crds/`."""
    for name, text in render_files().items():
        path = REPO / "crds" / name
        assert path.is_file(), f"{path} missing: run `alertops crds --write crds/`"
        assert path.read_text() == text, f"{path} is stale: run `alertops crds --write crds/`"


def test_pipelinestep_crd_shape():
    crd = all_crds()["pipelinesteps.alertops.io.yaml"]
    spec = crd["spec"]
    assert spec["group"] == "alertops.io"
    assert spec["names"]["shortNames"] == ["pstep"] and spec["names"]["categories"] == ["alertops"]
    version = spec["versions"][0]
    assert version["name"] == "v1alpha1"
    assert version["subresources"]["scale"] == {"specReplicasPath": ".spec.replicas",
                                                "statusReplicasPath": ".status.replicas",
                                                "labelSelectorPath": ".status.selector"}
    columns = [c["name"] for c in version["additionalPrinterColumns"]]
    assert columns[:6] == ["Ready", "Phase", "Replicas", "Processor", "Model", "Age"]
    schema = version["schema"]["openAPIV3Schema"]["properties"]
    assert schema["spec"]["properties"]["replicas"]["minimum"] == 0
    processor_rules = schema["spec"]["properties"]["processor"]["x-kubernetes-validations"]
    assert "exactly one of model, crossmatch, features, python" in processor_rules[0]["message"]
    status = schema["status"]["properties"]
    assert {"observedGeneration", "phase", "replicas", "readyReplicas", "selector", "conditions",
            "configHash", "lastError"} <= set(status)


def test_trainingsetbuild_crd_shape():
    crd = all_crds()["trainingsetbuilds.alertops.io.yaml"]
    version = crd["spec"]["versions"][0]
    assert crd["spec"]["names"]["shortNames"] == ["tsb"]
    assert "scale" not in version["subresources"] and "status" in version["subresources"]
    assert [c["name"] for c in version["additionalPrinterColumns"]][:4] == ["Phase", "Progress", "Rows", "Age"]
    catalogs = version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["catalogs"]
    radius = catalogs["items"]["properties"]["radiusArcsec"]
    assert radius["minimum"] == 0 and radius["exclusiveMinimum"] is True
    status = version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]
    assert set(status["phase"]["enum"]) >= {"Pending", "Running", "Succeeded", "Failed"}


@pytest.mark.parametrize("d", DEFINITIONS, ids=lambda d: d.kind)
def test_every_spec_field_has_a_description(d):
    """The CRD is the reference `kubectl explain` shows: no undocumented field."""
    schema = all_crds()[f"{d.plural}.{d.group}.yaml"]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]

    def check(node: dict, path: str) -> None:
        for name, sub in (node.get("properties") or {}).items():
            assert sub.get("description"), f"{path}.{name} has no description"
            check(sub, f"{path}.{name}")
        if isinstance(node.get("items"), dict):
            check(node["items"], f"{path}[]")

    check(schema["properties"]["spec"], "spec")


def test_generated_files_are_yaml_with_a_header():
    for text in render_files().values():
        assert text.startswith("# Generated by `alertops crds")
        assert yaml.safe_load(text)["kind"] == "CustomResourceDefinition"
