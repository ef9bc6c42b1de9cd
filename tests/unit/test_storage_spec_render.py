"""Models and catalogs by URI, volumes, the fetch init container, model status and shadows:
the spec's checks and the operator's pure functions."""
from __future__ import annotations

import copy

import pytest

from pipeline_operator import render_pipelinestep
from pipeline_operator.conditions import Verdict, dump_status
from pipeline_operator.derive import StepFacts, pipelinestep_status, pod_problem
from pipeline_operator.rollout import MODEL_SHA256, MODEL_VERSION, fetch_problem, ready_models
from pipeline_operator.shadow import footprint, shadow_conflicts, shadow_refusal
from step_runtime.spec.common import SpecError, parse_spec
from step_runtime.spec.pipelinestep import PipelineStepSpec
from step_runtime.storage.uri import fetched_name, parse_quantity, parse_uri

SHA = "a" * 64
S3 = {"endpoint": "http://seaweedfs:8333", "accessKeyId": {"name": "models", "key": "id"},
      "secretAccessKey": {"name": "models", "key": "secret"}}


def spec(**over) -> dict:
    s = {
        "replicas": 2,
        "source": {"kafka": {"bootstrapServers": "kafka:9092", "topics": ["ztf-features"], "groupId": "clf",
                             "format": "json"}},
        "processor": {"model": {"uri": "s3://models/rf/1.0.0.joblib", "s3": S3, "sha256": SHA,
                                "classifierName": "rf", "classifierVersion": "1.0.0", "featuresFrom": "message"}},
        "sinks": [{"postgres": {"dsn": {"name": "pg", "key": "dsn"}, "table": "probability", "mode": "probability"}}],
    }
    s.update(over)
    return s


def resource(s: dict, name: str = "clf") -> dict:
    return {"apiVersion": "alertops.io/v1alpha1", "kind": "PipelineStep",
            "metadata": {"name": name, "namespace": "brokers", "uid": f"uid-{name}", "generation": 1}, "spec": s}


def parsed(s: dict) -> PipelineStepSpec:
    return parse_spec(PipelineStepSpec, s, "test")


def pod_spec(s: dict) -> dict:
    return render_pipelinestep.render(resource(s)).deployment["spec"]["template"]["spec"]


# -- URIs -----------------------------------------------------------------------------------

def test_uris_parse_and_name_their_fetched_file():
    loc = parse_uri("s3://models/rf/1.0.0.joblib")
    assert (loc.scheme, loc.authority, loc.key, loc.fetched) == ("s3", "models", "rf/1.0.0.joblib", True)
    assert not parse_uri("pvc://catalogs/vsx.parquet").fetched
    name = fetched_name("s3://models/rf/1.0.0.joblib")
    assert name.endswith("-1.0.0.joblib") and name != fetched_name("s3://other/rf/1.0.0.joblib")
    with pytest.raises(ValueError, match="pvc:// path may not contain"):
        parse_uri("pvc://claim/../etc/passwd")


def test_quantities_are_bytes():
    assert parse_quantity("1Gi") == 1 << 30
    assert parse_quantity("500M") == 500_000_000
    assert parse_quantity("1048576") == 1 << 20
    with pytest.raises(ValueError, match="not a quantity"):
        parse_quantity("1 GB")


# -- the spec ---------------------------------------------------------------------------------

@pytest.mark.parametrize("model, message", [
    ({"path": "/m.joblib", "uri": "s3://bkt/m.joblib"}, "model needs exactly one of path or uri (got path, uri)"),
    ({}, "model needs exactly one of path or uri (got none)"),
    ({"uri": "https://example.org/m.joblib", "s3": {"endpoint": "http://x:1"}}, "s3 sets how an s3:// uri is fetched"),
    ({"uri": "s3://bkt/m.joblib", "s3": {"accessKeyId": {"name": "a", "key": "b"}}}, "both accessKeyId and secretAccessKey"),
    ({"uri": "ftp://host/m.joblib"}, "expected s3://bucket/key, https://host/path or pvc://claim/path"),
])
def test_model_location_is_checked(model, message):
    m = {"sha256": SHA, "classifierName": "rf", "classifierVersion": "1", "featuresFrom": "message", **model}
    with pytest.raises(SpecError) as err:
        parsed(spec(processor={"model": m}))
    assert message in str(err.value)


