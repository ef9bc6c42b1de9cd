"""Sources: batches of raw messages, and the commit that marks them done."""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Callable

from step_runtime.spec.pipelinestep import FileSource, KafkaSource
from step_runtime.step.errors import SinkUnavailable
from step_runtime.step.kafka_config import auth_config, client_logger
from step_runtime.step.messages import Message
from step_runtime.step.replay_files import log_replay_folder, replay_files

log = logging.getLogger("alertops.step")


class FileReplaySource:
    """Every message of a folder (sorted by file name), then the end of input.

    ztf-avro/lsst-avro/avro: one message per *.avro file; json: one message per non-empty line of
    *.jsonl / *.json files. A message's position is (folder, 0, running index).
    """

    def __init__(self, spec: FileSource, base_dir: Path) -> None:
        path = Path(spec.path)
        self.path = path if path.is_absolute() else base_dir / path
        self.format = spec.format
        self.batch_size = spec.batch_size
        self.topic = f"file:{self.path}"
        self._pending: list[Message] | None = None

    def open(self) -> None:
        if not self.path.exists():
            raise ValueError(f"spec.source.files.path: {self.path} does not exist")
        self._pending = list(self._messages())
        log_replay_folder(self.path, self.format, replay_files(self.path, self.format), len(self._pending))

    def _files(self) -> list[Path]:
        return replay_files(self.path, self.format).used

    def _messages(self) -> list[Message]:
        out: list[Message] = []
        for f in self._files():
            if self.format == "json":
                for line in f.read_bytes().splitlines():
                    if line.strip():
                        out.append(Message(line, self.topic, 0, len(out), f.name.encode()))
            else:
                out.append(Message(f.read_bytes(), self.topic, 0, len(out), f.name.encode()))
        return out

    def poll_batch(self, should_stop: Callable[[], bool], timeout_ms: int | None = None) -> list[Message] | None:
        """The next batch, or None once every file has been read."""
        assert self._pending is not None, "open() first"
        if not self._pending:
            return None
        batch, self._pending = self._pending[: self.batch_size], self._pending[self.batch_size:]
        return batch

    def commit(self, messages: list[Message]) -> None:
        """Nothing to commit for files: a replay always starts from the first file."""

    def lag(self) -> dict[tuple[str, int], int]:
        return {(self.topic, 0): len(self._pending or [])}

    def connected(self) -> bool:
        return True

    def close(self) -> None:
        return None


def consumer_config(spec: KafkaSource) -> dict[str, Any]:
    """librdkafka consumer settings: manual commits only, offsets stored by us."""
    config: dict[str, Any] = {
        "bootstrap.servers": spec.bootstrap_servers,
        "group.id": spec.group_id,
        "auto.offset.reset": spec.auto_offset_reset,
        "session.timeout.ms": 45_000,
        "max.poll.interval.ms": 300_000,
        "fetch.max.bytes": 64 * 1024 * 1024,
        "max.partition.fetch.bytes": 16 * 1024 * 1024,
        # librdkafka stops fetching a partition while its local queue is over these thresholds
        # and, by default, waits a whole second (fetch.queue.backoff.ms 1000) before trying again.
        # A step drains 64 MB of alerts (~1,000 ZTF or ~550 Rubin packets) in a fraction of that
        # second, so its consume calls stalled for 250-420 ms every third batch (measured on the
        # step benchmark: 1,760 alerts/s; 2,460 with a 20 ms backoff). The queue holds about one
        # batch of 1,000 Rubin alerts; an idle step is not affected (nothing is queued).
        "fetch.queue.backoff.ms": 20,
        "queued.max.messages.kbytes": 128 * 1024,
        "partition.assignment.strategy": "cooperative-sticky",
        "logger": client_logger(),
        **spec.config,
        **auth_config(spec.auth, "spec.source.kafka"),
    }
    # The promise (commit only after every sink accepted) depends on these two.
    config["enable.auto.commit"] = False
    config["enable.auto.offset.store"] = False
    return config


