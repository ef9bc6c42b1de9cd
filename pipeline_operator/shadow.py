"""Shadow steps, as pure functions: may this step run beside the step it shadows?

A shadow (`spec.shadowOf: <step>`) reads the same topic as the step it shadows, with its own
consumer group, and writes a new model's results beside the old ones. It must never write
where that step writes: its rows would overwrite or duplicate the production results. The
ALeRCE `probability` key holds the classifier version, so two versions share a table without
colliding; a Kafka topic, a MongoDB collection (whose key may not hold the version) or a file
cannot be shared, and neither can a consumer group (the two would split the partitions).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pipeline_operator.conditions import Verdict
from step_runtime.spec.common import SpecError
from step_runtime.spec.pipelinestep import PipelineStepSpec


@dataclass(frozen=True)
class Footprint:
    """What the shadow check needs of a step: whom it shadows, its consumer group, its
    classifier, and where it writes. Small, so the operator keeps one per rendered step
    instead of the spec model."""

    shadow_of: str | None
    group_id: str | None
    classifier: tuple[str, str] | None
    # where it writes -> how a message names it; PostgreSQL tables are keyed by table only:
    # whether a shared table is a conflict depends on the rows (see `shadow_conflicts`)
    writes: dict[tuple[str, ...], str] = field(default_factory=dict)
    # tables whose every row carries the classifier version in its key
    versioned_tables: frozenset[str] = frozenset()


def footprint(spec: PipelineStepSpec) -> Footprint:
    """The shadow-relevant facts of a step's spec."""
    model = spec.processor.model
    classifier = (model.classifier_name, model.classifier_version) if model is not None else None
    writes: dict[tuple[str, ...], str] = {}
    tables: set[str] = set()
    unversioned: set[str] = set()
    for i, sink in enumerate(spec.sinks):
        where = f"spec.sinks[{i}]"
        if sink.kafka is not None:
            writes[("kafka", sink.kafka.topic)] = f"{where}: Kafka topic {sink.kafka.topic}"
        elif sink.mongodb is not None:
            m = sink.mongodb
            writes[("mongodb", m.database, m.collection)] = f"{where}: MongoDB collection {m.database}.{m.collection}"
        elif sink.file is not None:
            writes[("file", sink.file.path)] = f"{where}: file {sink.file.path}"
        elif sink.postgres is not None:
            p = sink.postgres
            writes[("postgres", p.table)] = f"{where}: PostgreSQL table {p.table}"
            tables.add(p.table)
            if p.mode == "rows" and "classifier_version" not in p.key:
                unversioned.add(p.table)
    dl = spec.dead_letter
    if dl is not None:
        if dl.kafka is not None:
            writes[("kafka", dl.kafka.topic)] = f"spec.deadLetter: Kafka topic {dl.kafka.topic}"
        elif dl.postgres is not None:
            writes[("postgres-dead-letter", dl.postgres.table)] = f"spec.deadLetter: PostgreSQL table {dl.postgres.table}"
        elif dl.file is not None:
            writes[("file", dl.file.path)] = f"spec.deadLetter: file {dl.file.path}"
    kafka = spec.source.kafka
    return Footprint(shadow_of=spec.shadow_of, group_id=kafka.group_id if kafka is not None else None,
                     classifier=classifier, writes=writes,
                     versioned_tables=frozenset(tables - unversioned) if classifier is not None else frozenset())


def shadow_conflicts(shadow: Footprint, original: Footprint, original_name: str) -> list[str]:
    """Why `shadow` may not run beside `original` (empty: it may)."""
    problems: list[str] = []
    if shadow.group_id is not None and shadow.group_id == original.group_id:
        problems.append(f"spec.source.kafka.groupId {shadow.group_id!r} is {original_name}'s: the two would split "
                        f"the partitions; give the shadow a consumer group of its own")
    for key, mine in shadow.writes.items():
        if key not in original.writes:
            continue
        if key[0] == "postgres":
            mine_c, theirs_c = shadow.classifier, original.classifier
            if mine_c != theirs_c and key[1] in shadow.versioned_tables and key[1] in original.versioned_tables:
                continue  # rows keyed by classifier version: the two versions never collide
            why = (f"both write classifier {mine_c[0]} {mine_c[1]}" if mine_c is not None and mine_c == theirs_c
                   else "its rows are not keyed by classifier_version")
            problems.append(f"{mine} is also written by {original_name} ({why})")
        else:
            problems.append(f"{mine} is also written by {original_name}")
    return problems


def shadow_refusal(resource: dict[str, Any], mine: Footprint,
                   original: Footprint | SpecError | None) -> Verdict | None:
    """A Stalled verdict when a shadow may not run (None when it may, or when it is no shadow).

    `original` is the footprint of the PipelineStep named by spec.shadowOf as the operator last
    saw it: None when there is none, the SpecError when its spec is invalid.
    """
    if mine.shadow_of is None:
        return None
    meta = resource.get("metadata") or {}
    namespace = meta.get("namespace", "default")
    if mine.shadow_of == meta.get("name"):
        return Verdict("stalled", "InvalidShadow", "spec.shadowOf names this step itself; name the step it shadows")
    target = f"PipelineStep {namespace}/{mine.shadow_of}"
    if original is None:
        return Verdict("stalled", "ShadowTargetMissing",
                       f"spec.shadowOf: {target} does not exist; a shadow is started only once the operator has "
                       f"checked that it writes nowhere that step writes (create it, or fix the name)")
    if isinstance(original, SpecError):
        return Verdict("stalled", "ShadowTargetInvalid", f"spec.shadowOf: cannot check against {target}: {original}")
    problems = shadow_conflicts(mine, original, mine.shadow_of)
    if problems:
        return Verdict("stalled", "ShadowConflict",
                       f"refusing to run a shadow of {target} that writes where it writes: " + "; ".join(problems)
                       + "; give the shadow its own topics, collections and consumer group")
    return None
