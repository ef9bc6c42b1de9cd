"""Status derivation, as pure functions: children's observed state in, status model + verdict out.

Messages are written for the person running `kubectl describe`: they say what is wrong and
what to change (the image, a Secret, the spec field).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from pipeline_operator.children import CONFIG_HASH_ANNOTATION
from pipeline_operator.conditions import Verdict
from pipeline_operator.rollout import fetch_problem, fetching, ready_models
from pipeline_operator.status import (
    CatalogResult,
    PipelineStepPhase,
    PipelineStepStatus,
    ReadyModel,
    TrainingSetBuildPhase,
    TrainingSetBuildStatus,
)
from step_runtime.spec.build_summary import BuildSummary, SummaryError

IMAGE_PULL_REASONS = {"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull"}
CONFIG_ERROR_REASONS = {"CreateContainerConfigError", "CreateContainerError"}


def _name(obj: dict[str, Any]) -> str:
    return str(obj.get("metadata", {}).get("name", "?"))


def _condition(obj: dict[str, Any], kind: str) -> dict[str, Any] | None:
    conditions: list[dict[str, Any]] = (obj.get("status") or {}).get("conditions") or []
    for c in conditions:
        if c.get("type") == kind:
            return c
    return None


def _container_statuses(pod: dict[str, Any]) -> list[dict[str, Any]]:
    status = pod.get("status") or {}
    return list(status.get("initContainerStatuses") or []) + list(status.get("containerStatuses") or [])


def pod_problem(pods: list[dict[str, Any]]) -> Verdict | None:
    """The first problem a user must fix among `pods`, if any (image, Secret, crash, scheduling)."""
    for pod in sorted(pods, key=_name):
        for cs in _container_statuses(pod):
            waiting = (cs.get("state") or {}).get("waiting") or {}
            reason, message = waiting.get("reason", ""), (waiting.get("message") or "").strip()
            if reason in IMAGE_PULL_REASONS:
                return Verdict("stalled", "ImagePullFailed",
                               f"pod {_name(pod)} cannot pull image {cs.get('image', '?')!r} ({reason}"
                               f"{': ' + message if message else ''}); check spec.image, that the tag exists "
                               f"and that the nodes may pull it (imagePullSecrets)")
            if reason in CONFIG_ERROR_REASONS:
                return Verdict("stalled", "ContainerConfigError",
                               f"pod {_name(pod)} cannot start its container: {message or reason}; create the "
                               f"missing Secret/ConfigMap key or fix the secret reference in the spec")
            if reason == "CrashLoopBackOff":
                last = (cs.get("lastState") or {}).get("terminated") or {}
                detail = (last.get("message") or "").strip() or f"exit code {last.get('exitCode', '?')}"
                file_problem = fetch_problem(_name(pod), cs, detail)
                if file_problem is not None:
                    return file_problem
                return Verdict("stalled", "CrashLoopBackOff",
                               f"pod {_name(pod)} keeps crashing ({cs.get('restartCount', 0)} restarts): "
                               f"{_tail(detail)}; see `kubectl logs {_name(pod)}`")
        scheduled = _condition(pod, "PodScheduled")
        if scheduled and scheduled.get("status") == "False" and scheduled.get("reason") == "Unschedulable":
            message = scheduled.get("message", "")
            fix = ("check that the PersistentVolumeClaims of spec.volumes and pvc:// URIs exist and can bind "
                   "(kubectl get pvc)" if "PersistentVolumeClaim" in message else "lower spec.resources or add capacity")
            return Verdict("stalled", "Unschedulable", f"pod {_name(pod)} cannot be scheduled: {message}; {fix}")
    return None


def _tail(text: str, limit: int = 400) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else "..." + text[-limit:]


# ------------------------------------------------------------------------------------------
# PipelineStep
# ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class StepFacts:
    """What the operator knows of a PipelineStep when deriving its status."""

    generation: int | None
    config_hash: str | None = None
    desired_replicas: int = 0
    suspend: bool = False
    selector: str | None = None
    processor: str | None = None
    deployment_name: str | None = None
    error: Verdict | None = None


def pipelinestep_status(facts: StepFacts, deployment: dict[str, Any] | None,
                        pods: list[dict[str, Any]]) -> tuple[PipelineStepStatus, Verdict]:
    """The status (without conditions) and the verdict for one PipelineStep."""
    dstatus = (deployment or {}).get("status") or {}
    replicas = int(dstatus.get("replicas") or 0)
    ready = int(dstatus.get("readyReplicas") or 0)
    updated = int(dstatus.get("updatedReplicas") or 0)
    desired = facts.desired_replicas
    verdict = _step_verdict(facts, deployment, pods, replicas, ready, updated)
    phase: PipelineStepPhase
    if verdict.state == "ready":
        phase = "Running"
    elif verdict.state == "idle":
        phase = "Suspended"
    elif verdict.state == "stalled":
        phase = "Failed"
    else:
        phase = "Pending" if ready == 0 and desired > 0 else "Progressing"
    running = ready_models(pods)
    status = PipelineStepStatus(
        observed_generation=facts.generation,
        phase=phase,
        replicas=replicas,
        ready_replicas=ready,
        updated_replicas=updated,
        replica_summary=f"{ready}/{desired}",
        selector=facts.selector,
        processor=facts.processor,
        deployment=facts.deployment_name,
        config_hash=facts.config_hash,
        last_error=verdict.message if verdict.state == "stalled" else None,
        model_version=running["modelVersion"],
        model_sha256=running["modelSha256"],
        models=[ReadyModel.model_validate(model) for model in running["models"]],
    )
    return status, verdict


def _step_verdict(facts: StepFacts, deployment: dict[str, Any] | None, pods: list[dict[str, Any]],
                  replicas: int, ready: int, updated: int) -> Verdict:
    if facts.error is not None:
        return facts.error
    if deployment is None:
        return Verdict("reconciling", "Creating", f"creating Deployment {facts.deployment_name}")
    meta = deployment.get("metadata") or {}
    dstatus = deployment.get("status") or {}
    applied_hash = (meta.get("annotations") or {}).get(CONFIG_HASH_ANNOTATION)
    if applied_hash != facts.config_hash or (deployment.get("spec") or {}).get("replicas") != facts.desired_replicas:
        return Verdict("reconciling", "Applying", f"updating Deployment {_name(deployment)} to the current spec")
    observed = int(dstatus.get("observedGeneration") or 0)
    if observed < int(meta.get("generation") or 0):
        if observed == 0:
            return Verdict("reconciling", "Creating", f"Deployment {_name(deployment)} created, starting its pods")
        return Verdict("reconciling", "RollingOut", f"Deployment {_name(deployment)} has not yet seen its new spec")
    progressing = _condition(deployment, "Progressing")
    if progressing and progressing.get("status") == "False" and progressing.get("reason") == "ProgressDeadlineExceeded":
        problem = pod_problem(pods)
        if problem is not None:
            return problem
        return Verdict("stalled", "ProgressDeadlineExceeded",
                       f"Deployment {_name(deployment)} made no progress: {progressing.get('message', '')}")
    desired = facts.desired_replicas
    if facts.suspend:
        if replicas == 0:
            return Verdict("idle", "Suspended", "suspended (spec.suspend is true): scaled to 0, configuration kept")
        return Verdict("reconciling", "Suspending", f"scaling down to 0 ({replicas} pods left)")
    if replicas == desired and updated == desired and ready == desired:
        return Verdict("ready", "Running", f"{ready}/{desired} replicas ready, config {facts.config_hash}")
    problem = pod_problem(pods)
    if problem is not None:
        return problem
    waiting = fetching(pods)
    if waiting is not None:
        return waiting
    if updated < desired:
        return Verdict("reconciling", "RollingOut", f"{updated}/{desired} replicas run the current config")
    if replicas > desired:
        return Verdict("reconciling", "ScalingDown", f"{replicas} pods, {desired} wanted")
    return Verdict("reconciling", "WaitingForReady", f"{ready}/{desired} replicas ready")


# ------------------------------------------------------------------------------------------
# TrainingSetBuild
# ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class BuildFacts:
    """What the operator knows of a TrainingSetBuild when deriving its status."""

    generation: int | None
    config_hash: str | None = None
    partitions: int = 1
    suspend: bool = False
    main_job_name: str | None = None
    merge_job_name: str | None = None
    error: Verdict | None = None
    previous: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class BuildOutcome:
    """The derived status (without conditions), its verdict, and whether the merge Job should be
    created now."""

    status: TrainingSetBuildStatus
    verdict: Verdict
    create_merge: bool = False


def count_indexes(text: str | None) -> int:
    """How many indexes a Job's `completedIndexes` ("0-2,5") names."""
    total = 0
    for part in (text or "").split(","):
        part = part.strip()
        if not part:
            continue
        if "-" in part:
            lo, hi = part.split("-", 1)
            total += int(hi) - int(lo) + 1
        else:
            total += 1
    return total


