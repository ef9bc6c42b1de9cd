"""examples/argocd/health.lua run by a real Lua interpreter (lupa), on a table of statuses."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

lupa = pytest.importorskip("lupa", reason="lupa (a dev dependency) runs the Argo CD health check")

ARGO = Path(__file__).resolve().parents[2] / "examples" / "argocd"
SCRIPT = (ARGO / "health.lua").read_text()


def conditions(ready="False", reconciling="False", stalled="False", message="m"):
    return [{"type": "Ready", "status": ready, "reason": "R", "message": message},
            {"type": "Reconciling", "status": reconciling, "reason": "R", "message": message},
            {"type": "Stalled", "status": stalled, "reason": "R", "message": message}]


def resource(kind="PipelineStep", generation=2, status=None, suspend=False):
    obj = {"apiVersion": "alertops.io/v1alpha1", "kind": kind,
           "metadata": {"name": "x", "generation": generation}, "spec": {"suspend": suspend}}
    if status is not None:
        obj["status"] = status
    return obj


def health(obj: dict) -> tuple[str, str]:
    lua = lupa.LuaRuntime(unpack_returned_tuples=True)
    lua.globals().obj = lua.table_from(obj, recursive=True)
    result = lua.execute(SCRIPT)
    return result["status"], result["message"]


CASES = [
    ("no status yet", resource(), "Progressing", "operator"),
    ("generation not observed", resource(status={"observedGeneration": 1, "phase": "Running",
                                                 "conditions": conditions(ready="True")}), "Progressing",
     "Generation 2"),
    ("ready", resource(status={"observedGeneration": 2, "phase": "Running",
                               "conditions": conditions(ready="True", message="2/2 replicas ready")}),
     "Healthy", "2/2 replicas ready"),
    ("reconciling", resource(status={"observedGeneration": 2, "phase": "Progressing",
                                     "conditions": conditions(reconciling="True", message="1/2 ready")}),
     "Progressing", "1/2 ready"),
    ("stalled", resource(status={"observedGeneration": 2, "phase": "Failed",
                                 "conditions": conditions(stalled="True", message="cannot pull image")}),
     "Degraded", "cannot pull image"),
    ("failed without conditions", resource(status={"observedGeneration": 2, "phase": "Failed",
                                                   "lastError": "boom"}), "Degraded", "boom"),
    ("suspended", resource(suspend=True, status={"observedGeneration": 2, "phase": "Suspended",
                                                 "conditions": conditions()}), "Suspended", "suspend"),
    ("suspend not yet applied", resource(suspend=True, status={"observedGeneration": 1, "phase": "Running",
                                                               "conditions": conditions(ready="True")}),
     "Progressing", "not yet observed"),
    ("build succeeded", resource(kind="TrainingSetBuild", status={
        "observedGeneration": 2, "phase": "Succeeded",
        "conditions": conditions(ready="True", message="wrote 10 rows")}), "Healthy", "wrote 10 rows"),
    ("build running", resource(kind="TrainingSetBuild", status={
        "observedGeneration": 2, "phase": "Running", "conditions": conditions(reconciling="True",
                                                                             message="1/4 partitions done")}),
     "Progressing", "1/4 partitions"),
    ("build failed", resource(kind="TrainingSetBuild", status={
        "observedGeneration": 2, "phase": "Failed",
        "conditions": conditions(stalled="True", message="Job failed")}), "Degraded", "Job failed"),
]


@pytest.mark.parametrize("obj,expected,fragment", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_health(obj, expected, fragment):
    status, message = health(obj)
    assert status == expected
    assert fragment in message


def test_configmap_embeds_the_script_for_both_kinds():
    cm = yaml.safe_load((ARGO / "argocd-cm-health.yaml").read_text())
    for kind in ("PipelineStep", "TrainingSetBuild"):
        assert cm["data"][f"resource.customizations.health.alertops.io_{kind}"].strip() == SCRIPT.strip()


def test_application_ignores_replicas_of_pipelinesteps():
    app = yaml.safe_load((ARGO / "application.yaml").read_text())
    ignore = app["spec"]["ignoreDifferences"][0]
    assert ignore["kind"] == "PipelineStep" and "/spec/replicas" in ignore["jsonPointers"]
    assert "RespectIgnoreDifferences=true" in app["spec"]["syncPolicy"]["syncOptions"]
