"""The PipelineStep spec: what it accepts, and errors that name the field."""
from __future__ import annotations

from pathlib import Path

import pytest

from step_runtime.spec.common import SpecError, parse_spec, read_manifest
from step_runtime.spec.pipelinestep import KIND, PipelineStepSpec

ROOT = Path(__file__).resolve().parents[2]

BASE = {
    "source": {"kafka": {"bootstrapServers": "kafka:9092", "topics": ["ztf"], "groupId": "g"}},
    "processor": {"features": {}},
    "sinks": [{"mongodb": {"uri": {"name": "mongo", "key": "uri"}, "database": "alerts",
                           "collection": "features", "key": ["oid"]}}],
}


def spec(**over: object) -> dict:
    return {**BASE, **over}


def test_demo_manifest_parses() -> None:
    doc = read_manifest(ROOT / "examples" / "step-demo.yaml", KIND)
    s = parse_spec(PipelineStepSpec, doc["spec"], "step-demo.yaml")
    assert s.processor.kind() == "model" and s.source.files is not None and len(s.sinks) == 2


def test_defaults() -> None:
    s = parse_spec(PipelineStepSpec, spec(), "x")
    assert s.replicas == 1 and s.suspend is False
    assert s.source.kafka.batch_size == 500 and s.source.kafka.format == "ztf-avro"


@pytest.mark.parametrize("processor", [{}, {"features": {}, "python": {"function": "m:f"}}])
def test_exactly_one_processor(processor: dict) -> None:
    with pytest.raises(SpecError, match="spec.processor: .*exactly one of"):
        parse_spec(PipelineStepSpec, spec(processor=processor), "x")


def test_unknown_field_is_named() -> None:
    bad = spec(source={"kafka": {**BASE["source"]["kafka"], "bootstrapServer": "x"}})
    with pytest.raises(SpecError, match=r"spec\.source\.kafka\.bootstrapServer"):
        parse_spec(PipelineStepSpec, bad, "x")


@pytest.mark.parametrize("table", ["a;drop table x", "1abc", "a.b.c", 'a"b'])
def test_postgres_table_is_validated(table: str) -> None:
    sinks = [{"postgres": {"dsn": {"name": "pg", "key": "dsn"}, "table": table, "key": ["oid"]}}]
    with pytest.raises(SpecError, match=r"spec\.sinks\[0\]\.postgres\.table"):
        parse_spec(PipelineStepSpec, spec(sinks=sinks), "x")


def test_bad_sha256_and_negative_replicas() -> None:
    model = {"model": {"path": "m", "sha256": "abc", "classifierName": "c", "classifierVersion": "1"}}
    with pytest.raises(SpecError, match=r"spec\.processor\.model\.sha256"):
        parse_spec(PipelineStepSpec, spec(processor=model), "x")
    with pytest.raises(SpecError, match=r"spec\.replicas"):
        parse_spec(PipelineStepSpec, spec(replicas=-1), "x")


def test_avro_format_needs_a_schema() -> None:
    src = {"kafka": {**BASE["source"]["kafka"], "format": "avro"}}
    with pytest.raises(SpecError, match="schemaPath"):
        parse_spec(PipelineStepSpec, spec(source=src), "x")


def test_secret_refs_lists_every_credential() -> None:
    s = parse_spec(PipelineStepSpec, spec(
        deadLetter={"postgres": {"dsn": {"name": "pg", "key": "dsn"}, "table": "dead"}},
        env=[{"name": "X", "secretKeyRef": {"name": "other", "key": "k"}}]), "x")
    assert [r.env_var_name() for r in s.secret_refs()] == ["ALERTOPS_SECRET_MONGO_URI", "ALERTOPS_SECRET_PG_DSN"]


def test_postgres_rows_mode_needs_a_key() -> None:
    sinks = [{"postgres": {"dsn": {"name": "pg", "key": "dsn"}, "table": "features"}}]
    with pytest.raises(SpecError, match="needs key"):
        parse_spec(PipelineStepSpec, spec(sinks=sinks), "x")


def test_the_manifest_in_the_docs_is_valid() -> None:
    import re

    import yaml

    text = (ROOT / "docs" / "step-runtime.md").read_text()
    block = re.search(r"## A Kafka manifest\n\n```yaml\n(.*?)```", text, re.S)
    assert block is not None
    doc = yaml.safe_load(block.group(1))
    s = parse_spec(PipelineStepSpec, doc["spec"], "docs/step-runtime.md")
    assert s.processor.kind() == "model" and [x.kind() for x in s.sinks] == ["postgres", "mongodb", "kafka"]
    assert "ALERTOPS_SECRET_BROKER_DB_DSN" in [r.env_var_name() for r in s.secret_refs()]


def test_every_one_of_choice_has_a_builder_and_a_cel_rule() -> None:
    """The choices are stated once (the models' fields); builders and CEL rules follow them."""
    from pipeline_operator.crds import PIPELINESTEP_RULES
    from step_runtime.spec.pipelinestep import ProcessorSpec, SinkSpec, SourceSpec
    from step_runtime.step.processors import PROCESSORS
    from step_runtime.step.sinks import SINKS

    assert set(PROCESSORS) == set(ProcessorSpec.ONE_OF[0])
    assert set(SINKS) == set(SinkSpec.ONE_OF[0])
    assert SourceSpec.ONE_OF == (("kafka", "files"),)
    rules = {r.path: r.message for r in PIPELINESTEP_RULES if "needs exactly one of" in r.message}
    assert rules["processor"] == "processor needs exactly one of model, crossmatch, features, python"
    assert rules["sinks[]"] == "sink needs exactly one of postgres, mongodb, kafka, file"
    assert rules["env[]"] == "env needs exactly one of value or secretKeyRef"


def test_consumer_refetches_promptly_and_commits_only_by_hand() -> None:
    """librdkafka's default 1 s fetch backoff stalled a busy step every few batches; a user's
    `config` may still tune it, but never turn auto-commit back on."""
    from step_runtime.step.sources import consumer_config

    kafka = {**BASE["source"]["kafka"], "config": {"fetch.queue.backoff.ms": "5", "enable.auto.commit": "true"}}
    tuned = consumer_config(parse_spec(PipelineStepSpec, spec(source={"kafka": kafka}), "t").source.kafka)
    assert tuned["fetch.queue.backoff.ms"] == "5" and tuned["enable.auto.commit"] is False
    default = consumer_config(parse_spec(PipelineStepSpec, spec(), "t").source.kafka)
    assert default["fetch.queue.backoff.ms"] <= 100 and default["enable.auto.commit"] is False
