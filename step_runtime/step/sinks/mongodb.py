"""MongoDB sink: bulk_write of UpdateOne(natural key, $set record, upsert=True)."""
from __future__ import annotations

from typing import Any, Iterator

from step_runtime.spec.pipelinestep import MongoSink
from step_runtime.step.errors import SinkUnavailable
from step_runtime.step.secrets import secret_value
from step_runtime.step.sinks.jsonsafe import json_safe
from step_runtime.step.sinks.postgres import last_per_key

INDEX_NAME = "alertops_natural_key"


def mongo_document(value: Any) -> Any:
    """A copy of `value` with non-finite floats as None (bytes stay bytes: BSON has them).

    An undefined feature is NaN in the runtime; stored as null it reads the same from every client
    (NaN is not JSON), and FerretDB refuses NaN outright.
    """
    return json_safe(value, bytes_as_hex=False)


def chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    """Consecutive slices of at most `size` items."""
    for start in range(0, len(items), size):
        yield items[start:start + size]


class MongoSinkWriter:
    """Upserts keyed by the spec's natural key; any driver error is an outage to retry."""

    def __init__(self, name: str, spec: MongoSink, field: str) -> None:
        self.name = name
        self.spec = spec
        self.field = field
        self.uri = secret_value(spec.uri, f"{field}.uri")
        self.client: Any = None

    def _collection(self) -> Any:
        return self.client[self.spec.database][self.spec.collection]

    def open(self) -> None:
        import pymongo
        from pymongo.errors import PyMongoError

        if self.client is not None:
            return
        try:
            client: Any = pymongo.MongoClient(self.uri, serverSelectionTimeoutMS=5000, connectTimeoutMS=5000,
                                         socketTimeoutMS=60000, appname="alertops-step")
            client.admin.command("ping")
            if self.spec.create_index:
                client[self.spec.database][self.spec.collection].create_index(
                    [(k, pymongo.ASCENDING) for k in self.spec.key], unique=True, name=INDEX_NAME)
        except PyMongoError as exc:
            raise SinkUnavailable(f"{self.name}: cannot reach MongoDB: {exc}") from None
        self.client = client

    def write(self, records: list[dict[str, Any]]) -> None:
        if not records:
            return
        from pymongo import UpdateOne
        from pymongo.errors import PyMongoError

        missing = [k for k in self.spec.key if k not in records[0]]
        if missing:
            raise ValueError(f"{self.field}.key: output records have no field(s) {missing} "
                             f"(fields: {list(records[0])})")
        self.open()
        docs = [mongo_document(r) for r in last_per_key(records, list(self.spec.key))]
        ops = [UpdateOne({k: d.get(k) for k in self.spec.key}, {"$set": d}, upsert=True) for d in docs]
        try:
            # A retried batch re-sends every chunk: upserts make the chunks already written no-ops.
            for part in chunks(ops, self.spec.write_batch_size):
                self._collection().bulk_write(part, ordered=False)
        except PyMongoError as exc:
            self.close()
            raise SinkUnavailable(f"{self.name}: MongoDB bulk_write failed: {str(exc)[:500]}") from None

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
        self.client = None
