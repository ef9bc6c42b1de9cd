"""A sink that goes away: PostgreSQL stopped under a running step, then started again.

No commit while it is down, /readyz reports not ready, retries with backoff, and the run
resumes and completes when the server is back, with nothing lost and nothing written twice.
"""
from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest
from step_support import (
    ALERTS,
    N_CLASSES,
    Runtime,
    committed_total,
    create_topic,
    drop_mongo,
    drop_table,
    pg_count,
    pg_rows,
    produce,
    step_manifest,
    unique,
    wait_until,
)

from step_runtime.step.synthetic import synthetic_alerts

pytestmark = pytest.mark.timeout(600)


def pg_ctl(action: str) -> None:
    ctl = os.environ.get("ALERTOPS_POSTGRES_CTL")
    if not ctl:
        pytest.skip("ALERTOPS_POSTGRES_CTL is unset: cannot stop and start the test PostgreSQL")
    subprocess.run([ctl, action], check=True, timeout=120, capture_output=True)


def test_postgres_outage_blocks_commits_then_resumes(tmp_path: Path, kafka_bootstrap: str, postgres_dsn: str,
                                                      mongodb_uri: str) -> None:
    topic, dead, table, db, group = (unique("step-in"), unique("step-dead"), unique("prob"), unique("step"),
                                     unique("grp"))
    create_topic(kafka_bootstrap, topic)
    create_topic(kafka_bootstrap, dead, partitions=1)
    first = list(synthetic_alerts(ALERTS, 60))
    second = list(synthetic_alerts(ALERTS, 90, start=60))
    manifest = step_manifest(tmp_path / "step.yaml", bootstrap=kafka_bootstrap, topic=topic, group=group,
                             table=table, mongo_db=db, dead_topic=dead, batch_size=30, backoff_ms=100)
    rt = Runtime(manifest, postgres_dsn, mongodb_uri, tmp_path / "run.log")
    stopped = False
    try:
        produce(kafka_bootstrap, topic, [(o.encode(), p) for o, _, p in first])
        wait_until(lambda: committed_total(kafka_bootstrap, group, topic) == 60, 120, "first alerts committed")
        assert rt.get("/readyz")[0] == 200

        pg_ctl("stop-server")
        stopped = True
        produce(kafka_bootstrap, topic, [(o.encode(), p) for o, _, p in second])
        wait_until(lambda: rt.get("/readyz")[0] == 503, 60, "/readyz not ready while PostgreSQL is down")
        status, body = rt.get("/readyz")
        assert "pg" in body and "PostgreSQL" in body
        wait_until(lambda: rt.metric("alertops_step_sink_failures_total") >= 3, 60, "several retries")
        assert committed_total(kafka_bootstrap, group, topic) == 60  # nothing committed while down
        assert rt.get("/healthz")[0] == 200  # alive: restarting the pod would not help

        pg_ctl("start-server")
        stopped = False
        wait_until(lambda: committed_total(kafka_bootstrap, group, topic) == 150, 180, "resumed and committed")
        wait_until(lambda: rt.get("/readyz")[0] == 200, 30, "ready again")
        rows = pg_rows(postgres_dsn, table)
        assert len(rows) == 150 * N_CLASSES
        assert {r[0] for r in rows} == {o for o, _, _ in first + second}
        assert '"writing batch failed; retrying"' in rt.logs()
        rt.signal(signal.SIGTERM)
        assert rt.wait(30) == 0
    finally:
        if stopped:
            pg_ctl("start-server")
        rt.stop()
        wait_until(lambda: pg_count(postgres_dsn, table) >= 0, 60, "PostgreSQL answering")
        drop_table(postgres_dsn, table)
        drop_mongo(mongodb_uri, db)
