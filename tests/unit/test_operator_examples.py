"""The example manifests users copy: they validate against the spec models and render."""
from __future__ import annotations

from pathlib import Path

import pytest

from pipeline_operator import render_pipelinestep, render_trainingset
from step_runtime.spec.common import read_manifest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
STEPS = sorted(EXAMPLES.glob("pipelinestep-*.yaml"))
BUILDS = sorted(EXAMPLES.glob("trainingsetbuild-*.yaml"))


def _resource(path: Path, kind: str) -> dict:
    doc = read_manifest(path, kind)
    doc["metadata"].update({"namespace": "alerts", "uid": "u", "generation": 1})
    return doc


def test_there_are_examples():
    assert len(STEPS) >= 3 and len(BUILDS) >= 1


@pytest.mark.parametrize("path", STEPS, ids=lambda p: p.name)
def test_pipelinestep_example_renders(path):
    rendered = render_pipelinestep.render(_resource(path, "PipelineStep"))
    assert render_pipelinestep.manifest_text(rendered.deployment)
    assert rendered.deployment["spec"]["template"]["spec"]["containers"][0]["command"][1] == "run"


@pytest.mark.parametrize("path", BUILDS, ids=lambda p: p.name)
def test_trainingsetbuild_example_renders(path):
    rendered = render_trainingset.render(_resource(path, "TrainingSetBuild"))
    assert rendered.main_job["spec"]["template"]["spec"]["containers"][0]["command"][1] == "build"


def test_keda_scaledobject_targets_the_features_example():
    """The ScaledObject drives the step's scale subresource and reads the step's own consumer group."""
    import yaml

    scaled = yaml.safe_load((EXAMPLES / "keda" / "scaledobject.yaml").read_text())
    step = read_manifest(EXAMPLES / "pipelinestep-features.yaml", "PipelineStep")
    target = scaled["spec"]["scaleTargetRef"]
    assert (target["apiVersion"], target["kind"], target["name"]) == (
        "alertops.io/v1alpha1", "PipelineStep", step["metadata"]["name"])
    (trigger,) = scaled["spec"]["triggers"]
    kafka = step["spec"]["source"]["kafka"]
    assert trigger["type"] == "kafka"
    assert trigger["metadata"]["consumerGroup"] == kafka["groupId"]
    assert trigger["metadata"]["topic"] in kafka["topics"]
    assert trigger["metadata"]["bootstrapServers"] == kafka["bootstrapServers"]
