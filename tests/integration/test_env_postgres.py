"""The test environment's PostgreSQL is a real server that upserts batches.

These tests talk to the server `scripts/testenv up postgres` starts. Each run writes to its own
table (unique name) and drops it afterwards. Connections and statements are bounded by
connect_timeout and statement_timeout.
"""
from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator

import psycopg2
import pytest
from psycopg2.extensions import connection as Connection
from psycopg2.extras import execute_values

CONNECT = {"connect_timeout": 10, "options": "-c statement_timeout=30000"}
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

UPSERT = """
INSERT INTO {table} (oid, classifier, class_name, probability) VALUES %s
ON CONFLICT (oid, classifier) DO UPDATE
  SET class_name = EXCLUDED.class_name, probability = EXCLUDED.probability
RETURNING oid, (xmax = 0) AS inserted
"""


def connect(dsn: str) -> Connection:
    """A new connection to the test database, every call bounded in time."""
    return psycopg2.connect(dsn, **CONNECT)


@pytest.fixture()
def table(postgres_dsn: str) -> Iterator[str]:
    """A fresh table keyed on (oid, classifier), dropped afterwards."""
    name = f"test_upsert_{uuid.uuid4().hex[:12]}"
    run(postgres_dsn, f"""CREATE TABLE {name} (
        oid text NOT NULL, classifier text NOT NULL, class_name text NOT NULL,
        probability double precision NOT NULL, PRIMARY KEY (oid, classifier))""")
    yield name
    run(postgres_dsn, f"DROP TABLE IF EXISTS {name}")


def run(dsn: str, sql: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    """Run one statement in its own committed transaction; the rows it returns, if any."""
    conn = connect(dsn)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(sql, params)
            return cur.fetchall() if cur.description else []
    finally:
        conn.close()


def upsert(dsn: str, table: str, rows: list[tuple[str, str, str, float]]) -> dict[str, bool]:
    """Upsert rows in one execute_values batch; oid -> True when inserted, False when updated."""
    conn = connect(dsn)
    try:
        with conn, conn.cursor() as cur:
            returned = execute_values(cur, UPSERT.format(table=table), rows, page_size=len(rows), fetch=True)
    finally:
        conn.close()
    return {oid: inserted for oid, inserted in returned}


def test_insert_on_conflict_batch_round_trips(postgres_dsn: str, table: str) -> None:
    first = [(f"ZTF{i:08d}", "lc_classifier", "SN", 0.5) for i in range(1000)]
    outcome = upsert(postgres_dsn, table, first)
    assert len(outcome) == 1000 and all(outcome.values())

    # Half the rows again with a new class, plus 500 new ones: 500 updates, 500 inserts.
    second = [(f"ZTF{i:08d}", "lc_classifier", "AGN", 0.9) for i in range(500, 1500)]
    outcome = upsert(postgres_dsn, table, second)
    assert sum(1 for inserted in outcome.values() if not inserted) == 500
    assert sum(1 for inserted in outcome.values() if inserted) == 500

    # Read back on new connections: the batches were committed.
    summary = run(postgres_dsn, f"SELECT class_name, count(*), min(oid), max(oid) FROM {table} GROUP BY 1 ORDER BY 1")
    assert summary == [("AGN", 1000, "ZTF00000500", "ZTF00001499"), ("SN", 500, "ZTF00000000", "ZTF00000499")]
    updated = run(postgres_dsn, f"SELECT class_name, probability FROM {table} WHERE oid = %s", ("ZTF00000700",))
    assert updated == [("AGN", 0.9)]


def test_replaying_a_batch_changes_nothing(postgres_dsn: str, table: str) -> None:
    rows = [(f"ZTF{i:08d}", "stamp_classifier", "bogus", 0.1 * (i % 10)) for i in range(200)]
    upsert(postgres_dsn, table, rows)
    replay = upsert(postgres_dsn, table, rows)
    assert not any(replay.values())
    assert run(postgres_dsn, f"SELECT oid, classifier, class_name, probability FROM {table} ORDER BY oid") == rows


@pytest.fixture()
def postgres_ctl(postgres_dsn: str) -> str:
    """The component script that stops and starts the test server (ALERTOPS_POSTGRES_CTL)."""
    ctl = os.environ.get("ALERTOPS_POSTGRES_CTL", "")
    if not ctl:
        message = "ALERTOPS_POSTGRES_CTL is unset (run `eval \"$(scripts/testenv env)\"`)"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return ctl


def reachable(dsn: str) -> bool:
    """True when a connection can be opened within a few seconds."""
    try:
        psycopg2.connect(dsn, connect_timeout=3).close()
        return True
    except psycopg2.OperationalError:
        return False


def test_server_stops_for_a_while_and_comes_back_with_its_data(postgres_dsn: str, postgres_ctl: str,
                                                               table: str) -> None:
    upsert(postgres_dsn, table, [("ZTF00000001", "lc_classifier", "SN", 0.7)])
    try:
        subprocess.run([postgres_ctl, "stop-server"], check=True, timeout=60, capture_output=True)
        assert not reachable(postgres_dsn)
    finally:
        # start-server returns once the server answers a query
        subprocess.run([postgres_ctl, "start-server"], check=True, timeout=120, capture_output=True)
    assert run(postgres_dsn, f"SELECT class_name FROM {table}") == [("SN",)]