def summary_status(summary: BuildSummary) -> dict[str, Any]:
    """The TrainingSetBuildStatus fields a build's summary gives (only those it carries)."""
    fields: dict[str, Any] = {}
    if summary.rows_in is not None:
        fields["rows_in"] = summary.rows_in
    if summary.rows_out is not None:
        fields["rows_out"] = summary.rows_out
    if summary.output is not None and summary.output.path:
        fields["output"] = summary.output.path
    if summary.catalogs:
        fields["catalogs"] = [
            CatalogResult(name=name, matches=c.matches or 0, conflicts=c.conflicts or 0,
                          **({"matched_unlabeled": c.matched_unlabeled} if c.matched_unlabeled is not None else {}))
            for name, c in summary.catalogs.items()
        ]
    return fields


def _terminated(pod: dict[str, Any]) -> dict[str, Any]:
    for cs in _container_statuses(pod):
        t: dict[str, Any] | None = (cs.get("state") or {}).get("terminated")
        if t:
            return t
    return {}


def _summary_of(pods: list[dict[str, Any]]) -> tuple[dict[str, Any], str | None]:
    """Status fields from the newest succeeded pod's summary, or why no summary could be read."""
    problem = None
    for pod in sorted(pods, key=lambda p: (p.get("metadata") or {}).get("creationTimestamp", ""), reverse=True):
        if (pod.get("status") or {}).get("phase") == "Succeeded":
            try:
                fields = summary_status(BuildSummary.from_termination_message(_terminated(pod).get("message")))
            except SummaryError as err:
                problem = problem or f"pod {_name(pod)}: {err}"
                continue
            if fields:
                return fields, None
            problem = problem or f"pod {_name(pod)}: the termination message carries no counts"
    return {}, problem


