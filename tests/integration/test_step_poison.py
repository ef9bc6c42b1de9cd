"""Poison pills and dying decode workers on the real Kafka: no message takes a step down.

A packet of a few hundred bytes whose writer schema declares an array of 2^40 zero-byte items
made the whole-record decode (fastavro) allocate until the worker was OOM-killed, and the step
crash-looped on the uncommitted batch. Decoding is bounded now (every count checked against the
bytes left, at most 1,000,000 items per array), and a decode worker's death only re-decodes its
messages one by one.
"""
from __future__ import annotations

import io
import os
import signal
import textwrap
from pathlib import Path

import fastavro
import pytest
import yaml
from step_support import (
    ALERTS,
    Runtime,
    committed_total,
    consume_all,
    consume_to_end,
    pg_columns,
    produce,
    step_names,
    wait_until,
)

from step_runtime.step.avro.codegen import zigzag
from step_runtime.step.synthetic import synthetic_alerts

pytestmark = pytest.mark.timeout(600)


def poison(items: object, counts: list[int]) -> bytes:
    """An Avro container of one {objectId, prv_candidates: array<items>} whose array blocks claim `counts`."""
    schema = {"type": "record", "name": "alert", "fields": [
        {"name": "objectId", "type": "string"}, {"name": "prv_candidates", "type": {"type": "array", "items": items}}]}
    head = io.BytesIO()
    fastavro.writer(head, fastavro.parse_schema(schema), [])
    header = head.getvalue()
    body = zigzag(3) + b"bad" + b"".join(zigzag(c) for c in counts) + b"\x00"
    return header + zigzag(1) + zigzag(len(body)) + body + header[-16:]


POISON = [(b"nulls", poison("null", [2 ** 40])),
          (b"empty-records", poison({"type": "record", "name": "e", "fields": []}, [2 ** 40])),
          (b"many-blocks", poison("null", list(range(2000, 0, -1))))]


def children(pid: int) -> list[int]:
    """The pids whose parent is `pid` (the step's decode workers)."""
    out = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(proc.name))
            except (OSError, IndexError, ValueError):
                continue
    return out


def python_manifest(path: Path, *, bootstrap: str, topic: str, group: str, table: str, dead_topic: str) -> Path:
    """A step whose python processor gets whole records (the decode the poison pill took down)."""
    (path.parent / "ids.py").write_text(textwrap.dedent("""
        def ids(records, config):
            return [{"candid": r["candid"], "oid": r["objectId"], "cutout_bytes": len(r["cutoutScience"]["stampData"])}
                    for r in records]
        """))
    doc = {"apiVersion": "alertops.io/v1alpha1", "kind": "PipelineStep", "metadata": {"name": "it-poison"},
           "spec": {
               "source": {"kafka": {"bootstrapServers": bootstrap, "topics": [topic], "groupId": group,
                                    "format": "ztf-avro", "batchSize": 40, "batchTimeoutMs": 300, "decodeWorkers": 2}},
               "processor": {"python": {"function": "ids:ids", "path": str(path.parent)}},
               "sinks": [{"name": "pg", "postgres": {"dsn": {"name": "pg", "key": "dsn"}, "table": table,
                                                     "key": ["candid"], "createTable": True}}],
               "deadLetter": {"kafka": {"topic": dead_topic}},
               "retry": {"initialBackoffMs": 100, "maxBackoffMs": 1000}}}
    path.write_text(yaml.safe_dump(doc))
    return path


def pg_candids(dsn: str, table: str) -> set[int]:
    return {r[0] for r in pg_columns(dsn, table, "candid")}


@pytest.fixture
def env(kafka_bootstrap: str, postgres_dsn: str):
    with step_names(kafka_bootstrap, postgres_dsn, prefix="poison") as names_runtimes:
        yield names_runtimes


def test_poison_packets_among_good_ones_are_dead_lettered_and_the_step_goes_on(
        tmp_path: Path, env, kafka_bootstrap: str, postgres_dsn: str, mongodb_uri: str) -> None:
    names, runtimes = env
    good = list(synthetic_alerts(ALERTS, 120))
    messages = [(oid.encode(), pkt) for oid, _, pkt in good]
    for k, pill in enumerate(POISON):  # spread among the good ones, in different batches
        messages.insert(30 * (k + 1), pill)
    produce(kafka_bootstrap, names["topic"], messages)
    manifest = python_manifest(tmp_path / "step.yaml", bootstrap=kafka_bootstrap, topic=names["topic"],
                               group=names["group"], table=names["table"], dead_topic=names["dead_topic"])
    rt = Runtime(manifest, postgres_dsn, mongodb_uri, tmp_path / "run.log")
    runtimes.append(rt)
    wait_until(lambda: committed_total(kafka_bootstrap, names["group"], names["topic"]) == len(messages), 240,
               "every message committed")
    assert pg_candids(postgres_dsn, names["table"]) == {candid for _, candid, _ in good}
    dead = consume_all(kafka_bootstrap, names["dead_topic"], len(POISON))
    errors = {m.key(): dict(m.headers())["alertops.error"].decode() for m in dead}
    assert set(errors) == {k for k, _ in POISON}
    assert "block of 1099511627776 items but only" in errors[b"nulls"]
    assert "block of 1099511627776 items but only" in errors[b"empty-records"]
    assert "more than 1,000,000 items" in errors[b"many-blocks"]
    assert rt.proc.poll() is None


def test_kill_9_of_the_decode_workers_loses_nothing_and_the_step_goes_on(
        tmp_path: Path, env, kafka_bootstrap: str, postgres_dsn: str, mongodb_uri: str) -> None:
    names, runtimes = env
    good = list(synthetic_alerts(ALERTS, 600))
    produce(kafka_bootstrap, names["topic"], [(oid.encode(), pkt) for oid, _, pkt in good])
    manifest = python_manifest(tmp_path / "step.yaml", bootstrap=kafka_bootstrap, topic=names["topic"],
                               group=names["group"], table=names["table"], dead_topic=names["dead_topic"])
    rt = Runtime(manifest, postgres_dsn, mongodb_uri, tmp_path / "run.log")
    runtimes.append(rt)
    wait_until(lambda: committed_total(kafka_bootstrap, names["group"], names["topic"]) > 0, 120, "a first commit")
    workers = wait_until(lambda: children(rt.proc.pid), 30, "the decode workers")
    for pid in workers:
        os.kill(pid, signal.SIGKILL)
    wait_until(lambda: committed_total(kafka_bootstrap, names["group"], names["topic"]) == len(good), 240,
               "every message committed after the workers died")
    assert pg_candids(postgres_dsn, names["table"]) == {candid for _, candid, _ in good}
    assert consume_to_end(kafka_bootstrap, names["dead_topic"]) == []
    assert rt.proc.poll() is None
    assert not set(children(rt.proc.pid)) & set(workers)  # fresh workers took over
