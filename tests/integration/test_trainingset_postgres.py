"""A training set read from and written to the real PostgreSQL of the test environment."""
from __future__ import annotations

import uuid
from pathlib import Path

import pandas as pd
import psycopg2
import pytest
import yaml
from psycopg2 import sql

from step_runtime.cli import main
from step_runtime.spec.trainingset import TableSpec
from step_runtime.trainingset.tables import read_table

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data" / "trainingset"
SECRET_ENV = "ALERTOPS_SECRET_TRAINING_DB_DSN"


@pytest.fixture()
def schema(postgres_dsn: str):
    """A fresh schema holding the Stripe-82 RR Lyrae (Sesar+2010 table 3) as a table; dropped afterwards."""
    name = f"ts_{uuid.uuid4().hex[:10]}"
    rrl = read_table(TableSpec(path=str(DATA / "table3.dat.gz")), DATA, {"id": "a", "ra": "b", "dec": "c", "d": "e"})[0]
    rrl = rrl.to_pandas()
    conn = psycopg2.connect(postgres_dsn, connect_timeout=10)
    try:
        with conn, conn.cursor() as cur:
            cur.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name)))
            cur.execute(sql.SQL("CREATE TABLE {}.rrlyr (id bigint PRIMARY KEY, ra double precision, "
                                "dec double precision, dist_kpc double precision)").format(sql.Identifier(name)))
            cur.executemany(sql.SQL("INSERT INTO {}.rrlyr VALUES (%s, %s, %s, %s)").format(sql.Identifier(name)),
                            [(int(r.id), float(r.ra), float(r.dec), float(r.d)) for r in rrl.itertuples()])
        yield name
    finally:
        with conn, conn.cursor() as cur:
            cur.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))
        conn.close()


def _linear_targets(label: str) -> dict:
    # 121 of the 483 Stripe-82 RR Lyrae are LINEAR periodic-variable candidates (SOURCES note, at 2").
    return {"name": "linear", "path": str(DATA / "allLINEARfinal_targets.dat.gz"), "idColumn": "objectID",
            "raColumn": "raSDSS", "decColumn": "decSDSS", "label": label, "radiusArcsec": 2.0}


def _spec(source: dict, output: dict, policy: str = "priority") -> dict:
    return {
        "source": source,
        "catalogs": [_linear_targets("periodic")],
        "combine": {"policy": policy, "keepUnlabeled": True},
        "output": output,
    }


def _run(tmp_path: Path, spec: dict, name: str) -> int:
    manifest = tmp_path / f"{name}.yaml"
    manifest.write_text(yaml.safe_dump({"apiVersion": "alertops.io/v1alpha1", "kind": "TrainingSetBuild",
                                        "metadata": {"name": name}, "spec": spec}))
    return main(["build", str(manifest), "--output-dir", str(tmp_path / "out")])


def _table(dsn: str, schema: str, table: str) -> pd.DataFrame:
    conn = psycopg2.connect(dsn, connect_timeout=10)
    try:
        with conn.cursor() as cur:
            cur.execute(sql.SQL("SELECT * FROM {}.{} ORDER BY id").format(sql.Identifier(schema), sql.Identifier(table)))
            return pd.DataFrame(cur.fetchall(), columns=[d.name for d in cur.description])
    finally:
        conn.close()


def test_query_source_and_upsert_output_match_the_file_build(tmp_path, monkeypatch, postgres_dsn, schema):
    monkeypatch.setenv(SECRET_ENV, postgres_dsn)
    dsn_ref = {"name": "training-db", "key": "dsn"}
    query = {"dsn": dsn_ref, "sql": f'SELECT id, ra, dec, dist_kpc AS "dist ""kpc""" FROM {schema}.rrlyr'}
    pg_out = {"path": "from_pg.parquet",
              "postgres": {"dsn": dsn_ref, "schema": schema, "table": "training_set"}}
    assert _run(tmp_path, _spec({"query": query, "idColumn": "id", "carry": ['dist "kpc"']}, pg_out), "pg") == 0

    file_spec = _spec({"path": str(DATA / "table3.dat.gz"), "idColumn": "id"}, {"path": "from_file.parquet"})
    assert _run(tmp_path, file_spec, "file") == 0
    from_file = pd.read_parquet(tmp_path / "out" / "from_file.parquet")
    from_pg = pd.read_parquet(tmp_path / "out" / "from_pg.parquet")
    assert len(from_pg) == 483
    cols = ["id", "label", "label_catalog_id", "n_catalogs", "linear_n_within"]
    pd.testing.assert_frame_equal(from_pg[cols], from_file[cols], check_dtype=False)
    pd.testing.assert_series_equal(from_pg["separation_arcsec"], from_file["separation_arcsec"], atol=1e-9)

    stored = _table(postgres_dsn, schema, "training_set")
    assert len(stored) == 483
    assert stored["id"].tolist() == sorted(from_pg["id"].tolist())
    merged = stored.set_index("id").merge(from_pg.set_index("id"), left_index=True, right_index=True,
                                          suffixes=("", "_file"))
    assert (merged["label"].fillna("-") == merged["label_file"].fillna("-")).all()
    assert stored['dist "kpc"'].notna().all()  # an odd identifier survives quoting
    assert int(stored["label"].notna().sum()) == int(from_file["label"].notna().sum()) == 121