def _failure_detail(pods: list[dict[str, Any]]) -> str:
    for pod in sorted(pods, key=_name):
        t = _terminated(pod)
        if (pod.get("status") or {}).get("phase") == "Failed" and t:
            detail = (t.get("message") or "").strip() or f"{t.get('reason', 'Error')}, exit code {t.get('exitCode')}"
            return f"; pod {_name(pod)}: {_tail(detail)}"
    return ""


def _job_failed(job: dict[str, Any]) -> dict[str, Any] | None:
    c = _condition(job, "Failed")
    return c if c and c.get("status") == "True" else None


def _job_complete(job: dict[str, Any]) -> bool:
    c = _condition(job, "Complete")
    return bool(c and c.get("status") == "True")


# Ready reasons of a status that failed before any Job ran: the build is not over.
NOT_A_BUILD_OUTCOME = frozenset({"ApiError", "InvalidSpec"})


def build_finished(previous: dict[str, Any], config_hash: str) -> bool:
    """Whether a status (as read from the API) reports a finished build of this very config,
    which is never started again. A phase Failed that the operator wrote because it could not
    apply the children (an API error: quota, admission, an API server restart) is not a finished
    build: its Jobs are applied again once the API server lets them through."""
    ready: dict[str, Any] = next((c for c in previous.get("conditions") or [] if c.get("type") == "Ready"), {})
    return (previous.get("phase") in ("Succeeded", "Failed") and previous.get("configHash") == config_hash
            and ready.get("reason") not in NOT_A_BUILD_OUTCOME)


def merge_due(partitions: int, main_job: dict[str, Any] | None, merge_job: dict[str, Any] | None) -> bool:
    """Whether a partitioned build's merge Job should be created now: every partition is done
    (the Indexed Job completed) and the merge Job does not exist yet."""
    return (partitions > 1 and main_job is not None and merge_job is None
            and _job_complete(main_job) and _job_failed(main_job) is None)


def _pods_of(pods: list[dict[str, Any]], job_name: str | None) -> list[dict[str, Any]]:
    return [p for p in pods if ((p.get("metadata") or {}).get("labels") or {}).get("batch.kubernetes.io/job-name")
            == job_name or ((p.get("metadata") or {}).get("labels") or {}).get("job-name") == job_name]


def previous_build_status(previous: dict[str, Any]) -> TrainingSetBuildStatus:
    """The status a build had (as read from the API), without its conditions.

    Only the fields the model knows are kept, and a field that does not validate is dropped
    rather than failing the derivation: the previous status is a hint, never a reason to stop.
    """
    known = {f.alias or name for name, f in TrainingSetBuildStatus.model_fields.items()} - {"conditions"}
    data = {k: v for k, v in previous.items() if k in known}
    while True:
        try:
            return TrainingSetBuildStatus.model_validate(data)
        except ValidationError as err:
            bad = {str(e["loc"][0]) for e in err.errors() if e["loc"]}
            if not bad & data.keys():
                return TrainingSetBuildStatus()
            data = {k: v for k, v in data.items() if k not in bad}


