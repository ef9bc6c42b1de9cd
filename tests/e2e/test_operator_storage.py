"""Models from object storage, catalogs from PVCs, rollouts and shadows, on the real control plane.

kwok nodes run no containers and mount nothing: these tests check what the operator renders
(init container, volumes, restricted Pod Security admission), what the status says from the
ready pods kwok reports, and what the operator refuses. The fetch itself runs against the real
object store in tests/integration/test_storage_s3.py.
"""
from __future__ import annotations

import json

from operator_harness import REPO, Kubectl, OperatorProcess, condition, wait_for

CLASSIFIER = REPO / "examples" / "pipelinestep-classifier.yaml"
SHADOW = REPO / "examples" / "pipelinestep-classifier-shadow.yaml"
CROSSMATCH = REPO / "examples" / "pipelinestep-crossmatch.yaml"
DEMO_SHA = "25d1202f0255a2a18aed52f51125d5afffdfade8ae83fab23793be89d141f265"


def _restricted(kubectl: Kubectl, namespace: str) -> None:
    kubectl.run("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted",
                "pod-security.kubernetes.io/enforce-version=latest", "--overwrite")


def _static_pv(kubectl: Kubectl, namespace: str, claim: str) -> str:
    """A static PersistentVolume reserved for `claim`, so the example's claim binds (there is no
    provisioner on the test cluster; on kwok nodes nothing mounts it)."""
    name = f"{namespace}-{claim}"
    pv = {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": name},
          "spec": {"capacity": {"storage": "5Gi"}, "accessModes": ["ReadOnlyMany", "ReadWriteOnce"],
                   "persistentVolumeReclaimPolicy": "Delete", "storageClassName": "",
                   "hostPath": {"path": f"/var/tmp/{name}"},
                   "claimRef": {"namespace": namespace, "name": claim}}}
    kubectl.run("apply", "-f", "-", input=json.dumps(pv))
    return name


def _status(kubectl: Kubectl, namespace: str, name: str) -> dict:
    return (kubectl.get("pipelinestep", name, namespace) or {}).get("status") or {}


def test_examples_render_fetch_and_volumes_under_restricted_pod_security(kubectl: Kubectl, operator: OperatorProcess,
                                                                         namespace: str):
    _restricted(kubectl, namespace)
    pv = _static_pv(kubectl, namespace, "star-catalogs")
    try:
        _examples_under_restricted(kubectl, namespace)
    finally:
        kubectl.run("delete", "persistentvolume", pv, "--wait=false", check=False)


