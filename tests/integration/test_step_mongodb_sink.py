"""The MongoDB sink against the real MongoDB-wire server: replays, NaN, the natural-key index."""
from __future__ import annotations

import math
import uuid

import pymongo
import pytest
from pymongo.errors import DuplicateKeyError

from step_runtime.spec.common import SecretKeyRef
from step_runtime.spec.pipelinestep import MongoSink
from step_runtime.step.sinks.mongodb import INDEX_NAME, MongoSinkWriter


@pytest.fixture()
def database(mongodb_uri: str, monkeypatch: pytest.MonkeyPatch):
    ref = SecretKeyRef(name="mongo", key="uri")
    monkeypatch.setenv(ref.env_var_name(), mongodb_uri)
    name = f"sinktest_{uuid.uuid4().hex[:10]}"
    client = pymongo.MongoClient(mongodb_uri, serverSelectionTimeoutMS=5000, socketTimeoutMS=60000)
    yield ref, client[name]
    client.drop_database(name)
    client.close()


def records(n: int, version: str) -> list[dict]:
    return [{"oid": f"ZTF{i:08d}", "class_name": "RRL", "probability": 0.5 if i % 2 else math.nan,
             "version": version} for i in range(n)]


def test_replayed_batch_of_more_than_a_hundred_updates_changes_nothing(database) -> None:
    ref, db = database
    spec = MongoSink(uri=ref, database=db.name, collection="probs", key=["oid", "class_name"])
    writer = MongoSinkWriter("mongo", spec, "spec.sinks[0].mongodb")
    try:
        writer.write(records(150, "v1"))
        first = sorted(db.probs.find({}, {"_id": 0}), key=lambda d: d["oid"])
        # 150 updates of existing documents in one command would hang FerretDB 1.x: chunks must not.
        writer.write(records(150, "v1"))
        again = sorted(db.probs.find({}, {"_id": 0}), key=lambda d: d["oid"])
        writer.write(records(150, "v2"))
    finally:
        writer.close()
    assert len(first) == 150 and again == first
    assert db.probs.count_documents({"version": "v2"}) == 150
    assert db.probs.count_documents({}) == 150
    assert first[0]["probability"] is None and first[1]["probability"] == 0.5


def test_the_natural_key_index_refuses_a_duplicate(database) -> None:
    ref, db = database
    spec = MongoSink(uri=ref, database=db.name, collection="feats", key=["oid"])
    writer = MongoSinkWriter("mongo", spec, "spec.sinks[0].mongodb")
    try:
        writer.write([{"oid": "ZTF1", "n": 1}])
    finally:
        writer.close()
    index = db.feats.index_information()[INDEX_NAME]
    assert index["key"] == [("oid", 1)] and index.get("unique") is True
    with pytest.raises(DuplicateKeyError):
        db.feats.insert_one({"oid": "ZTF1", "n": 2})
