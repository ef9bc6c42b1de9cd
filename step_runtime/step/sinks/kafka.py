"""Kafka sink: results produced keyed by object id; the batch counts only once every delivery is confirmed."""
from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from step_runtime.spec.pipelinestep import KafkaSink
from step_runtime.step.kafka_config import producer_config
from step_runtime.step.sinks import SinkUnavailable
from step_runtime.step.sinks.jsonsafe import dumps

FLUSH_TIMEOUT_S = 30.0


class KafkaSinkWriter:
    """Produces each record, then flushes and checks every delivery report."""

    def __init__(self, name: str, spec: KafkaSink, field: str, base_dir: Path) -> None:
        self.name = name
        self.spec = spec
        self.config = producer_config(spec.bootstrap_servers, spec.auth, field)
        self.producer: Any = None
        self.schema: Any = None
        if spec.format == "avro":
            import fastavro

            path = Path(spec.schema_path or "")
            self.schema = fastavro.schema.load_schema(str(path if path.is_absolute() else base_dir / path))

    def open(self) -> None:
        from confluent_kafka import Producer

        if self.producer is None:
            self.producer = Producer(self.config)
        try:
            self.producer.list_topics(timeout=5)
        except Exception as exc:  # noqa: BLE001
            raise SinkUnavailable(f"{self.name}: cannot reach Kafka: {exc}") from None

    def encode(self, record: dict[str, Any]) -> bytes:
        """The message value: strict JSON, or schemaless Avro with the spec's schema."""
        if self.schema is None:
            return dumps(record).encode()
        import fastavro

        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, self.schema, record)
        return buf.getvalue()

    def write(self, records: list[dict[str, Any]]) -> None:
        if not records:
            return
        if self.producer is None:
            self.open()
        errors: list[str] = []

        def delivered(err: Any, _msg: Any) -> None:
            if err is not None:
                errors.append(str(err))

        for rec in records:
            key = rec.get(self.spec.key_field)
            value = self.encode(rec)
            while True:
                try:
                    self.producer.produce(self.spec.topic, value=value,
                                          key=None if key is None else str(key).encode(), on_delivery=delivered)
                    break
                except BufferError:  # local queue full: let deliveries drain
                    self.producer.poll(0.5)
        remaining = self.producer.flush(FLUSH_TIMEOUT_S)
        if remaining or errors:
            raise SinkUnavailable(f"{self.name}: {remaining} deliveries unconfirmed, "
                                  f"{len(errors)} failed to topic {self.spec.topic}: {errors[:3]}")

    def close(self) -> None:
        if self.producer is not None:
            self.producer.flush(5)
        self.producer = None
