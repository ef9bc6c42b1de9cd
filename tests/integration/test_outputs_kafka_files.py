"""File outputs fed by the real Kafka: each committed batch is on disk, and a restart appends.

With an unbounded source a file output cannot wait for "the end": a batch's lines (JSONL) or
its own Parquet file are written and fsynced before the offsets are committed, and a restarted
step appends to what earlier runs committed instead of truncating it.
"""
from __future__ import annotations

import json
from pathlib import Path

import pyarrow.dataset as ds
import pytest
import yaml
from step_support import ALERTS, committed_total, create_topic, produce, unique

pytestmark = pytest.mark.timeout(300)

PACKETS = sorted(ALERTS.glob("*.avro"))  # 11 real packets: 9 alerts, one corrupt, one prototype
N_OUT, N_DEAD = 9, 2


def _manifest(folder: Path, bootstrap: str, topic: str, group: str) -> Path:
    spec = {"source": {"kafka": {"bootstrapServers": bootstrap, "topics": [topic], "groupId": group,
                                 "format": "ztf-avro", "batchSize": 4, "batchTimeoutMs": 300}},
            "processor": {"features": {}},
            "sinks": [{"name": "lines", "file": {"path": "out/features.jsonl", "format": "jsonl"}},
                      {"name": "table", "file": {"path": "out/features.parquet", "format": "parquet"}}],
            "deadLetter": {"file": {"path": "out/dead.jsonl"}}}
    path = folder / "step.yaml"
    path.write_text(yaml.safe_dump({"apiVersion": "alertops.io/v1alpha1", "kind": "PipelineStep",
                                    "metadata": {"name": "kafka-files"}, "spec": spec}))
    return path


def _run(manifest: Path) -> None:
    import subprocess
    import sys

    res = subprocess.run([sys.executable, "-m", "step_runtime", "run", str(manifest), "--http-port", "0",
                          "--exit-when-idle", "3"], capture_output=True, text=True, timeout=180)
    assert res.returncode == 0, res.stderr


def test_kafka_fed_file_outputs_are_durable_per_batch_and_appended_across_restarts(
        tmp_path: Path, kafka_bootstrap: str) -> None:
    topic, group = unique("files"), unique("files-group")
    create_topic(kafka_bootstrap, topic, partitions=1)
    manifest = _manifest(tmp_path, kafka_bootstrap, topic, group)
    out = tmp_path / "out"
    for run in (1, 2):
        produce(kafka_bootstrap, topic, [(p.name.encode(), p.read_bytes()) for p in PACKETS])
        _run(manifest)
        assert committed_total(kafka_bootstrap, group, topic, partitions=1) == run * len(PACKETS)
        lines = [json.loads(x) for x in (out / "features.jsonl").read_text().splitlines()]
        assert len(lines) == run * N_OUT  # the second run appended; it did not truncate the first
        parts = sorted((out / "features.parquet").glob("part-*.parquet"))
        assert ds.dataset(parts, format="parquet").count_rows() == run * N_OUT
        assert len(parts) >= run * 3  # one file per batch with outputs (11 packets in batches of 4)
        assert not list(out.rglob(".*.tmp"))
        assert len((out / "dead.jsonl").read_text().splitlines()) == run * N_DEAD
    assert [r["candid"] for r in lines[:N_OUT]] == [r["candid"] for r in lines[N_OUT:]]
