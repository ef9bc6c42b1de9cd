"""Rendering children from specs: PipelineStep -> ConfigMap + Deployment, TrainingSetBuild -> Jobs."""
from __future__ import annotations

import copy

import pytest
import yaml

from pipeline_operator import render_pipelinestep, render_trainingset
from pipeline_operator.children import CONFIG_HASH_ANNOTATION, RenderSettings, label_value
from step_runtime.spec.common import SpecError


def step(**spec_overrides) -> dict:
    spec = {
        "image": "registry.example/alertops:1.2",
        "replicas": 2,
        "source": {"kafka": {"bootstrapServers": "kafka:9092", "topics": ["ztf_alerts"], "groupId": "xm",
                             "auth": {"username": {"name": "kafka", "key": "user"},
                                      "password": {"name": "kafka", "key": "password"}}}},
        "processor": {"crossmatch": {"catalog": "/catalogs/sn.parquet", "idColumn": "id", "radiusArcsec": 1.5}},
        "sinks": [
            {"postgres": {"dsn": {"name": "pg", "key": "dsn"}, "table": "xmatch", "key": ["oid"]}},
            {"mongodb": {"uri": {"name": "mongo", "key": "uri"}, "database": "alerts", "collection": "xm",
                         "key": ["oid"]}},
        ],
        "env": [{"name": "LOG_LEVEL", "value": "debug"},
                {"name": "EXTRA_TOKEN", "secretKeyRef": {"name": "tokens", "key": "extra"}}],
        "resources": {"requests": {"cpu": "500m"}, "limits": {"memory": "1Gi"}},
    }
    spec.update(spec_overrides)
    return {"apiVersion": "alertops.io/v1alpha1", "kind": "PipelineStep",
            "metadata": {"name": "xmatch", "namespace": "brokers", "uid": "uid-1", "generation": 3,
                         "labels": {"team": "alerts"}},
            "spec": spec}


def container(rendered) -> dict:
    return rendered.deployment["spec"]["template"]["spec"]["containers"][0]


def test_deployment_runs_the_mounted_manifest():
    r = render_pipelinestep.render(step())
    c = container(r)
    assert c["command"] == ["alertops", "run", "/etc/alertops/step.yaml"]
    assert c["image"] == "registry.example/alertops:1.2"
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    assert mounts["/etc/alertops"]["readOnly"] is True and "/tmp" in mounts
    volumes = {v["name"]: v for v in r.deployment["spec"]["template"]["spec"]["volumes"]}
    # The manifest rides on the pod template and reaches the container as the mounted file.
    assert volumes["config"]["downwardAPI"]["items"] == [{
        "path": "step.yaml", "fieldRef": {"fieldPath": "metadata.annotations['alertops.io/step.yaml']"}}]
    assert yaml.safe_load(render_pipelinestep.manifest_text(r.deployment))["kind"] == "PipelineStep"
    assert "emptyDir" in volumes["tmp"]
    assert r.deployment["spec"]["replicas"] == 2


def test_an_unset_image_is_the_operators_default_for_steps_and_builds_alike():
    settings = RenderSettings(default_image="registry.example/house:7")
    unset_step = step()
    del unset_step["spec"]["image"]
    unset_build = build()
    unset_build["spec"].pop("image", None)
    assert container(render_pipelinestep.render(unset_step, settings))["image"] == "registry.example/house:7"
    job_pod = render_trainingset.render(unset_build, settings).main_job["spec"]["template"]["spec"]
    assert job_pod["containers"][0]["image"] == "registry.example/house:7"
    # A spec's own image wins over the operator's default.
    assert container(render_pipelinestep.render(step(), settings))["image"] == "registry.example/alertops:1.2"


def test_an_unset_image_renders_like_the_default_image_named():
    """Upgrading the operator rolls no step whose image was left unset (same hash, same manifest)."""
    unset = step()
    del unset["spec"]["image"]
    named = step(image=RenderSettings().default_image)
    a, b = render_pipelinestep.render(unset), render_pipelinestep.render(named)
    assert a.config_hash == b.config_hash and a.deployment == b.deployment
    assert yaml.safe_load(render_pipelinestep.manifest_text(a.deployment))["spec"]["image"] == RenderSettings().default_image


