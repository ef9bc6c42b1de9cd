"""The test environment's MongoDB-wire server (FerretDB) upserts, enforces unique indexes and sorts.

These tests talk to the server `scripts/testenv up ferretdb` starts, through pymongo. Each test
uses its own database (unique name) and drops it afterwards. Server selection, connecting and
every socket operation are bounded by the client's timeouts.
"""
from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from pymongo import ASCENDING, DESCENDING, MongoClient, UpdateOne
from pymongo.collection import Collection
from pymongo.errors import DuplicateKeyError

TIMEOUTS_MS = {"serverSelectionTimeoutMS": 10_000, "connectTimeoutMS": 10_000, "socketTimeoutMS": 30_000}
# FerretDB v1.24.2 keeps the query of every matched update open until the whole `update` command
# ends, one pooled backend connection each (the test environment sets pool_max_conns=80 on its
# PostgreSQL backend; the default is 50): a command that matches more existing documents than the
# pool holds waits forever for a connection. Writers send chunks.
CHUNK = 50


@pytest.fixture()
def collection(mongodb_uri: str) -> Iterator[Collection]:
    """A collection in a fresh database, dropped afterwards."""
    client: MongoClient = MongoClient(mongodb_uri, **TIMEOUTS_MS)
    db_name = f"alertops_test_{uuid.uuid4().hex[:12]}"
    try:
        yield client[db_name]["objects"]
        client.drop_database(db_name)
    finally:
        client.close()


def upserts(first: int, last: int, class_name: str) -> list[UpdateOne]:
    """One upsert per object id in [first, last), setting its class and magnitude."""
    return [UpdateOne({"_id": f"ZTF{i:08d}"},
                      {"$set": {"class": class_name, "mag": 15.0 + (i * 7 % 100) / 10}},
                      upsert=True)
            for i in range(first, last)]


def bulk_write(collection: Collection, ops: list[UpdateOne]) -> dict[str, int]:
    """bulk_write in chunks of CHUNK operations; the summed upserted/matched/modified counts."""
    total = {"upserted": 0, "matched": 0, "modified": 0}
    for start in range(0, len(ops), CHUNK):
        result = collection.bulk_write(ops[start:start + CHUNK], ordered=True)
        total["upserted"] += result.upserted_count
        total["matched"] += result.matched_count
        total["modified"] += result.modified_count
    return total


def test_bulk_upserts_insert_then_update(collection: Collection) -> None:
    assert bulk_write(collection, upserts(0, 300, "SN")) == {"upserted": 300, "matched": 0, "modified": 0}
    # 100 of these exist (updated), 100 are new (inserted)
    assert bulk_write(collection, upserts(200, 400, "AGN")) == {"upserted": 100, "matched": 100, "modified": 100}

    assert collection.count_documents({}) == 400
    assert collection.count_documents({"class": "AGN"}) == 200
    assert collection.find_one({"_id": "ZTF00000250"})["class"] == "AGN"
    assert collection.find_one({"_id": "ZTF00000199"})["class"] == "SN"


def test_replayed_upserts_change_nothing(collection: Collection) -> None:
    bulk_write(collection, upserts(0, 120, "SN"))
    assert bulk_write(collection, upserts(0, 120, "SN")) == {"upserted": 0, "matched": 120, "modified": 0}
    assert collection.count_documents({}) == 120


def test_unique_index_rejects_a_duplicate(collection: Collection) -> None:
    collection.create_index([("candid", ASCENDING)], unique=True, name="candid_unique")
    collection.insert_one({"_id": "a", "candid": 1234567890123})
    with pytest.raises(DuplicateKeyError):
        collection.insert_one({"_id": "b", "candid": 1234567890123})
    assert collection.count_documents({}) == 1
    assert "candid_unique" in collection.index_information()


def test_find_sorts(collection: Collection) -> None:
    bulk_write(collection, upserts(0, 100, "SN"))
    expected = sorted(((15.0 + (i * 7 % 100) / 10, f"ZTF{i:08d}") for i in range(100)), key=lambda t: (-t[0], t[1]))
    found = [(d["mag"], d["_id"]) for d in collection.find({}, sort=[("mag", DESCENDING), ("_id", ASCENDING)])]
    assert found == expected
    brightest = [d["_id"] for d in collection.find({"mag": {"$lt": 16.0}}, sort=[("mag", ASCENDING)], limit=3)]
    assert brightest == [e[1] for e in sorted(expected, key=lambda t: (t[0], t[1]))[:3]]
