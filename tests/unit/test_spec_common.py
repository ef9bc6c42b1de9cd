"""The shared spec pieces: Secret references, manifest reading, error messages."""
from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import Field, ValidationError

from step_runtime.spec.common import (
    GROUP_VERSION,
    SecretKeyRef,
    SpecError,
    SpecModel,
    parse_spec,
    read_manifest,
)


class _Inner(SpecModel):
    radius_arcsec: float = Field(gt=0)


class _Spec(SpecModel):
    bootstrap_servers: str
    items: list[_Inner] = []


def test_camel_case_aliases_and_snake_case_attributes() -> None:
    spec = parse_spec(_Spec, {"bootstrapServers": "k:9092"}, "x.yaml")
    assert spec.bootstrap_servers == "k:9092"
    assert spec.model_dump(by_alias=True)["bootstrapServers"] == "k:9092"


def test_unknown_field_is_an_error_naming_it() -> None:
    with pytest.raises(SpecError) as exc:
        parse_spec(_Spec, {"bootstrapServers": "k", "bootstrapServer": "typo"}, "step.yaml")
    assert "step.yaml: spec.bootstrapServer" in str(exc.value)


def test_nested_error_names_the_path_and_value() -> None:
    with pytest.raises(SpecError) as exc:
        parse_spec(_Spec, {"bootstrapServers": "k", "items": [{"radiusArcsec": 1}, {"radiusArcsec": -2}]}, "f.yaml")
    msg = str(exc.value)
    assert "spec.items[1].radiusArcsec" in msg
    assert "-2" in msg


def test_secret_env_var_name_is_stable_and_shell_safe() -> None:
    ref = SecretKeyRef(name="pg-credentials", key="dsn.url")
    assert ref.env_var_name() == "ALERTOPS_SECRET_PG_CREDENTIALS_DSN_URL"
    with pytest.raises(ValidationError):
        SecretKeyRef(name="Bad_Name", key="k")


def test_read_manifest_picks_the_kind_among_documents(tmp_path: Path) -> None:
    f = tmp_path / "m.yaml"
    f.write_text(
        "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\n---\n"
        f"apiVersion: {GROUP_VERSION}\nkind: PipelineStep\nmetadata: {{name: a}}\nspec: {{x: 1}}\n"
    )
    doc = read_manifest(f, "PipelineStep")
    assert doc["metadata"]["name"] == "a"


@pytest.mark.parametrize(
    "text, expected",
    [
        ("apiVersion: alertops.io/v1\nkind: PipelineStep\nspec: {}\n", "expected 'alertops.io/v1alpha1'"),
        (f"apiVersion: {GROUP_VERSION}\nkind: TrainingSetBuild\nspec: {{}}\n", "no PipelineStep document"),
        (f"apiVersion: {GROUP_VERSION}\nkind: PipelineStep\n", "has no spec"),
        ("a: [unclosed\n", "not valid YAML"),
    ],
)
def test_read_manifest_errors_say_what_is_wrong(tmp_path: Path, text: str, expected: str) -> None:
    f = tmp_path / "m.yaml"
    f.write_text(text)
    with pytest.raises(SpecError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        read_manifest(f, "PipelineStep")


def test_missing_manifest_file(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="no such manifest file"):
        read_manifest(tmp_path / "nope.yaml", "PipelineStep")
