"""MongoDB sink: bulk_write of UpdateOne(natural key, $set record, upsert=True)."""
from __future__ import annotations

from typing import Any

from step_runtime.spec.pipelinestep import MongoSink
from step_runtime.step.secrets import secret_value
from step_runtime.step.sinks import SinkUnavailable
from step_runtime.step.sinks.postgres import last_per_key


class MongoSinkWriter:
    """Upserts keyed by the spec's natural key; any driver error is an outage to retry."""

    def __init__(self, name: str, spec: MongoSink, field: str) -> None:
        self.name = name
        self.spec = spec
        self.field = field
        self.uri = secret_value(spec.uri, f"{field}.uri")
        self.client: Any = None

    def open(self) -> None:
        import pymongo
        from pymongo.errors import PyMongoError

        if self.client is not None:
            return
        try:
            client = pymongo.MongoClient(self.uri, serverSelectionTimeoutMS=5000, connectTimeoutMS=5000,
                                         socketTimeoutMS=60000, appname="alertops-step")
            client.admin.command("ping")
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
        ops = [UpdateOne({k: r.get(k) for k in self.spec.key}, {"$set": r}, upsert=True)
               for r in last_per_key(records, list(self.spec.key))]
        try:
            self.client[self.spec.database][self.spec.collection].bulk_write(ops, ordered=False)
        except PyMongoError as exc:
            self.close()
            raise SinkUnavailable(f"{self.name}: MongoDB bulk_write failed: {str(exc)[:500]}") from None

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
        self.client = None
