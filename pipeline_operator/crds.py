"""The two CRDs: names, printer columns, scale subresource and CEL rules.

The schemas come from the spec models (`step_runtime.spec`) and the status models
(`pipeline_operator.status`); what pydantic checks in a `model_validator` the API server
cannot see, so each such check is mirrored here as a CEL rule at the same place, with a
message in the same words. `tests/unit/test_operator_crds.py` proves every rule refuses
what the model refuses.
"""
from __future__ import annotations

import typing
from typing import Any

from pipeline_operator.crdgen import CelRule, CRDDefinition, PrinterColumn, build_crd
from pipeline_operator.status import PipelineStepStatus, TrainingSetBuildStatus
from step_runtime.spec.common import API_GROUP, API_VERSION, SpecModel, one_of_message
from step_runtime.spec.pipelinestep import (
    KAFKA_TOPIC,
    PG_IDENTIFIER,
    RESERVED_VOLUME_PREFIX,
    RESERVED_VOLUMES,
    RUNTIME_DIRS,
    PipelineStepSpec,
)
from step_runtime.spec.trainingset import TrainingSetBuildSpec

CATEGORY = "alertops"


def exactly_one(path: str, fields: list[str], what: str) -> CelRule:
    """A rule demanding exactly one of `fields` at `path`, naming them in its message.

    Written as a sum of conditionals, not a list filter: the API server estimates a rule's cost
    times the number of items it may run on, and this form costs a constant.
    """
    checks = " + ".join(f"(has(self.{f}) ? 1 : 0)" for f in fields)
    return CelRule(path=path, rule=f"{checks} == 1", message=one_of_message(what, fields), reason="FieldValueInvalid")


def _nested_models(annotation: Any) -> list[tuple[type[SpecModel], bool]]:
    """The spec models a field holds: (model, in a list)."""
    if isinstance(annotation, type) and issubclass(annotation, SpecModel):
        return [(annotation, False)]
    found = []
    for arg in typing.get_args(annotation):
        many = typing.get_origin(annotation) is list
        found += [(m, many or inner) for m, inner in _nested_models(arg)]
    return found


def one_of_rules(model: type[SpecModel], path: str = "") -> list[CelRule]:
    """An exactly_one rule for every one-of group of `model` and the models inside it, at the
    place of each in the schema: the CEL twin of SpecModel's check, from the same declaration."""
    rules = [exactly_one(path, model.aliases(group), model.NAME) for group in model.ONE_OF]
    for name, field in model.model_fields.items():
        alias = field.alias or name
        for sub, many in _nested_models(field.annotation):
            rules += one_of_rules(sub, f"{path}.{alias}".lstrip(".") + ("[]" if many else ""))
    return rules


def _avro_needs_schema(path: str) -> CelRule:
    return CelRule(path=path, rule="self.format != 'avro' || has(self.schemaPath)",
                   message="format avro needs schemaPath (the .avsc file of the writer schema)",
                   field_path=".schemaPath", reason="FieldValueRequired")


def _schema_sources(path: str) -> list[CelRule]:
    return [
        CelRule(path=path, rule="!(has(self.schemaRegistry) && has(self.schemaDir))",
                message="schemaRegistry and schemaDir: give one of them, not both", reason="FieldValueInvalid"),
        CelRule(path=path, rule="!(has(self.schemaRegistry) || has(self.schemaDir)) || "
                                "self.format == 'ztf-avro' || self.format == 'lsst-avro'",
                message="schemaRegistry and schemaDir resolve alert packets' schema ids: they need format "
                        "ztf-avro or lsst-avro", field_path=".format", reason="FieldValueInvalid"),
    ]


def _file_source(path: str) -> list[CelRule]:
    """A model or catalog given by a uri: s3 settings only for an s3:// uri (path or uri, exactly
    one, is the model's one-of group, from one_of_rules)."""
    return [
        CelRule(path=path, rule="!has(self.s3) || (has(self.uri) && self.uri.startsWith('s3://'))",
                message="s3 sets how an s3:// uri is fetched: it needs uri: s3://bucket/key", field_path=".s3",
                reason="FieldValueInvalid"),
        CelRule(path=f"{path}.s3", rule="has(self.accessKeyId) == has(self.secretAccessKey)",
                message="s3 needs both accessKeyId and secretAccessKey, or neither (anonymous reads)",
                reason="FieldValueInvalid"),
    ]


