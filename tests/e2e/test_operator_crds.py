"""The API server itself refuses bad manifests, naming the field (CRD schema + CEL rules)."""
from __future__ import annotations

import copy

import pytest
import yaml
from operator_harness import REPO, Kubectl

VALID_STEP = yaml.safe_load("""
apiVersion: alertops.io/v1alpha1
kind: PipelineStep
metadata: {name: valid-step}
spec:
  replicas: 1
  source: {kafka: {bootstrapServers: "kafka:9092", topics: [ztf], groupId: g}}
  processor: {crossmatch: {catalog: /c.parquet, idColumn: id, radiusArcsec: 1.5}}
  sinks:
    - postgres: {dsn: {name: pg, key: dsn}, table: xmatch, key: [oid]}
""")

VALID_BUILD = yaml.safe_load("""
apiVersion: alertops.io/v1alpha1
kind: TrainingSetBuild
metadata: {name: valid-build}
spec:
  source: {path: /data/objects.csv}
  catalogs: [{name: sn, path: /data/sn.csv, labelColumn: type, radiusArcsec: 2}]
  output: {path: out.parquet}
""")


def edit(base: dict, path: str, value, delete: bool = False) -> dict:
    """A copy of `base` with the dotted `path` set to `value` (or deleted)."""
    doc = copy.deepcopy(base)
    node = doc
    parts = path.split(".")
    for p in parts[:-1]:
        node = node[int(p)] if isinstance(node, list) else node[p]
    last = parts[-1]
    if delete:
        del node[last]
    elif isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return doc


# (id, manifest, fragments every one of which the API server's message must contain)
INVALID = [
    ("negative replicas", edit(VALID_STEP, "spec.replicas", -1), ["spec.replicas", "greater than or equal to 0"]),
    ("two processors", edit(VALID_STEP, "spec.processor.features", {}),
     ["spec.processor", "exactly one of model, crossmatch, features, python"]),
    ("no processor", edit(VALID_STEP, "spec.processor", {}),
     ["spec.processor", "exactly one of model, crossmatch, features, python"]),
    ("zero radius", edit(VALID_STEP, "spec.processor.crossmatch.radiusArcsec", 0),
     ["spec.processor.crossmatch.radiusArcsec", "greater than 0"]),
    ("inline password", edit(VALID_STEP, "spec.sinks.0.postgres.dsn", "postgresql://u:secret@db/x"),
     ["spec.sinks[0].postgres.dsn", "object"]),
    ("two sink kinds", edit(VALID_STEP, "spec.sinks.0.file", {"path": "out.parquet"}),
     ["spec.sinks[0]", "exactly one of postgres, mongodb, kafka, file"]),
    ("no sinks", edit(VALID_STEP, "spec.sinks", []), ["spec.sinks", "at least 1"]),
    ("unknown format", edit(VALID_STEP, "spec.source.kafka.format", "protobuf"),
     ["spec.source.kafka.format", "supported values"]),
    ("avro without schema", edit(VALID_STEP, "spec.source.kafka.format", "avro"),
     ["spec.source.kafka.schemaPath", "format avro needs schemaPath"]),
    ("postgres without key", edit(VALID_STEP, "spec.sinks.0.postgres.key", []),
     ["spec.sinks[0].postgres.key", "needs key"]),
    ("postgres dsn and host", edit(VALID_STEP, "spec.sinks.0.postgres.host", "db"),
     ["spec.sinks[0].postgres", "exactly one of dsn"]),
    ("bad table name", edit(VALID_STEP, "spec.sinks.0.postgres.table", "x; drop table y"),
     ["spec.sinks[0].postgres.table", "should match"]),
    ("missing source", edit(VALID_STEP, "spec.source", None, delete=True), ["spec.source", "Required"]),
    ("misspelt field", edit(VALID_STEP, "spec.source.kafka.bootstrapServer", "kafka:9092"),
     ["bootstrapServer"]),
    ("bad secret name", edit(VALID_STEP, "spec.sinks.0.postgres.dsn.name", "Not_A_Name"),
     ["spec.sinks[0].postgres.dsn.name", "should match"]),
    ("bad topic name", edit(VALID_STEP, "spec.source.kafka.topics", ["ztf alerts!"]),
     ["spec.source.kafka.topics[0]", "should match"]),
    ("bad key column", edit(VALID_STEP, "spec.sinks.0.postgres.key", ["oid; drop"]),
     ["spec.sinks[0].postgres.key[0]", "should match"]),
    ("build zero radius", edit(VALID_BUILD, "spec.catalogs.0.radiusArcsec", 0),
     ["spec.catalogs[0].radiusArcsec", "greater than 0"]),
    ("build two labels", edit(VALID_BUILD, "spec.catalogs.0.label", "RRL"),
     ["spec.catalogs[0]", "exactly one of labelColumn or label"]),
    ("build path and query", edit(VALID_BUILD, "spec.source.query", {"dsn": {"name": "pg", "key": "dsn"},
                                                                        "sql": "select 1"}),
     ["spec.source", "exactly one of path, query, uri"]),
    ("build zero parallelism", edit(VALID_BUILD, "spec.parallelism", 0),
     ["spec.parallelism", "greater than or equal to 1"]),
    ("build duplicate catalogs", edit(VALID_BUILD, "spec.catalogs", VALID_BUILD["spec"]["catalogs"] * 2),
     ["spec.catalogs[1]", "Duplicate value"]),
]


def _dry_run(kubectl: Kubectl, namespace: str, doc: dict):
    return kubectl.run("apply", "--dry-run=server", "-n", namespace, "-f", "-", input=yaml.safe_dump(doc),
                       check=False)


def test_valid_manifests_and_examples_are_accepted(kubectl: Kubectl, namespace: str):
    for doc in (VALID_STEP, VALID_BUILD):
        result = _dry_run(kubectl, namespace, doc)
        assert result.returncode == 0, result.stderr
    for path in sorted(REPO.glob("examples/pipelinestep-*.yaml")) + sorted(REPO.glob("examples/trainingsetbuild-*.yaml")):
        result = kubectl.run("apply", "--dry-run=server", "-n", namespace, "-f", str(path), check=False)
        assert result.returncode == 0, f"{path.name}: {result.stderr}"


def test_at_least_ten_invalid_cases():
    assert len(INVALID) >= 10


@pytest.mark.parametrize("doc,fragments", [c[1:] for c in INVALID], ids=[c[0] for c in INVALID])
def test_invalid_manifest_is_refused_naming_the_field(kubectl: Kubectl, namespace: str, doc, fragments):
    result = _dry_run(kubectl, namespace, doc)
    assert result.returncode != 0, f"accepted: {yaml.safe_dump(doc)}"
    for fragment in fragments:
        assert fragment in result.stderr, f"{fragment!r} not in: {result.stderr}"


def test_explain_shows_field_docs(kubectl: Kubectl, crds: None):
    out = kubectl.run("explain", "pipelinestep.spec.processor.crossmatch.radiusArcsec").stdout
    assert "Match radius in arcseconds" in out
