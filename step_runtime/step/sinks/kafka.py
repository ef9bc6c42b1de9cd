"""Kafka sink: results produced keyed by object id; the batch counts only once every delivery is confirmed."""
from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from step_runtime.spec.pipelinestep import KafkaSink
from step_runtime.step.avro.framing import confluent_frame
from step_runtime.step.confirmed_producer import ConfirmedProducer
from step_runtime.step.kafka_config import producer_config
from step_runtime.step.sinks.jsonsafe import dumps


class KafkaSinkWriter:
    """Produces each record, then flushes and checks every delivery report."""

    def __init__(self, name: str, spec: KafkaSink, field: str, base_dir: Path) -> None:
        self.name = name
        self.spec = spec
        self.producer = ConfirmedProducer(name, producer_config(spec.bootstrap_servers, spec.auth, field))
        self.schema: Any = None
        if spec.format == "avro":
            import fastavro

            path = Path(spec.schema_path or "")
            self.schema = fastavro.schema.load_schema(str(path if path.is_absolute() else base_dir / path))

    def open(self) -> None:
        self.producer.open()

    def encode(self, record: dict[str, Any]) -> bytes:
        """The message value: strict JSON, or schemaless Avro with the spec's schema, framed in the
        Confluent wire format when the spec states the schema's id."""
        if self.schema is None:
            return dumps(record).encode()
        import fastavro

        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, self.schema, record)
        if self.spec.schema_id is None:
            return buf.getvalue()
        return confluent_frame(self.spec.schema_id, buf.getvalue())

    def write(self, records: list[dict[str, Any]]) -> None:
        def messages() -> Any:
            for rec in records:
                key = rec.get(self.spec.key_field)
                yield (None if key is None else str(key).encode()), self.encode(rec), None

        if records:
            self.producer.send_all(self.spec.topic, messages())

    def close(self) -> None:
        self.producer.close()