def test_a_model_needs_its_pin_a_catalog_may_go_without():
    m = {"uri": "s3://bkt/m.joblib", "classifierName": "rf", "classifierVersion": "1"}
    with pytest.raises(SpecError, match=r"spec.processor.model.sha256: Field required"):
        parsed(spec(processor={"model": m}))
    xm = parsed(spec(processor={"crossmatch": {"uri": "pvc://catalogs/vsx.parquet", "idColumn": "id",
                                               "radiusArcsec": 1.5}}))
    assert xm.processor.crossmatch is not None and xm.processor.crossmatch.sha256 is None


@pytest.mark.parametrize("volumes, mounts, message", [
    ([{"name": "a", "emptyDir": {}, "secret": {"secretName": "s"}}], [], "volume a needs exactly one of"),
    ([{"name": "fetched", "emptyDir": {}}], [], "volume name 'fetched' is the operator's own"),
    ([{"name": "pvc-x", "emptyDir": {}}], [], "is the operator's own"),
    ([{"name": "a", "emptyDir": {}}, {"name": "a", "emptyDir": {}}], [], "names must be unique"),
    ([{"name": "a", "emptyDir": {}}], [{"name": "b", "mountPath": "/data"}], "no volume named 'b'"),
    ([{"name": "a", "emptyDir": {}}], [{"name": "a", "mountPath": "/etc/alertops"}], "overlaps /etc/alertops"),
    ([{"name": "a", "emptyDir": {}}], [{"name": "a", "mountPath": "/var"}], "overlaps /var/lib/alertops"),
    ([{"name": "a", "emptyDir": {}}], [{"name": "a", "mountPath": "/"}], "overlaps /etc/alertops"),
    ([{"name": "a", "emptyDir": {}}], [{"name": "a", "mountPath": "/d", "subPath": "../x"}], "may not contain .."),
    ([{"name": "a", "hostPath": {"path": "/"}}], [], "Extra inputs are not permitted"),
])
def test_volumes_are_checked(volumes, mounts, message):
    with pytest.raises(SpecError) as err:
        parsed(spec(volumes=volumes, volumeMounts=mounts))
    assert message in str(err.value)


# -- rendering --------------------------------------------------------------------------------

def test_an_s3_model_is_fetched_by_an_init_container_that_alone_gets_the_credentials():
    pod = pod_spec(spec())
    (init,) = pod["initContainers"]
    step = pod["containers"][0]
    assert init["name"] == "fetch" and init["command"] == ["alertops", "fetch", "/etc/alertops/step.yaml"]
    assert init["image"] == step["image"] and init["resources"] == step["resources"]
    init_env = {e["name"]: e for e in init["env"]}
    step_env = {e["name"]: e for e in step["env"]}
    assert init_env["ALERTOPS_SECRET_MODELS_ID"]["valueFrom"]["secretKeyRef"] == {"name": "models", "key": "id"}
    assert "ALERTOPS_SECRET_MODELS_SECRET" in init_env
    assert not [n for n in step_env if n.startswith("ALERTOPS_SECRET_MODELS")]
    assert step_env["ALERTOPS_SECRET_PG_DSN"] and "ALERTOPS_SECRET_PG_DSN" not in init_env
    assert init_env["ALERTOPS_FETCH_DIR"]["value"] == step_env["ALERTOPS_FETCH_DIR"]["value"] == "/var/lib/alertops/fetched"
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["fetched"] == {"name": "fetched", "emptyDir": {"sizeLimit": "1Gi"}}
    assert {"name": "fetched", "mountPath": "/var/lib/alertops/fetched"} in init["volumeMounts"]
    assert {"name": "fetched", "mountPath": "/var/lib/alertops/fetched", "readOnly": True} in step["volumeMounts"]
    assert init["terminationMessagePolicy"] == "FallbackToLogsOnError"