def test_scaling_or_suspending_a_step_leaves_its_pod_template_as_it_is():
    """The manifest rides on the pod template: a field in it that a scale changes would roll
    every pod on `kubectl scale`."""
    base = render_pipelinestep.render(step())
    for change in ({"replicas": 5}, {"suspend": True}):
        other = step()
        other["spec"].update(change)
        rendered = render_pipelinestep.render(other)
        assert rendered.deployment["spec"]["template"] == base.deployment["spec"]["template"]
        assert rendered.deployment["spec"]["replicas"] != base.deployment["spec"]["replicas"]
    manifest = yaml.safe_load(render_pipelinestep.manifest_text(base.deployment))
    assert "replicas" not in manifest["spec"] and "suspend" not in manifest["spec"]


def test_the_pod_template_holds_the_manifest_and_no_secret_values():
    r = render_pipelinestep.render(step())
    manifest = yaml.safe_load(render_pipelinestep.manifest_text(r.deployment))
    assert manifest["kind"] == "PipelineStep" and manifest["metadata"] == {"name": "xmatch", "namespace": "brokers"}
    assert manifest["spec"]["sinks"][0]["postgres"]["dsn"] == {"name": "pg", "key": "dsn"}
    assert "status" not in manifest


def test_every_secret_ref_becomes_a_secret_key_ref_env_var():
    env = {e["name"]: e for e in container(render_pipelinestep.render(step()))["env"]}
    for secret, key in (("kafka", "user"), ("kafka", "password"), ("pg", "dsn"), ("mongo", "uri")):
        name = f"ALERTOPS_SECRET_{secret.upper()}_{key.upper()}"
        assert env[name]["valueFrom"]["secretKeyRef"] == {"name": secret, "key": key}
    assert env["EXTRA_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "tokens", "key": "extra"}
    assert env["LOG_LEVEL"]["value"] == "debug"
    assert not any("value" in e and "secret" in e["name"].lower() for e in env.values())


def test_probes_ports_and_resources():
    c = container(render_pipelinestep.render(step()))
    assert c["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert c["resources"] == {"requests": {"cpu": "500m"}, "limits": {"memory": "1Gi"}}


def test_hardened_security_context():
    r = render_pipelinestep.render(step())
    pod = r.deployment["spec"]["template"]["spec"]
    c = container(r)
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] > 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}


def test_labels_selector_and_owner():
    r = render_pipelinestep.render(step())
    labels = r.deployment["metadata"]["labels"]
    assert labels["app.kubernetes.io/name"] == "alertops-step"
    assert labels["app.kubernetes.io/instance"] == "xmatch"
    assert labels["app.kubernetes.io/managed-by"] == "alertops-operator"
    assert labels["app.kubernetes.io/component"] == "pipelinestep"
    assert labels["team"] == "alerts"
    selector = r.deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= r.deployment["spec"]["template"]["metadata"]["labels"].items()
    assert r.selector == "app.kubernetes.io/instance=xmatch,app.kubernetes.io/name=alertops-step"
    (owner,) = r.deployment["metadata"]["ownerReferences"]
    assert owner == {"apiVersion": "alertops.io/v1alpha1", "kind": "PipelineStep", "name": "xmatch",
                     "uid": "uid-1", "controller": True, "blockOwnerDeletion": True}
    assert r.processor == "crossmatch"


def test_hash_ignores_replicas_and_suspend_but_not_config():
    base = render_pipelinestep.render(step())
    scaled = render_pipelinestep.render(step(replicas=7))
    suspended = render_pipelinestep.render(step(suspend=True))
    edited = copy.deepcopy(step())
    edited["spec"]["processor"]["crossmatch"]["radiusArcsec"] = 2.0
    changed = render_pipelinestep.render(edited)
    assert base.config_hash == scaled.config_hash == suspended.config_hash
    assert changed.config_hash != base.config_hash
    template_hash = changed.deployment["spec"]["template"]["metadata"]["annotations"][CONFIG_HASH_ANNOTATION]
    assert template_hash == changed.config_hash


def test_suspend_scales_to_zero():
    r = render_pipelinestep.render(step(suspend=True))
    assert r.deployment["spec"]["replicas"] == 0 and r.desired_replicas == 0


def test_invalid_spec_raises_spec_error_naming_the_field():
    bad = step()
    bad["spec"]["processor"] = {"model": None}
    with pytest.raises(SpecError, match="processor"):
        render_pipelinestep.render(bad)


def test_long_names_keep_label_values_short_and_unique():
    a, b = "x" * 70, "x" * 69 + "y"
    assert len(label_value(a)) <= 63 and label_value(a) != label_value(b)