def trainingset_status(facts: BuildFacts, main_job: dict[str, Any] | None, merge_job: dict[str, Any] | None,
                       pods: list[dict[str, Any]]) -> BuildOutcome:
    """The status (without conditions), verdict and next action for one build."""
    prev = facts.previous or {}
    base: dict[str, Any] = {
        "observed_generation": facts.generation,
        "partitions": facts.partitions,
        "config_hash": facts.config_hash,
        "jobs": [n for n in (facts.main_job_name, facts.merge_job_name) if n],
    }

    def status(phase: TrainingSetBuildPhase, last_error: str | None, **more: Any) -> TrainingSetBuildStatus:
        return TrainingSetBuildStatus(**base, **more, phase=phase, last_error=last_error)

    if facts.error is not None:
        return BuildOutcome(status("Failed", facts.error.message), facts.error)
    if facts.config_hash is not None and build_finished(prev, facts.config_hash) and main_job is None:
        # The Jobs were garbage-collected after ttlSecondsAfterFinished: the result stands.
        kept = previous_build_status(prev).model_copy(update=base)
        verdict = (Verdict("ready", "Succeeded", _success_message(kept)) if kept.phase == "Succeeded"
                   else Verdict("stalled", "BuildFailed", kept.last_error or "the build failed"))
        return BuildOutcome(kept, verdict)
    main_status = (main_job or {}).get("status") or {}
    if facts.partitions > 1:
        done = count_indexes(main_status.get("completedIndexes"))
    else:
        done = 1 if main_job is not None and _job_complete(main_job) else 0
    if main_job is not None and _job_complete(main_job):
        done = facts.partitions
    base.update({"completed_partitions": done, "progress": f"{done}/{facts.partitions}",
                 "start_time": main_status.get("startTime") or prev.get("startTime")})
    if main_job is None:
        if facts.suspend:
            return BuildOutcome(status("Suspended", None),
                                Verdict("idle", "Suspended", "suspended (spec.suspend is true): no Job started"))
        return BuildOutcome(status("Pending", None),
                            Verdict("reconciling", "Creating", f"creating Job {facts.main_job_name}"))
    failed = _job_failed(main_job)
    if failed is None and merge_job is not None:
        failed = _job_failed(merge_job)
    if failed is not None:
        which = main_job if _job_failed(main_job) else merge_job
        assert which is not None
        message = (f"Job {_name(which)} failed ({failed.get('reason', 'Failed')}: {failed.get('message', '')})"
                   f"{_failure_detail(_pods_of(pods, _name(which)))}")
        return BuildOutcome(status("Failed", message, completion_time=failed.get("lastTransitionTime")),
                            Verdict("stalled", "BuildFailed", message))
    final_job = merge_job if facts.partitions > 1 else main_job
    if _job_complete(main_job):
        if merge_due(facts.partitions, main_job, merge_job):
            return BuildOutcome(status("Running", None),
                                Verdict("reconciling", "Merging", "all partitions done; starting the merge Job"),
                                create_merge=True)
        if final_job is not None and _job_complete(final_job):
            summary, unreadable = _summary_of(_pods_of(pods, _name(final_job)))
            done_status = status("Succeeded", None, **summary,
                                 completion_time=(final_job.get("status") or {}).get("completionTime"))
            message = _success_message(done_status)
            if unreadable:
                message += f"; its summary could not be read ({_tail(unreadable)})"
            return BuildOutcome(done_status, Verdict("ready", "Succeeded", message))
    if facts.suspend and not main_status.get("active"):
        return BuildOutcome(status("Suspended", None),
                            Verdict("idle", "Suspended", "suspended (spec.suspend is true): Job paused"))
    problem = pod_problem(pods)
    if problem is not None:
        return BuildOutcome(status("Running", problem.message), problem)
    running = bool(main_status.get("active")) or merge_job is not None
    stage = "merging partitions" if merge_job is not None else f"{done}/{facts.partitions} partitions done"
    return BuildOutcome(status("Running" if running or done else "Pending", None),
                        Verdict("reconciling", "Running" if running else "WaitingForPods", stage))


def _success_message(status: TrainingSetBuildStatus) -> str:
    if status.rows_out is not None and status.output:
        return f"wrote {status.rows_out} rows to {status.output}"
    return "the build succeeded"
