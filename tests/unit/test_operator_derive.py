"""Status derivation: children's observed state -> phase, conditions and messages."""
from __future__ import annotations

import json

from pipeline_operator.children import CONFIG_HASH_ANNOTATION
from pipeline_operator.conditions import (
    Verdict,
    conditions_for,
    dump_status,
    merge_conditions,
    phase_changed,
    status_update,
)
from pipeline_operator.derive import (
    BuildFacts,
    StepFacts,
    count_indexes,
    pipelinestep_status,
    summary_status,
    trainingset_status,
)
from pipeline_operator.status import PipelineStepStatus, TrainingSetBuildStatus
from step_runtime.spec.build_summary import BuildSummary, SummaryError

FACTS = StepFacts(generation=2, config_hash="abc", desired_replicas=2, selector="a=b", processor="model",
                  deployment_name="s")


def deployment(replicas=2, ready=2, updated=2, spec_replicas=2, digest="abc", generation=5, observed=5,
               conditions=()):
    return {"metadata": {"name": "s", "generation": generation, "annotations": {CONFIG_HASH_ANNOTATION: digest}},
            "spec": {"replicas": spec_replicas},
            "status": {"replicas": replicas, "readyReplicas": ready, "updatedReplicas": updated,
                       "observedGeneration": observed, "conditions": list(conditions)}}


def parse_summary(message: str) -> dict:
    """The status fields (as written) one termination message gives; {} when it is not a summary."""
    try:
        summary = BuildSummary.from_termination_message(message)
    except SummaryError:
        return {}
    return dump_status(TrainingSetBuildStatus(**summary_status(summary)))


def as_read(conditions) -> list[dict]:
    """Conditions as the API server returns them (camelCase dicts)."""
    return [c.model_dump(by_alias=True, mode="json") for c in conditions]


def waiting_pod(reason, message="", name="s-abc-1", image="img:1"):
    return {"metadata": {"name": name}, "status": {"phase": "Pending", "containerStatuses": [
        {"name": "step", "image": image, "ready": False, "restartCount": 3,
         "state": {"waiting": {"reason": reason, "message": message}},
         "lastState": {"terminated": {"exitCode": 2, "message": "spec.source: bad"}}}]}}


def test_all_replicas_ready_is_running_and_ready():
    status, verdict = pipelinestep_status(FACTS, deployment(), [])
    assert verdict.state == "ready" and status.phase == "Running"
    assert status.replica_summary == "2/2" and status.observed_generation == 2
    assert status.selector == "a=b" and status.last_error is None


def test_missing_deployment_is_reconciling():
    status, verdict = pipelinestep_status(FACTS, None, [])
    assert verdict.state == "reconciling" and verdict.reason == "Creating" and status.phase == "Pending"


def test_stale_hash_or_unobserved_generation_is_reconciling():
    assert pipelinestep_status(FACTS, deployment(digest="old"), [])[1].reason == "Applying"
    assert pipelinestep_status(FACTS, deployment(observed=4), [])[1].reason == "RollingOut"
    assert pipelinestep_status(FACTS, deployment(observed=0), [])[1].reason == "Creating"


def test_image_pull_failure_is_stalled_with_an_actionable_message():
    pods = [waiting_pod("ImagePullBackOff", 'Back-off pulling image "img:1"')]
    status, verdict = pipelinestep_status(FACTS, deployment(ready=0), pods)
    assert verdict.state == "stalled" and verdict.reason == "ImagePullFailed"
    assert "img:1" in verdict.message and "spec.image" in verdict.message
    assert status.phase == "Failed" and status.last_error == verdict.message


def test_missing_secret_and_crash_loop_are_stalled():
    v = pipelinestep_status(FACTS, deployment(ready=0), [waiting_pod("CreateContainerConfigError",
                                                                     'secret "pg" not found')])[1]
    assert v.reason == "ContainerConfigError" and 'secret "pg" not found' in v.message
    v = pipelinestep_status(FACTS, deployment(ready=0), [waiting_pod("CrashLoopBackOff")])[1]
    assert v.reason == "CrashLoopBackOff" and "spec.source: bad" in v.message and "kubectl logs" in v.message


def test_progress_deadline_exceeded_is_stalled():
    cond = {"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded", "message": "timed out"}
    v = pipelinestep_status(FACTS, deployment(ready=1, conditions=[cond]), [])[1]
    assert v.state == "stalled" and "timed out" in v.message