class KafkaBatchSource:
    """A consumer-group member that hands out batches by size or timeout and commits synchronously."""

    def __init__(self, spec: KafkaSource) -> None:
        self.spec = spec
        self.config = consumer_config(spec)
        self.consumer: Any = None
        self._lag: dict[tuple[str, int], int] = {}
        self._lag_at = 0.0

    def open(self) -> None:
        from confluent_kafka import Consumer, KafkaException

        if self.consumer is None:
            self.consumer = Consumer(self.config)
        try:
            md = self.consumer.list_topics(timeout=5)
        except KafkaException as exc:
            raise SinkUnavailable(f"source: cannot reach Kafka at {self.spec.bootstrap_servers}: {exc}") from None
        missing = [t for t in self.spec.topics if t not in md.topics]
        if missing:
            log.warning("source topics do not exist yet", extra={"fields": {"topics": missing}})
        self.consumer.subscribe(list(self.spec.topics))

    def poll_batch(self, should_stop: Callable[[], bool], timeout_ms: int | None = None) -> list[Message] | None:
        """Up to batchSize messages, waiting at most batchTimeoutMs (or timeout_ms); [] when none arrived."""
        from confluent_kafka import KafkaError, KafkaException

        wait_ms = self.spec.batch_timeout_ms if timeout_ms is None else min(timeout_ms, self.spec.batch_timeout_ms)
        deadline = time.monotonic() + wait_ms / 1000.0
        out: list[Message] = []
        while len(out) < self.spec.batch_size and not should_stop():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            # Short consume slices keep SIGTERM handling prompt while a batch fills.
            msgs = self.consumer.consume(num_messages=self.spec.batch_size - len(out), timeout=min(remaining, 0.5))
            for m in msgs:
                err = m.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        continue
                    if err.fatal():
                        raise KafkaException(err)
                    log.warning("consumer error", extra={"fields": {"error": str(err)}})
                    continue
                kind, ts = m.timestamp()
                out.append(Message(m.value() or b"", m.topic(), m.partition(), m.offset(), m.key(),
                                   ts if kind else None))  # kind 0: the message has no timestamp
        return out

    def commit(self, messages: list[Message]) -> None:
        """Commit, synchronously, the offset after the last message of each partition in the batch."""
        from confluent_kafka import KafkaException, TopicPartition

        if not messages:
            return
        last: dict[tuple[str, int], int] = {}
        for m in messages:
            last[(m.topic, m.partition)] = max(last.get((m.topic, m.partition), -1), m.offset)
        offsets = [TopicPartition(t, p, o + 1) for (t, p), o in sorted(last.items())]
        try:
            self.consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            # Typically a rebalance took the partition away: its new owner re-reads these
            # messages and the idempotent sinks absorb the replay.
            log.warning("offset commit failed; messages will be redelivered", extra={"fields": {"error": str(exc)}})

    def lag(self) -> dict[tuple[str, int], int]:
        """Messages behind the high watermark per assigned partition (refreshed every 2 s)."""
        now = time.monotonic()
        if now - self._lag_at < 2.0 or self.consumer is None:
            return self._lag
        self._lag_at = now
        lag: dict[tuple[str, int], int] = {}
        try:
            assigned = self.consumer.assignment()
            positions = self.consumer.position(assigned) if assigned else []
            for tp in positions:
                _low, high = self.consumer.get_watermark_offsets(tp, timeout=1.0, cached=False)
                pos = tp.offset if tp.offset >= 0 else _low
                lag[(tp.topic, tp.partition)] = max(high - pos, 0)
        except Exception as exc:  # noqa: BLE001 - lag is best effort
            log.debug("lag query failed", extra={"fields": {"error": str(exc)}})
            return self._lag
        self._lag = lag
        return lag

    def connected(self) -> bool:
        return self.consumer is not None

    def close(self) -> None:
        if self.consumer is not None:
            self.consumer.close()  # leaves the group; nothing is committed here
        self.consumer = None


def build_source(spec: Any, base_dir: Path) -> Any:
    """The source the spec chooses."""
    if spec.kafka is not None:
        return KafkaBatchSource(spec.kafka)
    return FileReplaySource(spec.files, base_dir)


def build_schema_cache(spec: Any, base_dir: Path) -> Any:
    """Where the source's Confluent-framed messages find their schemas (schemaRegistry or schemaDir;
    neither: such messages are dead letters saying so)."""
    from step_runtime.step.avro.registry import RegistryClient
    from step_runtime.step.avro.schemas import SchemaCache, SchemaDirectory
    from step_runtime.step.secrets import secret_value

    kind = "kafka" if isinstance(spec, KafkaSource) else "files"
    if spec.schema_dir is not None:
        root = Path(spec.schema_dir)
        root = root if root.is_absolute() else base_dir / root
        if not root.is_dir():
            raise ValueError(f"spec.source.{kind}.schemaDir: {root} is not a folder")
        return SchemaCache(SchemaDirectory(root))
    reg = spec.schema_registry
    if reg is not None:
        field = f"spec.source.{kind}.schemaRegistry"
        user = secret_value(reg.username, f"{field}.username") if reg.username else None
        password = secret_value(reg.password, f"{field}.password") if reg.password else None
        return SchemaCache(RegistryClient(reg.url, user, password, reg.timeout_ms / 1000.0))
    return SchemaCache(None)
