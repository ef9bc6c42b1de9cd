"""The Rubin/LSST example manifests: they validate, render with the registry's credentials as Secret
env vars, and the files demo classifies every shipped Rubin alert."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from pipeline_operator import render_pipelinestep
from step_runtime.spec.common import read_manifest

ROOT = Path(__file__).resolve().parents[2]


def test_the_lsst_classifier_renders_the_registry_credentials_from_secrets() -> None:
    doc = read_manifest(ROOT / "examples" / "pipelinestep-lsst-classifier.yaml", "PipelineStep")
    doc["metadata"].update({"namespace": "alerts", "uid": "u", "generation": 1})
    rendered = render_pipelinestep.render(doc)
    env = {e["name"]: e for e in rendered.deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    for key in ("user", "password"):
        ref = env[f"ALERTOPS_SECRET_RUBIN_REGISTRY_{key.upper()}"]["valueFrom"]["secretKeyRef"]
        assert ref == {"name": "rubin-registry", "key": key}
    assert "rubin-registry" not in render_pipelinestep.manifest_text(rendered.deployment).split("schemaRegistry")[0]


def test_the_lsst_files_demo_classifies_every_shipped_alert(tmp_path: Path) -> None:
    res = subprocess.run([sys.executable, "-m", "step_runtime", "run", str(ROOT / "examples" / "step-demo-lsst.yaml"),
                          "--output-dir", str(tmp_path), "--http-port", "0"], capture_output=True, text=True,
                         timeout=300, cwd=ROOT)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "messages in: 14  outputs: 23  dead-lettered: 0" in res.stdout
    rows = [json.loads(x) for x in (tmp_path / "step-demo-lsst" / "probabilities.jsonl").read_text().splitlines()]
    assert len(rows) == 23 and {r["survey"] for r in rows} == {"lsst"}
    # 10 alerts of the AMPEL container, 3 real packets, Rubin's sample in 10 schema versions (one object)
    assert len({r["oid"] for r in rows}) == 10 + 3 + 1
    # ids above 2^53 come out exact (a double would round 281323062375219200 to ...201)
    assert {281323062375219200, 25409136044802067, 3527242430321524769} <= {r["diaSourceId"] for r in rows}