def test_rolling_out_and_scaling():
    status, v = pipelinestep_status(FACTS, deployment(replicas=3, ready=2, updated=1), [])
    assert v.reason == "RollingOut" and status.phase == "Progressing"
    status, v = pipelinestep_status(FACTS, deployment(replicas=0, ready=0, updated=0), [])
    assert v.state == "reconciling" and status.phase == "Pending"


def test_suspended():
    facts = StepFacts(generation=2, config_hash="abc", desired_replicas=0, suspend=True, deployment_name="s")
    status, v = pipelinestep_status(facts, deployment(replicas=0, ready=0, updated=0, spec_replicas=0), [])
    assert status.phase == "Suspended" and v.reason == "Suspended" and v.state == "idle"
    _, v = pipelinestep_status(facts, deployment(replicas=1, ready=1, updated=1, spec_replicas=0), [])
    assert v.reason == "Suspending"


def test_invalid_spec_error_wins():
    facts = StepFacts(generation=1, error=Verdict("stalled", "InvalidSpec", "spec.processor: bad"))
    status, v = pipelinestep_status(facts, None, [])
    assert status.phase == "Failed" and status.last_error == "spec.processor: bad"


def crd_status_properties(plural: str) -> dict:
    from pathlib import Path

    import yaml

    crd = yaml.safe_load((Path(__file__).parents[2] / "crds" / f"{plural}.alertops.io.yaml").read_text())
    return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]


def test_the_written_status_uses_only_fields_the_crd_keeps():
    """A misspelt key would be pruned by the API server without a word: the patch must match the schema."""
    step_fields = crd_status_properties("pipelinesteps")
    status, verdict = pipelinestep_status(FACTS, deployment(), [])
    patch = status_update({}, status, verdict, 2, "T1")
    assert set(patch) <= set(step_fields) and {"phase", "replicaSummary", "conditions"} <= set(patch)
    condition_fields = step_fields["conditions"]["items"]["properties"]
    assert all(set(c) <= set(condition_fields) for c in patch["conditions"])
    build_fields = crd_status_properties("trainingsetbuilds")
    summary = {"rows_in": 10, "rows_out": 4, "output": {"path": "/o"}, "catalogs": {"sn": {"matches": 3}}}
    out = trainingset_status(BUILD, job("b-partition-h", complete=True, completed_indexes="0-2"),
                             job("b-merge-h", complete=True), [job_pod("b-merge-h", "Succeeded", json.dumps(summary))])
    patch = status_update({}, out.status, out.verdict, 1, "T1")
    assert set(patch) <= set(build_fields) and {"rowsOut", "catalogs", "completionTime"} <= set(patch)
    catalog_fields = build_fields["catalogs"]["items"]["properties"]
    assert all(set(c) <= set(catalog_fields) for c in patch["catalogs"])


# ------------------------------------------------------------------------------------------

def test_conditions_follow_kstatus():
    conds = {c.type: c for c in conditions_for(Verdict("stalled", "ImagePullFailed", "m"), 4)}
    assert conds["Ready"].status == "False" and conds["Stalled"].status == "True"
    assert conds["Reconciling"].status == "False" and conds["Stalled"].observed_generation == 4
    assert conds["Ready"].reason == "ImagePullFailed"


def test_transition_time_is_kept_while_status_does_not_change():
    old = as_read(merge_conditions(None, conditions_for(Verdict("ready", "Running", "1/1"), 1), "T1"))
    again = merge_conditions(old, conditions_for(Verdict("ready", "Running", "1/1"), 1), "T2")
    assert all(c.last_transition_time == "T1" for c in again)
    flipped = merge_conditions(old, conditions_for(Verdict("stalled", "X", "m"), 1), "T3")
    times = {c.type: c.last_transition_time for c in flipped}
    assert times == {"Ready": "T3", "Reconciling": "T1", "Stalled": "T3"}


def test_status_update_is_none_when_nothing_changed():
    v = Verdict("ready", "Running", "1/1")
    first = status_update({}, PipelineStepStatus(phase="Running", last_error=None), v, 1, "T1")
    assert first is not None and phase_changed({}, first)
    assert status_update(first, PipelineStepStatus(phase="Running", last_error=None), v, 1, "T2") is None
    second = status_update(first, PipelineStepStatus(phase="Running"), v, 2, "T2")
    assert second is not None and not phase_changed(first, second)


