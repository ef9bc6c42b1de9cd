"""Shadow steps, as pure functions: may this step run beside the step it shadows?

A shadow (`spec.shadowOf: <step>`) reads the same topic as the step it shadows, with its own
consumer group, and writes a new model's results beside the old ones. It must never write
where that step writes: its rows would overwrite or duplicate the production results. The
ALeRCE `probability` key holds the classifier version, so two versions share a table without
colliding; a Kafka topic, a MongoDB collection (whose key may not hold the version) or a file
cannot be shared, and neither can a consumer group (the two would split the partitions).
"""
from __future__ import annotations

from typing import Any

from pipeline_operator.conditions import Verdict
from step_runtime.spec.common import SpecError, parse_spec
from step_runtime.spec.pipelinestep import PipelineStepSpec


def _classifier(spec: PipelineStepSpec) -> tuple[str, str] | None:
    model = spec.processor.model
    return (model.classifier_name, model.classifier_version) if model is not None else None


def _writes(spec: PipelineStepSpec) -> dict[tuple[str, ...], str]:
    """Where a step writes -> how a message names it. PostgreSQL tables are keyed by table only;
    whether a shared table is a conflict depends on the rows (see `shadow_conflicts`)."""
    out: dict[tuple[str, ...], str] = {}
    for i, sink in enumerate(spec.sinks):
        where = f"spec.sinks[{i}]"
        if sink.kafka is not None:
            out[("kafka", sink.kafka.topic)] = f"{where}: Kafka topic {sink.kafka.topic}"
        elif sink.mongodb is not None:
            m = sink.mongodb
            out[("mongodb", m.database, m.collection)] = f"{where}: MongoDB collection {m.database}.{m.collection}"
        elif sink.file is not None:
            out[("file", sink.file.path)] = f"{where}: file {sink.file.path}"
        elif sink.postgres is not None:
            p = sink.postgres
            out[("postgres", p.table)] = f"{where}: PostgreSQL table {p.table}"
    dl = spec.dead_letter
    if dl is not None:
        if dl.kafka is not None:
            out[("kafka", dl.kafka.topic)] = f"spec.deadLetter: Kafka topic {dl.kafka.topic}"
        elif dl.postgres is not None:
            out[("postgres-dead-letter", dl.postgres.table)] = f"spec.deadLetter: PostgreSQL table {dl.postgres.table}"
        elif dl.file is not None:
            out[("file", dl.file.path)] = f"spec.deadLetter: file {dl.file.path}"
    return out


def _versioned_rows(spec: PipelineStepSpec, table: str) -> bool:
    """True when every row the step writes to `table` carries its classifier version in the key."""
    for sink in spec.sinks:
        p = sink.postgres
        if p is not None and p.table == table:
            if p.mode == "rows" and "classifier_version" not in p.key:
                return False
    return _classifier(spec) is not None


def shadow_conflicts(shadow: PipelineStepSpec, original: PipelineStepSpec, original_name: str) -> list[str]:
    """Why `shadow` may not run beside `original` (empty: it may)."""
    problems: list[str] = []
    s_kafka, o_kafka = shadow.source.kafka, original.source.kafka
    if s_kafka is not None and o_kafka is not None and s_kafka.group_id == o_kafka.group_id:
        problems.append(f"spec.source.kafka.groupId {s_kafka.group_id!r} is {original_name}'s: the two would split "
                        f"the partitions; give the shadow a consumer group of its own")
    theirs = _writes(original)
    for key, mine in _writes(shadow).items():
        if key not in theirs:
            continue
        if key[0] == "postgres":
            mine_c, theirs_c = _classifier(shadow), _classifier(original)
            if mine_c != theirs_c and _versioned_rows(shadow, key[1]) and _versioned_rows(original, key[1]):
                continue  # rows keyed by classifier version: the two versions never collide
            why = (f"both write classifier {mine_c[0]} {mine_c[1]}" if mine_c is not None and mine_c == theirs_c
                   else "its rows are not keyed by classifier_version")
            problems.append(f"{mine} is also written by {original_name} ({why})")
        else:
            problems.append(f"{mine} is also written by {original_name}")
    return problems


def shadow_refusal(resource: dict[str, Any], spec: PipelineStepSpec, original: dict[str, Any] | None) -> Verdict | None:
    """A Stalled verdict when a shadow may not run (None when it may, or when it is no shadow).

    `original` is the PipelineStep named by spec.shadowOf as the operator last saw it (None
    when there is none).
    """
    if spec.shadow_of is None:
        return None
    meta = resource.get("metadata") or {}
    namespace = meta.get("namespace", "default")
    if spec.shadow_of == meta.get("name"):
        return Verdict("stalled", "InvalidShadow", "spec.shadowOf names this step itself; name the step it shadows")
    target = f"PipelineStep {namespace}/{spec.shadow_of}"
    if original is None:
        return Verdict("stalled", "ShadowTargetMissing",
                       f"spec.shadowOf: {target} does not exist; a shadow is started only once the operator has "
                       f"checked that it writes nowhere that step writes (create it, or fix the name)")
    try:
        theirs = parse_spec(PipelineStepSpec, original.get("spec") or {}, target)
    except SpecError as err:
        return Verdict("stalled", "ShadowTargetInvalid", f"spec.shadowOf: cannot check against {target}: {err}")
    problems = shadow_conflicts(spec, theirs, spec.shadow_of)
    if problems:
        return Verdict("stalled", "ShadowConflict",
                       f"refusing to run a shadow of {target} that writes where it writes: " + "; ".join(problems)
                       + "; give the shadow its own topics, collections and consumer group")
    return None