def test_fetch_size_limit_sets_the_empty_dir():
    pod = pod_spec(spec(fetch={"sizeLimit": "3Gi", "timeoutSeconds": 60, "attempts": 2}))
    assert {v["name"]: v for v in pod["volumes"]}["fetched"]["emptyDir"] == {"sizeLimit": "3Gi"}


def test_a_model_in_the_image_or_on_a_pvc_needs_no_init_container():
    m = copy.deepcopy(spec()["processor"]["model"])
    del m["s3"], m["uri"]
    pod = pod_spec(spec(processor={"model": {**m, "path": "/models/rf.joblib"}}))
    assert "initContainers" not in pod and "fetched" not in {v["name"] for v in pod["volumes"]}
    pod = pod_spec(spec(processor={"crossmatch": {"uri": "pvc://star-catalogs/vsx.parquet", "idColumn": "id",
                                                  "radiusArcsec": 1.5}},
                        source={"kafka": {"bootstrapServers": "k:9092", "topics": ["a"], "groupId": "g"}}))
    assert "initContainers" not in pod
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["pvc-star-catalogs"]["persistentVolumeClaim"] == {"claimName": "star-catalogs", "readOnly": True}
    step = pod["containers"][0]
    assert {"name": "pvc-star-catalogs", "mountPath": "/var/lib/alertops/pvc/star-catalogs",
            "readOnly": True} in step["volumeMounts"]
    assert {e["name"]: e.get("value") for e in step["env"]}["ALERTOPS_PVC_ROOT"] == "/var/lib/alertops/pvc"


def test_user_volumes_are_rendered_and_the_pod_stays_restricted():
    pod = pod_spec(spec(
        volumes=[{"name": "catalogs", "persistentVolumeClaim": {"claimName": "cat", "readOnly": True}},
                 {"name": "conf", "configMap": {"name": "settings"}},
                 {"name": "keys", "secret": {"secretName": "keys", "optional": True}},
                 {"name": "scratch", "emptyDir": {"sizeLimit": "2Gi", "medium": "Memory"}}],
        volumeMounts=[{"name": "catalogs", "mountPath": "/catalogs", "readOnly": True},
                      {"name": "conf", "mountPath": "/conf/app.yaml", "subPath": "app.yaml"},
                      {"name": "scratch", "mountPath": "/scratch"}]))
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["catalogs"]["persistentVolumeClaim"] == {"claimName": "cat", "readOnly": True}
    assert volumes["conf"]["configMap"] == {"name": "settings", "optional": False}
    assert volumes["keys"]["secret"] == {"secretName": "keys", "optional": True}
    assert volumes["scratch"]["emptyDir"] == {"sizeLimit": "2Gi", "medium": "Memory"}
    mounts = {m["mountPath"]: m for m in pod["containers"][0]["volumeMounts"]}
    assert mounts["/catalogs"] == {"name": "catalogs", "mountPath": "/catalogs", "readOnly": True}
    assert mounts["/conf/app.yaml"]["subPath"] == "app.yaml"
    # Restricted Pod Security Standard: allowed volume kinds only, every container hardened.
    allowed = {"configMap", "emptyDir", "persistentVolumeClaim", "secret", "projected", "downwardAPI", "csi",
               "ephemeral"}
    assert all(set(v) - {"name"} <= allowed for v in pod["volumes"])
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    for c in pod["containers"] + pod.get("initContainers", []):
        sc = c["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"] == {"drop": ["ALL"]}
        assert sc["readOnlyRootFilesystem"] is True and sc["runAsNonRoot"] is True