def _postgres_connection(path: str) -> list[CelRule]:
    return [
        CelRule(path=path, rule="has(self.dsn) != has(self.host)",
                message="postgres needs exactly one of dsn (a Secret key) or host",
                reason="FieldValueInvalid"),
        CelRule(path=path, rule="!has(self.host) || (has(self.database) && has(self.user))",
                message="postgres with host needs database and user", reason="FieldValueRequired"),
    ]


PIPELINESTEP_RULES: tuple[CelRule, ...] = (
    *one_of_rules(PipelineStepSpec),
    _avro_needs_schema("source.kafka"),
    _avro_needs_schema("source.files"),
    *_schema_sources("source.kafka"),
    *_schema_sources("source.files"),
    CelRule(path="source.kafka",
            rule="self.format != 'lsst-avro' || has(self.schemaRegistry) || has(self.schemaDir)",
            message="format lsst-avro on Kafka needs schemaRegistry or schemaDir (Rubin's stream is in the "
                    "Confluent wire format: each message names its schema by id)", reason="FieldValueRequired"),
    *_file_source("processor.model"),
    *_file_source("processor.crossmatch"),
    CelRule(path="volumes[]", rule="!(self.name in " + repr(list(RESERVED_VOLUMES)) + ") && !self.name.startsWith('"
            + RESERVED_VOLUME_PREFIX + "')",
            message="volume name is the operator's own (reserved: " + ", ".join(RESERVED_VOLUMES) + ", "
                    + RESERVED_VOLUME_PREFIX + "*): choose another", field_path=".name", reason="FieldValueInvalid"),
    CelRule(path="volumeMounts[]", rule=" && ".join(
        f"!(self.mountPath == '{d}' || self.mountPath.startsWith('{d}/') || "
        f"'{d}'.startsWith(self.mountPath == '/' ? '/' : self.mountPath + '/'))" for d in RUNTIME_DIRS),
            message="mountPath overlaps " + ", ".join(RUNTIME_DIRS) + ", which the runtime uses itself",
            field_path=".mountPath", reason="FieldValueInvalid"),
    CelRule(path="", rule="!has(self.volumeMounts) || self.volumeMounts.all(m, has(self.volumes) && "
                          "self.volumes.exists(v, v.name == m.name))",
            message="volumeMounts: every name must be a volume of spec.volumes", field_path=".volumeMounts",
            reason="FieldValueInvalid"),
    *_postgres_connection("sinks[].postgres"),
    CelRule(path="sinks[].postgres", rule="self.mode != 'rows' || (has(self.key) && size(self.key) > 0)",
            message="postgres mode rows needs key (the natural-key columns of the upsert)",
            field_path=".key", reason="FieldValueRequired"),
    _avro_needs_schema("sinks[].kafka"),
    CelRule(path="sinks[].kafka", rule="!has(self.schemaId) || self.format == 'avro'",
            message="schemaId frames Avro messages: it needs format avro", field_path=".schemaId",
            reason="FieldValueInvalid"),
    *_postgres_connection("deadLetter.postgres"),
    CelRule(path="retry", rule="self.maxBackoffMs >= self.initialBackoffMs",
            message="maxBackoffMs must be at least initialBackoffMs", field_path=".maxBackoffMs",
            reason="FieldValueInvalid"),
    CelRule(path="", rule="self.sinks.all(a, !has(a.name) || self.sinks.exists_one(b, has(b.name) && b.name == a.name))",
            message="sinks: names must be unique", field_path=".sinks", reason="FieldValueDuplicate"),
)