def test_a_new_resource_going_pending_posts_no_event_but_its_next_move_does():
    pending = status_update({}, PipelineStepStatus(phase="Pending"), Verdict("reconciling", "Creating", "m"), 1, "T1")
    assert pending is not None and not phase_changed({}, pending) and not phase_changed(None, pending)
    failed = status_update({}, PipelineStepStatus(phase="Failed"), Verdict("stalled", "InvalidSpec", "m"), 1, "T1")
    assert failed is not None and phase_changed({}, failed)
    running = status_update(pending, PipelineStepStatus(phase="Running"), Verdict("ready", "Running", "1/1"), 1, "T2")
    assert running is not None and phase_changed(pending, running)


# ------------------------------------------------------------------------------------------

BUILD = BuildFacts(generation=1, config_hash="h", partitions=3, main_job_name="b-partition-h",
                   merge_job_name="b-merge-h")


def job(name, complete=False, failed=None, active=0, completed_indexes="", start="2026-01-01T00:00:00Z"):
    conds = []
    if complete:
        conds.append({"type": "Complete", "status": "True"})
    if failed:
        conds.append({"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": failed,
                      "lastTransitionTime": "2026-01-01T01:00:00Z"})
    return {"metadata": {"name": name}, "status": {"active": active, "completedIndexes": completed_indexes,
                                                   "startTime": start, "conditions": conds,
                                                   "completionTime": "2026-01-01T02:00:00Z" if complete else None}}


def job_pod(job_name, phase, message=""):
    terminated = {"exitCode": 0 if phase == "Succeeded" else 1, "message": message, "reason": "Completed"}
    return {"metadata": {"name": f"{job_name}-x", "labels": {"batch.kubernetes.io/job-name": job_name},
                         "creationTimestamp": "2026-01-01T00:00:00Z"},
            "status": {"phase": phase, "containerStatuses": [{"name": "build", "state": {"terminated": terminated}}]}}


def test_count_indexes():
    assert count_indexes("0-2,5,7-8") == 6 and count_indexes("") == 0 and count_indexes(None) == 0


def test_partitions_in_progress():
    out = trainingset_status(BUILD, job("b-partition-h", active=2, completed_indexes="1"), None, [])
    assert out.status.phase == "Running" and out.status.progress == "1/3"
    assert out.verdict.state == "reconciling" and not out.create_merge


def test_merge_is_requested_once_partitions_complete():
    out = trainingset_status(BUILD, job("b-partition-h", complete=True, completed_indexes="0-2"), None, [])
    assert out.create_merge and out.status.progress == "3/3" and out.verdict.reason == "Merging"


def test_success_reads_the_summary_from_the_termination_message():
    summary = {"rows_in": 1000, "rows_out": 420, "output": "/data/training.parquet",
               "catalogs": {"sn": {"matches": 300, "conflicts": 4}}}
    pods = [job_pod("b-merge-h", "Succeeded", json.dumps(summary))]
    out = trainingset_status(BUILD, job("b-partition-h", complete=True, completed_indexes="0-2"),
                             job("b-merge-h", complete=True), pods)
    assert out.status.phase == "Succeeded" and out.verdict.state == "ready"
    assert out.status.rows_out == 420 and out.status.rows_in == 1000
    assert dump_status(out.status)["catalogs"] == [{"name": "sn", "matches": 300, "conflicts": 4}]
    assert "420 rows" in out.verdict.message and "/data/training.parquet" in out.verdict.message


def test_failed_job_names_the_pod_error():
    pods = [job_pod("b-partition-h", "Failed", "spec.catalogs[0].path: no such file /data/sn.csv")]
    out = trainingset_status(BUILD, job("b-partition-h", failed="Job has reached the specified backoff limit"),
                             None, pods)
    assert out.status.phase == "Failed" and out.verdict.state == "stalled"
    assert "no such file /data/sn.csv" in out.status.last_error and "backoff limit" in out.status.last_error


def test_suspended_and_not_yet_created():
    facts = BuildFacts(generation=1, config_hash="h", partitions=1, suspend=True, main_job_name="b-build-h")
    assert trainingset_status(facts, None, None, []).status.phase == "Suspended"
    assert trainingset_status(facts, job("b-build-h"), None, []).status.phase == "Suspended"
    facts = BuildFacts(generation=1, config_hash="h", partitions=1, main_job_name="b-build-h")
    out = trainingset_status(facts, None, None, [])
    assert out.status.phase == "Pending" and out.verdict.reason == "Creating"


