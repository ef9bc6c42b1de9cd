"""The pinned model: sha256 check before unpickling, ranked probabilities, the shipped demo model."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from step_runtime.spec.pipelinestep import ModelProcessor
from step_runtime.step.alert_model import LSST, ZTF
from step_runtime.step.decode import alerts_of
from step_runtime.step.model import ModelError, file_sha256, load_pinned_model, ranked_probabilities
from step_runtime.step.processors import ModelStep

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "examples" / "models" / "demo_classifier.joblib"
DEMO = ROOT / "examples" / "step-demo.yaml"


def pinned() -> str:
    return yaml.safe_load(DEMO.read_text())["spec"]["processor"]["model"]["sha256"]


def test_demo_step_pins_the_shipped_model() -> None:
    assert file_sha256(MODEL) == pinned()


def test_mismatch_refuses_to_load_and_names_both_hashes(tmp_path: Path) -> None:
    tampered = tmp_path / "model.joblib"
    tampered.write_bytes(MODEL.read_bytes() + b"\0")
    actual = file_sha256(tampered)
    with pytest.raises(ModelError) as err:
        load_pinned_model(tampered, pinned())
    assert actual in str(err.value) and pinned() in str(err.value)
    assert "refusing to load" in str(err.value)


def test_missing_model_file(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="does not exist"):
        load_pinned_model(tmp_path / "nope.joblib", "0" * 64)


def test_ranking_is_one_for_the_most_probable() -> None:
    ranked = ranked_probabilities(np.array([[0.2, 0.5, 0.3], [0.6, 0.1, 0.3]]), ["a", "b", "c"], "clf", "1")
    assert [(p["class_name"], p["ranking"]) for p in ranked[0]] == [("a", 3), ("b", 1), ("c", 2)]
    assert [p["ranking"] for p in ranked[1]] == [1, 3, 2]
    assert ranked[0][0]["classifier_name"] == "clf" and ranked[0][0]["classifier_version"] == "1"
    # Plain Python numbers, as every sink (JSON, BSON, PostgreSQL arrays) takes them.
    assert {type(p["probability"]) for row in ranked for p in row} == {float}
    assert {type(p["ranking"]) for row in ranked for p in row} == {int}


def test_model_step_outputs_every_class_for_real_alerts() -> None:
    spec = ModelProcessor(path=str(MODEL), sha256=pinned(), classifier_name="demo", classifier_version="0.1.0")
    step = ModelStep(spec, ROOT, ZTF)
    alerts = [alerts_of(p.read_bytes())[0] for p in sorted((ROOT / "examples/data/alerts").glob("[0-9]*.avro"))
              if "proto" not in p.name]
    outputs, failures = step.process(alerts)
    assert failures == [] and len(outputs) == len(alerts)
    for out in outputs:
        probs = out["probabilities"]
        assert {p["class_name"] for p in probs} == set(step.classes)
        assert sum(p["probability"] for p in probs) == pytest.approx(1.0)
        assert sorted(p["ranking"] for p in probs) == list(range(1, len(step.classes) + 1))
        assert out["class_name"] == next(p["class_name"] for p in probs if p["ranking"] == 1)


def test_features_from_message_dead_letters_rows_without_oid() -> None:
    spec = ModelProcessor(path=str(MODEL), sha256=pinned(), classifier_name="demo", classifier_version="0.1.0",
                          features_from="message")
    step = ModelStep(spec, ROOT, None)
    outputs, failures = step.process([{"oid": "ZTF1", "mean_mag_g": 17.0}, {"mean_mag_g": 18.0}])
    assert [o["oid"] for o in outputs] == ["ZTF1"]
    assert failures and failures[0][0] == 1 and "oid" in failures[0][1]


def test_the_demo_model_classifies_lsst_alerts_from_their_g_and_r_fluxes() -> None:
    spec = ModelProcessor(path=str(MODEL), sha256=pinned(), classifier_name="demo", classifier_version="0.1.0")
    step = ModelStep(spec, ROOT, LSST)
    srcs = [{"sourceId": i, "ra": 10.0, "dec": 5.0, "mjd": 60000.0 + i, "band": "gr"[i % 2], "mag": None, "magErr": None,
             "flux": 5000.0 + 300 * (i % 3), "fluxErr": 50.0, "isNegative": False, "refMag": None, "refDistArcsec": None}
            for i in range(12)]
    alert = {"survey": "lsst", "oid": "170", "source": srcs[-1], "detections": srcs[:-1]}
    outputs, failures = step.process([alert])
    assert failures == [] and outputs[0]["oid"] == "170" and outputs[0]["survey"] == "lsst"
    assert outputs[0]["diaSourceId"] == 11 and outputs[0]["class_name"] in step.classes


def test_a_model_needing_features_the_survey_lacks_is_refused_at_start() -> None:
    spec = ModelProcessor(path=str(MODEL), sha256=pinned(), classifier_name="demo", classifier_version="0.1.0",
                          features_from="alert")
    with pytest.raises(ValueError, match="reads alerts: the source format must be ztf-avro or lsst-avro"):
        ModelStep(spec, ROOT, None)


def _model_on(tmp_path: Path, names: list[str]) -> tuple[Path, str]:
    import joblib
    import pandas as pd
    from sklearn.tree import DecisionTreeClassifier

    X = pd.DataFrame({n: [0.0, 1.0, 2.0, 3.0] for n in names})
    path = tmp_path / "m.joblib"
    joblib.dump(DecisionTreeClassifier().fit(X, ["a", "b", "a", "b"]), path)
    return path, file_sha256(path)


def test_a_model_trained_on_other_features_is_refused_naming_missing_and_extra(tmp_path: Path) -> None:
    path, sha = _model_on(tmp_path, ["mean_mag_g", "period", "g_r_mean"])
    spec = ModelProcessor(path=str(path), sha256=sha, classifier_name="m", classifier_version="1")
    with pytest.raises(ModelError) as err:
        ModelStep(spec, ROOT, ZTF)
    text = str(err.value)
    assert "needs features ['period']" in text and "(missing)" in text
    assert "'n_det_g'" in text and "(extra)" in text and "'mean_mag_g'" not in text.split("(missing)")[1].split("(extra)")[0]


def test_listed_features_that_differ_from_the_model_name_missing_and_extra(tmp_path: Path) -> None:
    path, sha = _model_on(tmp_path, ["mean_mag_g", "g_r_mean"])
    spec = ModelProcessor(path=str(path), sha256=sha, classifier_name="m", classifier_version="1",
                          features=["mean_mag_g", "mean_mag_r"], features_from="message")
    with pytest.raises(ModelError, match=r"missing \['g_r_mean'\], extra \['mean_mag_r'\]"):
        ModelStep(spec, ROOT, None)
    spec.features = ["g_r_mean", "mean_mag_g"]
    with pytest.raises(ModelError, match="the same names in another order"):
        ModelStep(spec, ROOT, None)