# Bounds the API server needs to price the CEL rules (it multiplies a rule's cost by the most
# items a list may hold). They are generous; the spec models should carry the same max_length.
PIPELINESTEP_BOUNDS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("sinks", {"maxItems": 16}),
    ("env", {"maxItems": 128}),
    ("source.kafka.topics", {"maxItems": 100}),
    # Lists keyed like a pod's: the API server itself refuses two volumes of one name or two
    # mounts at one path.
    ("volumes", {"maxItems": 32, "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]}),
    ("volumeMounts", {"maxItems": 32, "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["mountPath"]}),
    # Checks the models make in validators (so pydantic's schema does not show them), repeated
    # with the models' own patterns so the API server refuses the same names.
    ("source.kafka.topics[]", {"pattern": KAFKA_TOPIC}),
    ("sinks[].postgres.key[]", {"pattern": PG_IDENTIFIER}),
    ("sinks[].postgres.columns[]", {"pattern": PG_IDENTIFIER}),
)

TRAININGSET_BOUNDS: tuple[tuple[str, dict[str, Any]], ...] = (
    # A list keyed by name: the API server itself refuses two catalogs with the same name.
    ("catalogs", {"maxItems": 64, "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]}),
)

TRAININGSET_RULES: tuple[CelRule, ...] = (
    *one_of_rules(TrainingSetBuildSpec),
    *_file_source("source"),
    *_file_source("catalogs[]"),
    *[CelRule(path=p, rule="!has(self.uri) || !self.uri.startsWith('pvc://')",
              message="a build reads its claim (spec.dataVolumeClaim) at /data: give path: /data/..., not a pvc:// uri",
              field_path=".uri", reason="FieldValueInvalid") for p in ("source", "catalogs[]")],
)

_READY = PrinterColumn("Ready", '.status.conditions[?(@.type=="Ready")].status',
                       description="The Ready condition")
_PHASE = PrinterColumn("Phase", ".status.phase")
_AGE = PrinterColumn("Age", ".metadata.creationTimestamp", type="date")

PIPELINESTEP = CRDDefinition(
    group=API_GROUP, version=API_VERSION, kind="PipelineStep", plural="pipelinesteps",
    singular="pipelinestep", short_names=("pstep",), categories=(CATEGORY,),
    spec_model=PipelineStepSpec, status_model=PipelineStepStatus,
    description="A step of an alert pipeline: Kafka (or files) in, a model, crossmatch, features or "
                "Python function, and PostgreSQL, MongoDB, Kafka or file sinks out. The alertops "
                "operator runs it as a Deployment of `alertops run`.",
    printer_columns=(
        _READY, _PHASE,
        PrinterColumn("Replicas", ".status.replicaSummary", description="Ready/desired replicas"),
        PrinterColumn("Processor", ".status.processor"),
        PrinterColumn("Model", ".status.modelVersion",
                      description="classifierVersion of the model every ready pod runs (several: a rollout)"),
        _AGE,
        PrinterColumn("Message", '.status.conditions[?(@.type=="Ready")].message', priority=1),
    ),
    cel_rules=PIPELINESTEP_RULES,
    schema_overrides=PIPELINESTEP_BOUNDS,
    scale=True,
)

TRAININGSETBUILD = CRDDefinition(
    group=API_GROUP, version=API_VERSION, kind="TrainingSetBuild", plural="trainingsetbuilds",
    singular="trainingsetbuild", short_names=("tsb",), categories=(CATEGORY,),
    spec_model=TrainingSetBuildSpec, status_model=TrainingSetBuildStatus,
    description="A training-set build: crossmatch a table of objects with labeled catalogs and write "
                "the labeled set. The alertops operator runs it as a (partitioned) Job of `alertops build`.",
    printer_columns=(
        _PHASE,
        PrinterColumn("Progress", ".status.progress", description="Completed/total partitions"),
        PrinterColumn("Rows", ".status.rowsOut", type="integer", description="Rows written"),
        _AGE,
        PrinterColumn("Output", ".status.output", priority=1),
    ),
    cel_rules=TRAININGSET_RULES,
    schema_overrides=TRAININGSET_BOUNDS,
)

DEFINITIONS: tuple[CRDDefinition, ...] = (PIPELINESTEP, TRAININGSETBUILD)


def all_crds() -> dict[str, dict[str, Any]]:
    """File name -> CRD manifest, for every kind."""
    return {f"{d.plural}.{d.group}.yaml": build_crd(d) for d in DEFINITIONS}