# ------------------------------------------------------------------------------------------

def build(parallelism: int = 1, **spec_overrides) -> dict:
    spec = {
        "source": {"path": "/data/objects.csv", "idColumn": "oid"},
        "catalogs": [{"name": "sn", "path": "/data/sn.csv", "labelColumn": "type", "radiusArcsec": 2.0}],
        "output": {"path": "training.parquet",
                   "postgres": {"dsn": {"name": "pg", "key": "dsn"}, "table": "training"}},
        "parallelism": parallelism,
    }
    spec.update(spec_overrides)
    return {"apiVersion": "alertops.io/v1alpha1", "kind": "TrainingSetBuild",
            "metadata": {"name": "tset", "namespace": "ml", "uid": "uid-2", "generation": 1},
            "spec": spec}


def job_container(job: dict) -> dict:
    return job["spec"]["template"]["spec"]["containers"][0]


def test_single_job_build():
    r = render_trainingset.render(build(backoffLimit=2, ttlSecondsAfterFinished=600),
                                  RenderSettings(default_image="img:1"))
    assert r.merge_job is None
    job = r.main_job
    assert "completionMode" not in job["spec"]
    assert job["spec"]["backoffLimit"] == 2 and job["spec"]["ttlSecondsAfterFinished"] == 600
    c = job_container(job)
    assert c["command"][:3] == ["alertops", "build", "/etc/alertops/trainingset.yaml"]
    assert "--partition-from-env" not in c["command"] and c["image"] == "img:1"
    assert c["terminationMessagePath"] == "/dev/termination-log"
    env = {e["name"]: e for e in c["env"]}
    assert env["ALERTOPS_TERMINATION_MESSAGE_PATH"]["value"] == "/dev/termination-log"
    assert env["ALERTOPS_SECRET_PG_DSN"]["valueFrom"]["secretKeyRef"] == {"name": "pg", "key": "dsn"}
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    assert job["metadata"]["ownerReferences"][0]["kind"] == "TrainingSetBuild"


def test_partitioned_build_is_an_indexed_job_plus_merge():
    r = render_trainingset.render(build(parallelism=4))
    main = r.main_job["spec"]
    assert main["completionMode"] == "Indexed" and main["completions"] == 4 and main["parallelism"] == 4
    assert job_container(r.main_job)["command"][-1] == "--partition-from-env"
    assert r.merge_job is not None and job_container(r.merge_job)["command"][-1] == "--merge"
    assert "completions" not in r.merge_job["spec"]
    assert r.main_job["metadata"]["name"] != r.merge_job["metadata"]["name"]


def test_suspend_passes_through_and_does_not_rename_jobs():
    running = render_trainingset.render(build(parallelism=2))
    paused = render_trainingset.render(build(parallelism=2, suspend=True))
    assert paused.main_job["spec"]["suspend"] is True and running.main_job["spec"]["suspend"] is False
    assert paused.main_job["metadata"]["name"] == running.main_job["metadata"]["name"]


def test_a_config_edit_gets_new_job_names():
    a = render_trainingset.render(build())
    edited = build()
    edited["spec"]["catalogs"][0]["radiusArcsec"] = 3.0
    b = render_trainingset.render(edited)
    assert a.main_job["metadata"]["name"] != b.main_job["metadata"]["name"]
    assert len(render_trainingset.job_name("n" * 80, "partition", a.config_hash)) <= 63


def test_data_volume_claim_image_and_resources_come_from_the_spec():
    res = build(dataVolumeClaim="training-data", image="registry.example.org/alertops:2",
                resources={"limits": {"memory": "4Gi"}})
    pod = render_trainingset.render(res).main_job["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["data"]["persistentVolumeClaim"] == {"claimName": "training-data"}
    assert pod["containers"][0]["image"] == "registry.example.org/alertops:2"
    assert pod["containers"][0]["resources"] == {"limits": {"memory": "4Gi"}}


def test_without_a_claim_data_is_an_empty_dir_and_ttl_null_keeps_the_job():
    r = render_trainingset.render(build(ttlSecondsAfterFinished=None))
    volumes = {v["name"]: v for v in r.main_job["spec"]["template"]["spec"]["volumes"]}
    assert volumes["data"] == {"name": "data", "emptyDir": {}}
    assert "ttlSecondsAfterFinished" not in r.main_job["spec"]