def test_a_new_model_rolls_the_pods_and_names_itself_in_their_annotations():
    before = render_pipelinestep.render(resource(spec()))
    s = spec()
    s["processor"]["model"].update(classifierVersion="1.1.0", sha256="b" * 64, uri="s3://models/rf/1.1.0.joblib")
    after = render_pipelinestep.render(resource(s))
    assert before.config_hash != after.config_hash
    notes = after.deployment["spec"]["template"]["metadata"]["annotations"]
    assert notes[MODEL_VERSION] == "1.1.0" and notes[MODEL_SHA256] == "b" * 64
    assert notes["alertops.io/model-source"] == "s3://models/rf/1.1.0.joblib"
    for field, value in (("sha256", "c" * 64), ("uri", "s3://models/rf/other.joblib")):
        s2 = copy.deepcopy(s)
        s2["processor"]["model"][field] = value
        assert render_pipelinestep.render(resource(s2)).config_hash != after.config_hash


# -- status ---------------------------------------------------------------------------------

def _pod(name: str, version: str, sha: str, ready: bool) -> dict:
    return {"metadata": {"name": name, "annotations": {MODEL_VERSION: version, MODEL_SHA256: sha,
                                                       "alertops.io/model-name": "rf"}},
            "status": {"conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


def test_ready_models_come_from_the_ready_pods_not_the_spec():
    pods = [_pod("a", "1.0.0", SHA, True), _pod("b", "1.0.0", SHA, True), _pod("c", "1.1.0", "b" * 64, False)]
    out = ready_models(pods)
    assert out["modelVersion"] == "1.0.0" and out["modelSha256"] == SHA
    assert out["models"] == [{"classifierName": "rf", "classifierVersion": "1.0.0", "sha256": SHA, "source": "",
                              "readyReplicas": 2}]
    pods[2] = _pod("c", "1.1.0", "b" * 64, True)
    mid = ready_models(pods)
    assert mid["modelVersion"] == "1.0.0, 1.1.0" and mid["modelSha256"] is None
    assert [m["readyReplicas"] for m in mid["models"]] == [2, 1]
    assert ready_models([_pod("a", "1.0.0", SHA, False)]) == {"models": [], "modelVersion": None, "modelSha256": None}


def test_status_carries_the_model_fields():
    status, _ = pipelinestep_status(StepFacts(generation=1, config_hash="h", desired_replicas=1), None,
                                    [_pod("a", "2.0", SHA, True)])
    written = dump_status(status)
    assert written["modelVersion"] == "2.0" and written["modelSha256"] == SHA
    assert written["models"] == [{"classifierName": "rf", "classifierVersion": "2.0", "sha256": SHA, "source": "",
                                  "readyReplicas": 1}]


def _crashing(container: str, message: str, init: bool) -> dict:
    cs = {"name": container, "restartCount": 3, "state": {"waiting": {"reason": "CrashLoopBackOff"}},
          "lastState": {"terminated": {"exitCode": 2, "message": message}}}
    key = "initContainerStatuses" if init else "containerStatuses"
    return {"metadata": {"name": "clf-1"}, "status": {key: [cs]}}


def test_a_wrong_hash_is_stalled_naming_the_uri_and_both_hashes():
    msg = (f"spec.processor.model.sha256: refusing to load s3://models/rf.joblib: its sha256 is {'b' * 64}, "
           f"the spec pins {SHA} (the download was deleted)")
    verdict = pod_problem([_crashing("fetch", msg, init=True)])
    assert verdict is not None and verdict.state == "stalled" and verdict.reason == "ChecksumMismatch"
    assert "s3://models/rf.joblib" in verdict.message and SHA in verdict.message and "b" * 64 in verdict.message
    # The same refusal by the runtime (a model by path, on a volume) gets the same reason.
    assert pod_problem([_crashing("step", msg, init=False)]).reason == "ChecksumMismatch"


def test_a_failed_fetch_is_stalled_with_its_reason():
    msg = "spec.processor.model.uri: cannot fetch s3://models/rf.joblib: 5 attempt(s) in 31 s ..., the last: refused"
    verdict = pod_problem([_crashing("fetch", msg, init=True)])
    assert verdict.reason == "FetchFailed" and "cannot fetch s3://models/rf.joblib" in verdict.message
    assert "3 restarts" in verdict.message
    assert fetch_problem("p", {"name": "step"}, "Traceback: boom") is None


# -- shadows --------------------------------------------------------------------------------

def _shadow(**model_over) -> dict:
    s = spec()
    s["source"]["kafka"]["groupId"] = "clf-shadow"
    s["processor"]["model"].update({"classifierVersion": "1.1.0", "sha256": "b" * 64, **model_over})
    s["shadowOf"] = "clf"
    return s


def test_a_shadow_beside_its_step_in_the_probability_table_is_allowed():
    assert shadow_conflicts(footprint(parsed(_shadow())), footprint(parsed(spec())), "clf") == []
    assert shadow_refusal(resource(_shadow(), "clf-shadow"), footprint(parsed(_shadow())), footprint(parsed(spec()))) is None


def test_a_shadow_writing_where_its_step_writes_is_refused():
    main = spec(sinks=[
        {"postgres": {"dsn": {"name": "pg", "key": "dsn"}, "table": "probability", "mode": "probability"}},
        {"kafka": {"bootstrapServers": "kafka:9092", "topic": "classifications"}},
        {"mongodb": {"uri": {"name": "m", "key": "uri"}, "database": "alerts", "collection": "probs", "key": ["oid"]}}])
    shadow = copy.deepcopy(main)
    shadow.update(shadowOf="clf")
    shadow["source"]["kafka"]["groupId"] = "clf"
    shadow["processor"]["model"]["classifierVersion"] = "1.0.0"
    problems = shadow_conflicts(footprint(parsed(shadow)), footprint(parsed(main)), "clf")
    text = " | ".join(problems)
    assert "groupId 'clf' is clf's" in text
    assert "Kafka topic classifications is also written by clf" in text
    assert "MongoDB collection alerts.probs is also written by clf" in text
    assert "PostgreSQL table probability is also written by clf (both write classifier rf 1.0.0)" in text
    verdict = shadow_refusal(resource(shadow, "clf-shadow"), footprint(parsed(shadow)), footprint(parsed(main)))
    assert verdict is not None and verdict.reason == "ShadowConflict" and verdict.state == "stalled"


def test_a_shadow_of_nothing_or_of_itself_is_refused():
    s = _shadow()
    assert shadow_refusal(resource(s, "clf-shadow"), footprint(parsed(s)), None).reason == "ShadowTargetMissing"
    assert shadow_refusal(resource(s, "clf"), footprint(parsed(s)), footprint(parsed(spec()))).reason == "InvalidShadow"
    assert shadow_refusal(resource(spec()), footprint(parsed(spec())), None) is None


def test_the_reconcile_checks_a_shadow_through_the_render_cache():
    """What the handlers and the periodic round call: a conflicting shadow is refused, a plain
    step and an allowed shadow are not (observe_step makes no API call)."""
    from pipeline_operator.children import RenderSettings
    from pipeline_operator.reconcile import observe_step

    conflicting = _shadow()
    conflicting["source"]["kafka"]["groupId"] = "clf"
    for res, shadowed, refused in ((resource(spec()), None, False),
                                   (resource(_shadow(), "clf-shadow"), resource(spec()), False),
                                   (resource(conflicting, "clf-bad"), resource(spec()), True)):
        outcome = observe_step(res, None, [], RenderSettings(), shadowed)
        assert (outcome.verdict.reason == "ShadowConflict") is refused, outcome.verdict


def test_a_refused_shadow_needs_no_apply_and_an_invalid_target_is_named():
    """The periodic round observes a refused shadow (quiet once reported) instead of applying
    it every round; a target whose spec is invalid stalls the shadow with its error."""
    from pipeline_operator.children import RenderSettings
    from pipeline_operator.reconcile import observe_step, step_needs_apply

    conflicting = _shadow()
    conflicting["source"]["kafka"]["groupId"] = "clf"
    assert step_needs_apply(resource(conflicting, "clf-bad"), None, RenderSettings(), resource(spec())) is False
    assert step_needs_apply(resource(_shadow(), "clf-shadow"), None, RenderSettings(), resource(spec())) is True
    broken = resource(spec(replicas=-1))
    broken["metadata"]["generation"] = 2  # a spec edit: the render cache keys on the generation
    outcome = observe_step(resource(_shadow(), "clf-shadow"), None, [], RenderSettings(), broken)
    assert outcome.verdict.reason == "ShadowTargetInvalid" and "PipelineStep brokers/clf" in outcome.verdict.message


def test_rows_without_the_version_in_their_key_cannot_be_shared():
    rows = [{"postgres": {"dsn": {"name": "pg", "key": "dsn"}, "table": "classes", "key": ["oid"]}}]
    main, shadow = spec(sinks=rows), _shadow()
    shadow["sinks"] = rows
    problems = shadow_conflicts(footprint(parsed(shadow)), footprint(parsed(main)), "clf")
    assert "not keyed by classifier_version" in " ".join(problems)
    keyed = [{"postgres": {**rows[0]["postgres"], "key": ["oid", "classifier_version"]}}]
    main["sinks"], shadow["sinks"] = keyed, keyed
    assert shadow_conflicts(footprint(parsed(shadow)), footprint(parsed(main)), "clf") == []


def test_verdict_type_is_shared():
    assert isinstance(shadow_refusal(resource(_shadow(), "x"), footprint(parsed(_shadow())), None), Verdict)


# -- training-set tables by uri ----------------------------------------------------------------

@pytest.mark.parametrize("table, message", [
    ({"path": "/data/a.csv", "uri": "s3://bkt/a.csv"}, "exactly one of path, query, uri"),
    ({"uri": "pvc://claim/a.csv"}, "a build reads its claim (spec.dataVolumeClaim) at /data"),
    ({"query": {"dsn": {"name": "pg", "key": "dsn"}, "sql": "select 1"}, "sha256": SHA}, "sha256 pins a file"),
    ({"uri": "https://example.org/a.csv", "s3": {}}, "s3 sets how an s3:// uri is fetched"),
])
def test_training_set_tables_by_uri_are_checked(table, message):
    from step_runtime.spec.trainingset import TrainingSetBuildSpec

    build = {"source": table, "catalogs": [{"name": "vsx", "path": "/data/vsx.csv", "labelColumn": "type",
                                            "radiusArcsec": 1.0}], "output": {"path": "out.parquet"}}
    with pytest.raises(SpecError) as err:
        parse_spec(TrainingSetBuildSpec, build, "test")
    assert message in str(err.value)


def test_a_build_fetches_its_uri_tables_into_its_tmp():
    from pipeline_operator import render_trainingset

    build = {"apiVersion": "alertops.io/v1alpha1", "kind": "TrainingSetBuild",
             "metadata": {"name": "b", "namespace": "ns", "uid": "u", "generation": 1},
             "spec": {"source": {"uri": "s3://bkt/objects.parquet", "s3": S3},
                      "catalogs": [{"name": "vsx", "uri": "https://example.org/vsx.csv", "sha256": SHA,
                                    "labelColumn": "type", "radiusArcsec": 1.0}],
                      "output": {"path": "out.parquet"}}}
    container = render_trainingset.render(build).main_job["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    assert env["ALERTOPS_FETCH_DIR"]["value"] == "/tmp/alertops-fetched"
    assert env["ALERTOPS_SECRET_MODELS_ID"]["valueFrom"]["secretKeyRef"] == {"name": "models", "key": "id"}


def test_a_shadow_without_a_model_cannot_share_a_table():
    features = {"features": {}}
    rows = [{"postgres": {"dsn": {"name": "pg", "key": "dsn"}, "table": "features", "key": ["candid"]}}]
    kafka = {"kafka": {"bootstrapServers": "k:9092", "topics": ["ztf"], "groupId": "f"}}
    main = spec(processor=features, sinks=rows, source=kafka)
    shadow = spec(processor=features, sinks=rows, shadowOf="f",
                  source={"kafka": {**kafka["kafka"], "groupId": "f-shadow"}})
    (problem,) = shadow_conflicts(footprint(parsed(shadow)), footprint(parsed(main)), "f")
    assert "PostgreSQL table features is also written by f (its rows are not keyed by classifier_version)" in problem