def test_upsert_is_idempotent_and_updates_rows(tmp_path, monkeypatch, postgres_dsn, schema):
    monkeypatch.setenv(SECRET_ENV, postgres_dsn)
    dsn_ref = {"name": "training-db", "key": "dsn"}
    source = {"query": {"dsn": dsn_ref, "sql": f"SELECT id, ra, dec FROM {schema}.rrlyr"}, "idColumn": "id"}
    out = {"path": "ts.parquet", "postgres": {"dsn": dsn_ref, "schema": schema, "table": "ts"}}
    assert _run(tmp_path, _spec(source, out), "first") == 0
    first = _table(postgres_dsn, schema, "ts")
    assert _run(tmp_path, _spec(source, out), "again") == 0
    again = _table(postgres_dsn, schema, "ts")
    pd.testing.assert_frame_equal(first, again)
    assert (first["label"] == "periodic").sum() == 121
    # Label the matches "RRL" instead: the same keys, every label updated in place.
    constant = _spec(source, out)
    constant["catalogs"] = [_linear_targets("RRL")]
    assert _run(tmp_path, constant, "update") == 0
    updated = _table(postgres_dsn, schema, "ts")
    assert len(updated) == len(first)
    matched = updated["n_catalogs"] > 0
    assert matched.sum() == 121 and (updated.loc[matched, "label"] == "RRL").all()


def test_bad_query_is_a_user_error(tmp_path, monkeypatch, postgres_dsn, schema, capsys):
    monkeypatch.setenv(SECRET_ENV, postgres_dsn)
    source = {"query": {"dsn": {"name": "training-db", "key": "dsn"}, "sql": f"SELECT id, ra FROM {schema}.nope"}}
    assert _run(tmp_path, _spec(source, {"path": "x.parquet"}), "bad") == 2
    err = capsys.readouterr().err
    assert "PostgreSQL query (secret training-db/dsn): query failed" in err and "nope" in err


def test_unreachable_database_is_a_runtime_failure(tmp_path, monkeypatch, capsys, postgres_dsn):
    monkeypatch.setenv(SECRET_ENV, "postgresql://alertops:alertops@127.0.0.1:1/alertops")
    source = {"query": {"dsn": {"name": "training-db", "key": "dsn"}, "sql": "SELECT 1 AS ra, 2 AS dec",
                        "timeoutSeconds": 5}}
    assert _run(tmp_path, _spec(source, {"path": "x.parquet"}), "down") == 1
    assert "cannot connect" in capsys.readouterr().err


def test_upsert_round_trips_awkward_values(postgres_dsn, schema):
    from step_runtime.spec.trainingset import PostgresOutput
    from step_runtime.trainingset.writers import upsert_postgres

    frame = pd.DataFrame({
        "id": ["a", "b,c", 'd"e'],
        "ra": [0.1, 359.999999999999, 1e-12],
        "label": ["RR Lyr, ab", None, "δ Sct\nline two"],
        "conflict": [True, False, True],
        "cat_id": pd.array([1, None, 3], dtype="Int64"),
        "sep": [0.5, float("nan"), 1.25],
    })
    target = PostgresOutput.model_validate({"dsn": {"name": "x", "key": "y"}, "schema": schema, "table": "awkward"})
    import pyarrow as pa

    # The builder hands Arrow tables to the writer (NaN becomes null, as in its outputs).
    assert upsert_postgres(pa.Table.from_pandas(frame, preserve_index=False), target, postgres_dsn) == 3
    stored = _table(postgres_dsn, schema, "awkward").set_index("id").loc[["a", "b,c", 'd"e']]
    assert stored["ra"].tolist() == [0.1, 359.999999999999, 1e-12]  # floats round-trip exactly
    assert stored["label"].tolist()[0::2] == ["RR Lyr, ab", "δ Sct\nline two"]
    assert stored["label"].isna().tolist() == [False, True, False]  # NULL, not an empty string
    assert stored["conflict"].tolist() == [True, False, True]
    assert stored["cat_id"].tolist()[0] == 1 and stored["cat_id"].isna().tolist() == [False, True, False]
    assert stored["sep"].isna().tolist() == [False, True, False]
