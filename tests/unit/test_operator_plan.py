"""plan_build: what a TrainingSetBuild reconcile changes, decided without the API server."""
from __future__ import annotations

from pipeline_operator import render_trainingset
from pipeline_operator.derive import build_finished
from pipeline_operator.plan import Apply, Delete, plan_build


def build(parallelism: int = 1) -> dict:
    return {"apiVersion": "alertops.io/v1alpha1", "kind": "TrainingSetBuild",
            "metadata": {"name": "b", "namespace": "ml", "uid": "uid-b", "generation": 1},
            "spec": {"source": {"path": "/data/objects.parquet"},
                     "catalogs": [{"name": "sn", "path": "/data/sn.csv", "labelColumn": "type", "radiusArcsec": 1.5}],
                     "output": {"path": "training.parquet"}, "parallelism": parallelism}}


def job(manifest: dict, complete: bool = False, failed: bool = False) -> dict:
    conditions = []
    if complete:
        conditions.append({"type": "Complete", "status": "True"})
    if failed:
        conditions.append({"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"})
    return {"metadata": {"name": manifest["metadata"]["name"]}, "status": {"conditions": conditions}}


def names(actions) -> list[str]:
    return [str(a) for a in actions]


SINGLE = render_trainingset.render(build())
PARTS = render_trainingset.render(build(parallelism=3))
MAIN, MERGE = PARTS.main_job["metadata"]["name"], PARTS.merge_job["metadata"]["name"]


def test_a_new_build_gets_its_config_map_then_its_job():
    actions = plan_build(SINGLE, {}, [], full_apply=True)
    assert actions == [Apply(SINGLE.config_map), Apply(SINGLE.main_job)]


def test_an_idle_build_changes_nothing_between_handler_runs():
    assert plan_build(SINGLE, {"phase": "Running"}, [job(SINGLE.main_job)], full_apply=False) == []
    assert plan_build(PARTS, {}, [job(PARTS.main_job), job(PARTS.merge_job)], full_apply=False) == []


def test_a_deleted_job_is_created_again_unless_the_build_is_finished():
    assert plan_build(SINGLE, {"phase": "Running"}, [], full_apply=False) == [Apply(SINGLE.main_job)]
    finished = {"phase": "Succeeded", "configHash": SINGLE.config_hash}
    assert build_finished(finished, SINGLE.config_hash)
    assert plan_build(SINGLE, finished, [], full_apply=False) == []
    # A finished build of an older config does not count: the current one is started.
    older = {"phase": "Succeeded", "configHash": "0ld"}
    assert plan_build(SINGLE, older, [], full_apply=False) == [Apply(SINGLE.main_job)]


def test_a_resume_of_a_finished_build_applies_the_config_map_only():
    finished = {"phase": "Failed", "configHash": SINGLE.config_hash}
    assert plan_build(SINGLE, finished, [], full_apply=True) == [Apply(SINGLE.config_map)]


def test_jobs_of_another_config_are_deleted_first():
    stale = {"metadata": {"name": "b-build-0ldc0nf1"}, "status": {}}
    actions = plan_build(SINGLE, {}, [stale], full_apply=True)
    assert actions[0] == Delete("batch/v1", "Job", "ml", "b-build-0ldc0nf1")
    assert names(actions[1:]) == ["apply ConfigMap b-config", f"apply Job {SINGLE.main_job['metadata']['name']}"]


def test_the_merge_job_starts_once_every_partition_is_done():
    running = [job(PARTS.main_job)]
    assert plan_build(PARTS, {}, running, full_apply=False) == []
    done = [job(PARTS.main_job, complete=True)]
    assert plan_build(PARTS, {}, done, full_apply=False) == [Apply(PARTS.merge_job)]
    assert names(plan_build(PARTS, {}, done, full_apply=True)) == [
        "apply ConfigMap b-config", f"apply Job {MAIN}", f"apply Job {MERGE}"]
    failed = [job(PARTS.main_job, failed=True)]
    assert plan_build(PARTS, {}, failed, full_apply=False) == []


def test_a_resume_reapplies_an_existing_merge_job_once():
    both = [job(PARTS.main_job, complete=True), job(PARTS.merge_job)]
    assert names(plan_build(PARTS, {}, both, full_apply=True)) == [
        "apply ConfigMap b-config", f"apply Job {MAIN}", f"apply Job {MERGE}"]


def test_a_build_whose_job_could_not_be_applied_is_not_finished():
    """An API error (quota, admission, API server restart) while applying the Job wrote phase
    Failed: the Job is applied again, not given up on."""
    api_error = {"phase": "Failed", "configHash": SINGLE.config_hash, "lastError": "could not apply children: 403",
                 "conditions": [{"type": "Ready", "status": "False", "reason": "ApiError"}]}
    assert not build_finished(api_error, SINGLE.config_hash)
    assert plan_build(SINGLE, api_error, [], full_apply=False) == [Apply(SINGLE.main_job)]
    failed = {**api_error, "conditions": [{"type": "Ready", "status": "False", "reason": "BuildFailed"}]}
    assert plan_build(SINGLE, failed, [], full_apply=False) == []