def test_result_stands_after_jobs_are_garbage_collected():
    previous = {"phase": "Succeeded", "configHash": "h", "rowsOut": 5, "output": "/o", "conditions": []}
    facts = BuildFacts(generation=1, config_hash="h", partitions=1, main_job_name="b-build-h", previous=previous)
    out = trainingset_status(facts, None, None, [])
    assert out.status.phase == "Succeeded" and out.status.rows_out == 5 and out.verdict.state == "ready"


def test_parse_summary_tolerates_other_shapes():
    assert parse_summary("not json") == {}
    assert parse_summary(json.dumps({"rowsOut": 3, "output": {"path": "/x"},
                                     "catalogs": [{"name": "a", "matches": 2}]})) == {
        "rowsOut": 3, "output": "/x", "catalogs": [{"name": "a", "matches": 2, "conflicts": 0}]}


def test_parse_summary_reads_what_alertops_build_writes():
    """Contract with step_runtime.trainingset.report.compact_summary (the termination message)."""
    from step_runtime.trainingset.report import compact_summary

    text = compact_summary({"phase": "done", "rows_in": 50, "rows_out": 12, "conflicts": 1,
                            "output": {"path": "/data/t.parquet", "format": "parquet"},
                            "catalogs": {"vsx": {"matches": 9, "conflicts": 1}, "gaia": {"matches": 4}},
                            "classes": {"RRL": 7}})
    parsed = parse_summary(text)
    assert parsed["rowsIn"] == 50 and parsed["rowsOut"] == 12 and parsed["output"] == "/data/t.parquet"
    assert {c["name"]: (c["matches"], c["conflicts"]) for c in parsed["catalogs"]} == {"vsx": (9, 1), "gaia": (4, 0)}


def test_render_cache_memoises_and_keeps_errors():
    import pytest

    from pipeline_operator import render_pipelinestep
    from pipeline_operator.children import RenderSettings
    from pipeline_operator.reconcile import cached_render
    from step_runtime.spec.common import SpecError

    calls = []

    def counting(resource, settings):
        calls.append(1)
        return render_pipelinestep.render(resource, settings)

    res = {"apiVersion": "alertops.io/v1alpha1", "kind": "PipelineStep",
           "metadata": {"name": "c", "namespace": "n", "uid": "u-cache", "generation": 1},
           "spec": {"source": {"files": {"path": "/in"}}, "processor": {"features": {}},
                    "sinks": [{"file": {"path": "/out.parquet"}}]}}
    first = cached_render(counting, res, RenderSettings())
    assert cached_render(counting, res, RenderSettings()) is first and len(calls) == 1
    res["metadata"]["generation"] = 2
    assert cached_render(counting, res, RenderSettings()) is not first and len(calls) == 2
    res["metadata"]["generation"] = 3
    res["spec"]["processor"] = {}
    for _ in range(2):
        with pytest.raises(SpecError, match="processor"):
            cached_render(counting, res, RenderSettings())
    assert len(calls) == 3


def test_matched_unlabeled_reaches_status_and_an_unreadable_summary_is_said():
    summary = {"rows_in": 10, "rows_out": 4, "output": {"path": "/o"},
               "catalogs": {"tns": {"matches": 3, "conflicts": 0, "matched_unlabeled": 2}}}
    main, merge = job("b-partition-h", complete=True, completed_indexes="0-2"), job("b-merge-h", complete=True)
    out = trainingset_status(BUILD, main, merge, [job_pod("b-merge-h", "Succeeded", json.dumps(summary))])
    assert dump_status(out.status)["catalogs"] == [{"name": "tns", "matches": 3, "conflicts": 0,
                                                    "matchedUnlabeled": 2}]
    cut = ('{"phase":"Succeeded","rows_in":1,"catalogs":{"a":{"matc' + "x" * 4096)[:4096]
    out = trainingset_status(BUILD, main, merge, [job_pod("b-merge-h", "Succeeded", cut)])
    assert out.status.phase == "Succeeded" and out.verdict.state == "ready" and out.status.rows_out is None
    assert "summary could not be read" in out.verdict.message and "b-merge-h-x" in out.verdict.message
    assert "not JSON" in out.verdict.message


def test_an_api_error_status_is_not_a_result_that_stands():
    previous = {"phase": "Failed", "configHash": "h", "lastError": "could not apply children: 403",
                "conditions": [{"type": "Ready", "status": "False", "reason": "ApiError"}]}
    facts = BuildFacts(generation=1, config_hash="h", partitions=1, main_job_name="b-build-h", previous=previous)
    out = trainingset_status(facts, None, None, [])
    assert out.status.phase == "Pending" and out.verdict.reason == "Creating" and out.status.last_error is None
