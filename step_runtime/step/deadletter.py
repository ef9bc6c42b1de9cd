"""Dead letters: bad messages kept with their error and position, never silently dropped."""
from __future__ import annotations

import base64
import json
import logging
from pathlib import Path
from typing import Any

from step_runtime.spec.pipelinestep import DeadLetterSpec
from step_runtime.step.errors import SinkUnavailable
from step_runtime.step.kafka_config import producer_config
from step_runtime.step.messages import DeadLetter
from step_runtime.step.sinks.files import APPEND, FileOutputWriter, JsonlOutput

log = logging.getLogger("alertops.step")


def headers(d: DeadLetter) -> list[tuple[str, bytes]]:
    """Kafka headers of a dead letter: the error, the stage and where the message came from."""
    m = d.message
    return [("alertops.error", d.error.encode()[:4000]), ("alertops.stage", d.stage.encode()),
            ("alertops.source.topic", m.topic.encode()), ("alertops.source.partition", str(m.partition).encode()),
            ("alertops.source.offset", str(m.offset).encode())]


def as_json(d: DeadLetter) -> dict[str, Any]:
    """A dead letter as a JSON object (the original bytes in base64)."""
    m = d.message
    return {"source_topic": m.topic, "source_partition": m.partition, "source_offset": m.offset,
            "stage": d.stage, "error": d.error, "key": m.key.decode(errors="replace") if m.key else None,
            "value_base64": base64.b64encode(m.value).decode()}


class LogDeadLetters:
    """No dead-letter destination configured: log each bad message with its position."""

    name = "dead-letter-log"

    def open(self) -> None:
        return None

    def write(self, dead: list[DeadLetter]) -> None:
        for d in dead:
            m = d.message
            log.error("message dropped (no spec.deadLetter): %s", d.error,
                      extra={"fields": {"stage": d.stage, "topic": m.topic, "partition": m.partition, "offset": m.offset}})

    def close(self) -> None:
        return None


class FileDeadLetters(FileOutputWriter):
    """JSONL file, one line per bad message, with the semantics of every file output.

    Replace mode (a bounded source) writes a temporary file renamed over the path after a
    complete run; append mode (Kafka) appends and fsyncs each batch before its commit. See
    `step_runtime.step.sinks.files`.
    """

    name = "dead-letter-file"
    output: JsonlOutput

    def __init__(self, path: Path, mode: str = APPEND) -> None:
        self.output = JsonlOutput(self.name, path, mode)

    def write(self, dead: list[DeadLetter]) -> None:
        self.output.write_lines([json.dumps(as_json(d)) for d in dead])


class KafkaDeadLetters:
    """A dead-letter topic: original key and bytes, with error and source position in headers."""

    name = "dead-letter-kafka"

    def __init__(self, topic: str, config: dict[str, Any]) -> None:
        from step_runtime.step.confirmed_producer import ConfirmedProducer

        self.topic = topic
        self.producer = ConfirmedProducer(self.name, config)

    def open(self) -> None:
        self.producer.open()

    def write(self, dead: list[DeadLetter]) -> None:
        if dead:
            self.producer.send_all(self.topic, ((d.message.key, d.message.value, headers(d)) for d in dead))

    def close(self) -> None:
        self.producer.close()


class PostgresDeadLetters:
    """A dead-letter table keyed by source position, so a replayed batch adds nothing."""

    name = "dead-letter-postgres"

    def __init__(self, dsn: str, table: str) -> None:
        from step_runtime.step.sinks.postgres import quote_table

        self.dsn = dsn
        self.table = quote_table(table)
        self.conn: Any = None

    def open(self) -> None:
        import psycopg2

        if self.conn is not None and not self.conn.closed:
            return
        try:
            self.conn = psycopg2.connect(self.dsn, connect_timeout=5, application_name="alertops-step")
            with self.conn.cursor() as cur:
                cur.execute(f"""CREATE TABLE IF NOT EXISTS {self.table} (
                    source_topic text NOT NULL, source_partition integer NOT NULL,
                    source_offset bigint NOT NULL, stage text NOT NULL, error text NOT NULL,
                    message_key bytea, message_value bytea NOT NULL,
                    received_at timestamptz NOT NULL DEFAULT now(),
                    PRIMARY KEY (source_topic, source_partition, source_offset))""")
            self.conn.commit()
        except psycopg2.Error as exc:
            self.conn = None
            raise SinkUnavailable(f"{self.name}: cannot prepare PostgreSQL table: {str(exc).strip()}") from None

    def write(self, dead: list[DeadLetter]) -> None:
        if not dead:
            return
        import psycopg2
        from psycopg2.extras import execute_values

        self.open()
        rows = [(d.message.topic, d.message.partition, d.message.offset, d.stage, d.error,
                 psycopg2.Binary(d.message.key) if d.message.key else None, psycopg2.Binary(d.message.value))
                for d in dead]
        try:
            with self.conn.cursor() as cur:
                execute_values(cur, f"INSERT INTO {self.table} (source_topic, source_partition, source_offset, "
                               "stage, error, message_key, message_value) VALUES %s ON CONFLICT DO NOTHING", rows)
            self.conn.commit()
        except psycopg2.Error as exc:
            try:
                self.conn.close()
            except Exception:  # noqa: BLE001 - the connection is already broken
                pass
            self.conn = None
            raise SinkUnavailable(f"{self.name}: write failed: {str(exc).strip()}") from None

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
        self.conn = None


def build_dead_letters(spec: DeadLetterSpec | None, source_bootstrap: str | None, source_auth: Any,
                       output_base: Path) -> Any:
    """The dead-letter writer the spec chooses (log-only when absent)."""
    if spec is None:
        return LogDeadLetters()
    if spec.file is not None:
        path = Path(spec.file.path)
        return FileDeadLetters(path if path.is_absolute() else output_base / path)
    if spec.kafka is not None:
        bootstrap = spec.kafka.bootstrap_servers or source_bootstrap
        if not bootstrap:
            raise ValueError("spec.deadLetter.kafka.bootstrapServers: required when the source is not Kafka")
        auth = spec.kafka.auth if spec.kafka.auth is not None else source_auth
        return KafkaDeadLetters(spec.kafka.topic, producer_config(bootstrap, auth, "spec.deadLetter.kafka"))
    from step_runtime.step.sinks.postgres import connection_dsn

    assert spec.postgres is not None
    return PostgresDeadLetters(connection_dsn(spec.postgres, "spec.deadLetter.postgres"), spec.postgres.table)


