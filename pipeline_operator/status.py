"""Status models of PipelineStep and TrainingSetBuild: what the operator reports back.

They follow the Kubernetes API conventions (and the kstatus convention that Argo CD and
`kubectl wait --for=condition=Ready` understand): `observedGeneration` says which spec the
status describes; `conditions[]` carries `Ready`, `Reconciling` and `Stalled` with a reason
(CamelCase, machine-readable) and a message (for people). The CRDs' status schemas are
generated from these models, like the spec schemas are generated from the spec models, and
the status the operator writes is these models too: `derive` builds them and
`conditions.dump_status` turns them into the patch, so a field the schema does not know
cannot be written (the API server would prune it without a word).
"""
from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from step_runtime.spec.common import SpecModel

KOPF_DESCRIPTION = (
    "The operator framework's (kopf's) bookkeeping: `last-handled-configuration`, the spec last "
    "handled as JSON, which tells an edit from a replay after a restart; `progress`, of a handler "
    "being retried. In the status, so that the write that reports a reconcile records them too.")

ConditionType = Literal["Ready", "Reconciling", "Stalled"]
ConditionStatus = Literal["True", "False", "Unknown"]

PipelineStepPhase = Literal["Pending", "Progressing", "Running", "Suspended", "Failed"]
TrainingSetBuildPhase = Literal["Pending", "Running", "Suspended", "Succeeded", "Failed"]


class Condition(SpecModel):
    """One condition, as in metav1.Condition."""

    type: ConditionType = Field(description="Ready, Reconciling or Stalled.")
    status: ConditionStatus = Field(description="True, False or Unknown.")
    reason: str = Field(default="", description="CamelCase reason for the condition's last transition.")
    message: str = Field(default="", description="What happened and what to do about it, for people.")
    last_transition_time: str | None = Field(
        default=None, description="When the condition last changed status (RFC 3339).")
    observed_generation: int | None = Field(
        default=None, ge=0, description="The metadata.generation this condition was set for.")


class ReadyModel(SpecModel):
    """A model that ready pods of the step run, from their pod template's annotations."""

    classifier_name: str = Field(description="classifierName of the model.")
    classifier_version: str = Field(description="classifierVersion of the model.")
    sha256: str = Field(description="sha256 the pods pinned and loaded.")
    source: str = Field(default="", description="Where it came from: its uri or path.")
    ready_replicas: int = Field(ge=0, description="Ready pods running it.")


class PipelineStepStatus(SpecModel):
    """What the operator observed of a PipelineStep's Deployment."""

    observed_generation: int | None = Field(
        default=None, ge=0, description="The metadata.generation of the spec this status describes.")
    phase: PipelineStepPhase | None = Field(
        default=None,
        description="Pending (no ready pod yet), Progressing (rolling out or scaling), Running "
                    "(all replicas ready and up to date), Suspended (spec.suspend) or Failed (see Stalled).")
    replicas: int | None = Field(default=None, ge=0, description="Pods of the Deployment (scale subresource).")
    ready_replicas: int | None = Field(default=None, ge=0, description="Pods that pass their readiness probe.")
    updated_replicas: int | None = Field(default=None, ge=0, description="Pods running the current config.")
    replica_summary: str | None = Field(default=None, description="Ready/desired replicas, e.g. 2/3.")
    selector: str | None = Field(default=None, description="Label selector of the pods (scale subresource).")
    processor: str | None = Field(default=None, description="Which processor the step runs.")
    deployment: str | None = Field(default=None, description="Name of the Deployment the operator manages.")
    config_hash: str | None = Field(
        default=None, description="Hash of the rendered config (spec minus replicas and suspend).")
    last_error: str | None = Field(default=None, description="The last error a user can act on, if any.")
    model_version: str | None = Field(default=None, description=(
        "classifierVersion of the model every ready pod runs; mid-rollout, the versions ready pods run, joined by ', '."))
    model_sha256: str | None = Field(default=None, description=(
        "sha256 of the model file every ready pod loaded (null while ready pods run different files)."))
    models: list[ReadyModel] = Field(default_factory=list, description=(
        "Each model that ready pods run, with how many (a rollout shows the old and the new one)."))
    conditions: list[Condition] = Field(default_factory=list, description="Ready, Reconciling and Stalled.")
    kopf: dict[str, Any] | None = Field(default=None, description=KOPF_DESCRIPTION)


class CatalogResult(SpecModel):
    """Matches and conflicts of one catalog in a finished build."""

    name: str = Field(description="Catalog name.")
    matches: int = Field(default=0, ge=0, description="Objects matched to this catalog.")
    conflicts: int = Field(default=0, ge=0, description="Matches whose label conflicted with another catalog's.")
    matched_unlabeled: int | None = Field(
        default=None, ge=0,
        description="Sources whose nearest object in this catalog has no label or an unmapped one "
                    "(they get no label from this catalog).")


class TrainingSetBuildStatus(SpecModel):
    """What the operator observed of a TrainingSetBuild's Jobs."""

    observed_generation: int | None = Field(
        default=None, ge=0, description="The metadata.generation of the spec this status describes.")
    phase: TrainingSetBuildPhase | None = Field(
        default=None, description="Pending, Running, Suspended, Succeeded or Failed.")
    start_time: str | None = Field(default=None, description="When the first Job started (RFC 3339).")
    completion_time: str | None = Field(default=None, description="When the build finished (RFC 3339).")
    partitions: int | None = Field(default=None, ge=1, description="Sky partitions of the build.")
    completed_partitions: int | None = Field(default=None, ge=0, description="Partitions done.")
    progress: str | None = Field(default=None, description="Completed/total partitions, e.g. 3/4.")
    rows_in: int | None = Field(default=None, ge=0, description="Rows read from the source table.")
    rows_out: int | None = Field(default=None, ge=0, description="Rows written to the output.")
    catalogs: list[CatalogResult] = Field(default_factory=list, description="Matches and conflicts per catalog.")
    output: str | None = Field(default=None, description="Where the training set was written.")
    jobs: list[str] = Field(default_factory=list, description="Names of the Jobs of this build.")
    config_hash: str | None = Field(default=None, description="Hash of the rendered config.")
    last_error: str | None = Field(default=None, description="The last error a user can act on, if any.")
    conditions: list[Condition] = Field(default_factory=list, description="Ready, Reconciling and Stalled.")
    kopf: dict[str, Any] | None = Field(default=None, description=KOPF_DESCRIPTION)