def _examples_under_restricted(kubectl: Kubectl, namespace: str) -> None:
    kubectl.run("apply", "-n", namespace, "-f", str(CLASSIFIER), "-f", str(CROSSMATCH))
    dep = wait_for(lambda: kubectl.get("deployment", "ztf-classifier", namespace), 60, "the classifier Deployment")
    pod = dep["spec"]["template"]["spec"]
    (init,) = pod["initContainers"]
    assert init["name"] == "fetch" and init["command"][:2] == ["alertops", "fetch"]
    assert {e["name"] for e in init["env"]} >= {"ALERTOPS_SECRET_MODEL_STORE_ACCESS_KEY_ID",
                                                 "ALERTOPS_SECRET_MODEL_STORE_SECRET_ACCESS_KEY"}
    assert not any(e["name"].startswith("ALERTOPS_SECRET_MODEL_STORE") for e in pod["containers"][0]["env"])
    assert {v["name"]: v for v in pod["volumes"]}["fetched"]["emptyDir"]["sizeLimit"] == "512Mi"
    notes = dep["spec"]["template"]["metadata"]["annotations"]
    assert notes["alertops.io/model-version"] == "0.1.0" and notes["alertops.io/model-sha256"] == DEMO_SHA

    xm = wait_for(lambda: kubectl.get("deployment", "ztf-crossmatch", namespace), 60, "the crossmatch Deployment")
    xpod = xm["spec"]["template"]["spec"]
    assert {v["name"]: v for v in xpod["volumes"]}["catalogs"]["persistentVolumeClaim"] == {
        "claimName": "star-catalogs", "readOnly": True}
    assert {"name": "catalogs", "mountPath": "/catalogs", "readOnly": True} in xpod["containers"][0]["volumeMounts"]
    assert "initContainers" not in xpod

    # The claim binds to the static volume; restricted admission let the pods in (a violation
    # would leave the ReplicaSets without pods), and both steps become Ready on the kwok nodes.
    wait_for(lambda: (kubectl.get("persistentvolumeclaim", "star-catalogs", namespace) or {}).get(
        "status", {}).get("phase") == "Bound", 60, "the claim Bound")
    for name in ("ztf-classifier", "ztf-crossmatch"):
        kubectl.run("wait", "--for=condition=Ready", f"pipelinestep/{name}", "-n", namespace, "--timeout=180s",
                    timeout=200)
    status = _status(kubectl, namespace, "ztf-classifier")
    assert status["modelVersion"] == "0.1.0" and status["modelSha256"] == DEMO_SHA
    assert status["models"][0]["readyReplicas"] == 2
    assert status["models"][0]["source"] == "s3://alertops-models/demo/0.1.0/demo_classifier.joblib"
    table = kubectl.run("get", "pipelinesteps", "ztf-classifier", "-n", namespace).stdout.splitlines()
    assert table[0].split()[:7] == ["NAME", "READY", "PHASE", "REPLICAS", "PROCESSOR", "MODEL", "AGE"]
    assert table[1].split()[:6] == ["ztf-classifier", "True", "Running", "2/2", "model", "0.1.0"]


def test_a_new_model_rolls_the_pods_and_the_status_follows_the_ready_ones(kubectl: Kubectl, operator: OperatorProcess,
                                                                          namespace: str):
    kubectl.run("apply", "-n", namespace, "-f", str(CLASSIFIER))
    kubectl.run("wait", "--for=condition=Ready", "pipelinestep/ztf-classifier", "-n", namespace, "--timeout=180s",
                timeout=200)
    first = _status(kubectl, namespace, "ztf-classifier")["configHash"]
    new_sha = "b" * 64
    patch = {"spec": {"processor": {"model": {"uri": "s3://alertops-models/demo/0.2.0/demo_classifier.joblib",
                                              "sha256": new_sha, "classifierVersion": "0.2.0"}}}}
    kubectl.run("patch", "pipelinestep", "ztf-classifier", "-n", namespace, "--type=merge", "-p", json.dumps(patch))
    done = wait_for(lambda: (s := _status(kubectl, namespace, "ztf-classifier")).get("modelVersion") == "0.2.0"
                    and s.get("phase") == "Running" and s, 180, "every ready pod on 0.2.0")
    assert done["configHash"] != first and done["modelSha256"] == new_sha
    assert [m["classifierVersion"] for m in done["models"]] == ["0.2.0"]
    # Rolling back is the same edit reversed.
    back = {"spec": {"processor": {"model": {"uri": "s3://alertops-models/demo/0.1.0/demo_classifier.joblib",
                                             "sha256": DEMO_SHA, "classifierVersion": "0.1.0"}}}}
    kubectl.run("patch", "pipelinestep", "ztf-classifier", "-n", namespace, "--type=merge", "-p", json.dumps(back))
    wait_for(lambda: (s := _status(kubectl, namespace, "ztf-classifier")).get("modelVersion") == "0.1.0"
             and s.get("configHash") == first and s.get("phase") == "Running", 180, "back on 0.1.0")


