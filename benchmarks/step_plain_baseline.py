"""The Rubin/LSST benchmark's peer: a plain Kafka step doing alertops' work with a full fastavro decode.

    ~/.cache/alertops/venv/bin/python benchmarks/step_plain_baseline.py CONFIG.json

What a broker engineer writes first: one process, a confluent-kafka consumer polling batches of
`batch_size`, each message decoded whole by fastavro (its schema found by the Confluent schema id
in the same schema folder, parsed once per id), mapped to the alert model (alert_model.canonical),
validated, then the same features and pinned model (ModelStep) and the same PostgreSQL upserts
(PostgresSinkWriter) as the alertops step, and a synchronous commit. No decode workers, no
pipelining: only the decoding and the loop differ from alertops. Exits after 5 s without messages.
One JSON line per batch on stdout: {"poll_start": t, "committed": t, "n": messages}.
"""
from __future__ import annotations

import io
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import fastavro  # noqa: E402
from confluent_kafka import Consumer  # noqa: E402

from step_runtime.spec.pipelinestep import ModelProcessor, PostgresSink  # noqa: E402
from step_runtime.step import alert_model  # noqa: E402
from step_runtime.step.avro.schemas import SchemaDirectory  # noqa: E402
from step_runtime.step.features import READS  # noqa: E402
from step_runtime.step.processors import ModelStep  # noqa: E402
from step_runtime.step.sinks.postgres import PostgresSinkWriter  # noqa: E402
from step_runtime.step.validate import VALIDATED_FIELDS, ValidationError, validate_alert  # noqa: E402


def main() -> int:
    cfg = json.loads(Path(sys.argv[1]).read_text())
    survey = alert_model.LSST
    schemas = SchemaDirectory(Path(cfg["schema_dir"]))
    parsed: dict[int, tuple[object, object]] = {}  # id -> (fastavro schema, projection)
    model = ModelStep(ModelProcessor(path=cfg["model"], sha256=cfg["sha256"], classifier_name="demo",
                                     classifier_version="0.1.0"), ROOT, survey)
    pg = PostgresSinkWriter("pg", PostgresSink(dsn={"name": "pg", "key": "dsn"}, table=cfg["table"],
                                               mode="probability", create_table=True), "pg", "lsst")
    pg.open()
    consumer = Consumer({"bootstrap.servers": cfg["bootstrap"], "group.id": cfg["group"],
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([cfg["topic"]])
    idle_since = time.monotonic()
    try:
        while time.monotonic() - idle_since < 5.0:
            poll_start = time.monotonic()
            msgs = [m for m in consumer.consume(num_messages=cfg["batch_size"], timeout=1.0) if m.error() is None]
            if not msgs:
                continue
            alerts = []
            for m in msgs:
                value = m.value()
                schema_id = int.from_bytes(value[1:5], "big")
                if schema_id not in parsed:
                    schema = fastavro.parse_schema(json.loads(schemas.fetch(schema_id)))
                    parsed[schema_id] = (schema, alert_model.plan(survey, READS | VALIDATED_FIELDS, schema))
                schema, projection = parsed[schema_id]
                record = fastavro.schemaless_reader(io.BytesIO(value[5:]), schema, None)
                alert = alert_model.canonical(record, survey, projection)
                try:
                    validate_alert(alert, survey)
                except ValidationError:
                    continue
                if not alert["solarSystem"]:
                    alerts.append(alert)
            outputs, _ = model.process(alerts)
            pg.write(outputs)
            consumer.commit(asynchronous=False)
            print(json.dumps({"poll_start": poll_start, "committed": time.monotonic(), "n": len(msgs)}), flush=True)
            idle_since = time.monotonic()
    finally:
        consumer.close()
        pg.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
