"""TrainingSetBuild end to end: Job(s) -> kwok pods Succeed -> status Succeeded."""
from __future__ import annotations

import json

from operator_harness import Kubectl, OperatorProcess, condition, wait_for


def build_manifest(name: str, parallelism: int, suspend: bool = False) -> str:
    return f"""
apiVersion: alertops.io/v1alpha1
kind: TrainingSetBuild
metadata:
  name: {name}
spec:
  parallelism: {parallelism}
  suspend: {str(suspend).lower()}
  source: {{path: /data/objects.csv, idColumn: oid}}
  catalogs:
    - {{name: sn, path: /data/sn.csv, labelColumn: type, radiusArcsec: 2.0}}
  output: {{path: training.parquet}}
"""


def _jobs(kubectl: Kubectl, ns: str, name: str) -> list[dict]:
    return kubectl.json("get", "jobs", "-n", ns, "-l", f"app.kubernetes.io/instance={name}")["items"]


def _phase(kubectl: Kubectl, ns: str, name: str, phase: str) -> dict | None:
    obj = kubectl.get("trainingsetbuild", name, ns)
    return obj if obj and (obj.get("status") or {}).get("phase") == phase else None


def test_single_job_build_succeeds(kubectl: Kubectl, operator: OperatorProcess, namespace: str):
    kubectl.apply(build_manifest("single", 1), namespace)
    build = wait_for(lambda: _phase(kubectl, namespace, "single", "Succeeded"), 120, "phase Succeeded")
    (job,) = _jobs(kubectl, namespace, "single")
    c = job["spec"]["template"]["spec"]["containers"][0]
    assert c["command"][:3] == ["alertops", "build", "/etc/alertops/trainingset.yaml"]
    assert "--partition-from-env" not in c["command"]
    assert c["terminationMessagePath"] == "/dev/termination-log"
    assert job["spec"]["ttlSecondsAfterFinished"] > 0 and job["spec"]["backoffLimit"] >= 1
    assert condition(build, "Ready")["status"] == "True"
    assert build["status"]["progress"] == "1/1"
    kubectl.run("wait", "--for=condition=Ready", "trainingsetbuild/single", "-n", namespace, "--timeout=10s")


def test_partitioned_build_runs_indexed_job_then_merge(kubectl: Kubectl, operator: OperatorProcess, namespace: str):
    kubectl.apply(build_manifest("parts", 3), namespace)
    build = wait_for(lambda: _phase(kubectl, namespace, "parts", "Succeeded"), 180, "phase Succeeded")
    jobs = {j["metadata"]["labels"]["alertops.io/role"]: j for j in _jobs(kubectl, namespace, "parts")}
    assert set(jobs) == {"partition", "merge"}
    part = jobs["partition"]
    assert part["spec"]["completionMode"] == "Indexed" and part["spec"]["completions"] == 3
    assert part["status"]["succeeded"] == 3
    assert jobs["merge"]["spec"]["template"]["spec"]["containers"][0]["command"][-1] == "--merge"
    # The merge started only after every partition had succeeded.
    part_done = next(c["lastTransitionTime"] for c in part["status"]["conditions"] if c["type"] == "Complete")
    assert jobs["merge"]["metadata"]["creationTimestamp"] >= part_done
    assert build["status"]["progress"] == "3/3" and build["status"]["completedPartitions"] == 3
    table = kubectl.run("get", "tsb", "-n", namespace).stdout.splitlines()
    assert table[0].split()[:4] == ["NAME", "PHASE", "PROGRESS", "ROWS"]
    assert table[1].split()[:3] == ["parts", "Succeeded", "3/3"]


def test_suspended_build_waits(kubectl: Kubectl, operator: OperatorProcess, namespace: str):
    kubectl.apply(build_manifest("paused", 2, suspend=True), namespace)
    build = wait_for(lambda: _phase(kubectl, namespace, "paused", "Suspended"), 60, "phase Suspended")
    (job,) = _jobs(kubectl, namespace, "paused")
    assert job["spec"]["suspend"] is True and not job["status"].get("active")
    assert condition(build, "Ready")["reason"] == "Suspended"
    kubectl.run("patch", "trainingsetbuild", "paused", "-n", namespace, "--type=merge", "-p", '{"spec":{"suspend":false}}')
    wait_for(lambda: _phase(kubectl, namespace, "paused", "Succeeded"), 180, "phase Succeeded after resuming")


def test_summary_from_the_termination_message_reaches_status(kubectl: Kubectl, operator: OperatorProcess,
                                                             namespace: str):
    """kwok completes pods without running them, so the test writes the termination message a
    kubelet would copy from /dev/termination-log: what `alertops build` writes there."""
    from step_runtime.trainingset.report import compact_summary

    kubectl.apply(build_manifest("summary", 1), namespace)
    wait_for(lambda: _phase(kubectl, namespace, "summary", "Succeeded"), 120, "phase Succeeded")
    (pod,) = kubectl.json("get", "pods", "-n", namespace, "-l", "app.kubernetes.io/instance=summary")["items"]
    message = compact_summary({"rows_in": 50, "rows_out": 12, "conflicts": 1,
                               "output": {"path": "/data/training.parquet", "format": "parquet"},
                               "catalogs": {"sn": {"matches": 9, "conflicts": 1}}, "classes": {"SNIa": 12}})
    terminated = dict(pod["status"]["containerStatuses"][0]["state"]["terminated"], message=message)
    status = {"status": {"containerStatuses": [dict(pod["status"]["containerStatuses"][0],
                                                    state={"terminated": terminated})]}}
    kubectl.run("patch", "pod", pod["metadata"]["name"], "-n", namespace, "--subresource=status",
                "--type=merge", "-p", json.dumps(status))
    build = wait_for(lambda: (b := kubectl.get("trainingsetbuild", "summary", namespace))
                     and b["status"].get("rowsOut") == 12 and b, 60, "rowsOut from the summary")
    assert build["status"]["rowsIn"] == 50 and build["status"]["output"] == "/data/training.parquet"
    assert build["status"]["catalogs"] == [{"name": "sn", "matches": 9, "conflicts": 1}]
    assert condition(build, "Ready")["message"] == "wrote 12 rows to /data/training.parquet"
    row = kubectl.run("get", "tsb", "summary", "-n", namespace).stdout.splitlines()[1].split()
    assert row[:4] == ["summary", "Succeeded", "1/1", "12"]