def test_a_shadow_runs_beside_its_step_and_a_conflicting_one_is_refused(kubectl: Kubectl, operator: OperatorProcess,
                                                                        namespace: str):
    kubectl.run("apply", "-n", namespace, "-f", str(CLASSIFIER), "-f", str(SHADOW))
    for name in ("ztf-classifier", "ztf-classifier-shadow"):
        kubectl.run("wait", "--for=condition=Ready", f"pipelinestep/{name}", "-n", namespace, "--timeout=180s",
                    timeout=200)
    assert _status(kubectl, namespace, "ztf-classifier-shadow")["modelVersion"] == "0.2.0"

    bad = json.loads(kubectl.run("get", "pipelinestep", "ztf-classifier-shadow", "-n", namespace, "-o", "json").stdout)
    bad = {"apiVersion": bad["apiVersion"], "kind": bad["kind"], "metadata": {"name": "bad-shadow"},
           "spec": bad["spec"]}
    bad["spec"]["source"]["kafka"]["groupId"] = "ztf-classifier"
    bad["spec"]["sinks"].append({"kafka": {"bootstrapServers": "kafka:9092", "topic": "clf-out"}})
    kubectl.run("apply", "-n", namespace, "-f", "-", input=json.dumps(bad))
    stalled = wait_for(lambda: (s := kubectl.get("pipelinestep", "bad-shadow", namespace))
                       and condition(s, "Stalled").get("status") == "True" and s, 60, "the conflicting shadow Stalled")
    message = condition(stalled, "Stalled")["message"]
    assert condition(stalled, "Stalled")["reason"] == "ShadowConflict"
    assert "groupId 'ztf-classifier' is ztf-classifier's" in message
    assert kubectl.get("deployment", "bad-shadow", namespace) is None

    # Promotion: the main step takes the new model's fields, then the shadow is deleted.
    model = _spec_model(kubectl, namespace, "ztf-classifier-shadow")
    patch = {"spec": {"processor": {"model": {k: model[k] for k in ("uri", "sha256", "classifierVersion")}}}}
    kubectl.run("patch", "pipelinestep", "ztf-classifier", "-n", namespace, "--type=merge", "-p", json.dumps(patch))
    kubectl.run("delete", "pipelinestep", "ztf-classifier-shadow", "-n", namespace, "--wait=true", timeout=120)
    wait_for(lambda: (s := _status(kubectl, namespace, "ztf-classifier")).get("modelVersion") == "0.2.0"
             and s.get("phase") == "Running", 180, "the promoted version running")


def _spec_model(kubectl: Kubectl, namespace: str, name: str) -> dict:
    return kubectl.get("pipelinestep", name, namespace)["spec"]["processor"]["model"]


def test_the_api_server_refuses_bad_locations_and_volumes(kubectl: Kubectl, crds: None, namespace: str):
    step = {"apiVersion": "alertops.io/v1alpha1", "kind": "PipelineStep", "metadata": {"name": "bad"},
            "spec": {"source": {"kafka": {"bootstrapServers": "k:9092", "topics": ["t"], "groupId": "g", "format": "json"}},
                     "processor": {"model": {"path": "/m.joblib", "uri": "s3://models/m.joblib", "sha256": "a" * 64,
                                             "classifierName": "c", "classifierVersion": "1"}},
                     "sinks": [{"file": {"path": "/tmp/x.jsonl", "format": "jsonl"}}]}}
    res = kubectl.run("apply", "-n", namespace, "-f", "-", input=json.dumps(step), check=False)
    assert res.returncode != 0 and "model needs exactly one of path or uri" in res.stderr
    model = step["spec"]["processor"]["model"]
    del model["path"]
    step["spec"]["volumes"] = [{"name": "fetched", "emptyDir": {}}]
    step["spec"]["volumeMounts"] = [{"name": "data", "mountPath": "/etc/alertops"}]
    res = kubectl.run("apply", "-n", namespace, "-f", "-", input=json.dumps(step), check=False)
    assert res.returncode != 0
    assert "volume name is the operator's own" in res.stderr
    assert "mountPath overlaps" in res.stderr
    assert "every name must be a volume of spec.volumes" in res.stderr
