"""A Kafka producer whose batches count only when every message is acknowledged.

Both the Kafka sink and the dead-letter topic need this: the input offsets are committed after
a batch's messages are confirmed, so a batch is either wholly delivered or retried.
"""
from __future__ import annotations

from typing import Any, Iterable, Optional

from step_runtime.step.errors import SinkUnavailable

FLUSH_TIMEOUT_S = 30.0
# (key, value, headers) of one message.
Message = tuple[Optional[bytes], bytes, Optional[list[tuple[str, bytes]]]]


class ConfirmedProducer:
    """Wraps a confluent-kafka Producer; `send_all` returns only when every delivery succeeded."""

    def __init__(self, name: str, config: dict[str, Any]) -> None:
        self.name = name
        self.config = config
        self.producer: Any = None

    def open(self) -> None:
        """Create the producer and check the cluster answers (SinkUnavailable when it does not)."""
        from confluent_kafka import Producer

        if self.producer is None:
            self.producer = Producer(self.config)
        try:
            self.producer.list_topics(timeout=5)
        except Exception as exc:  # noqa: BLE001 - any client error means "not reachable now"
            raise SinkUnavailable(f"{self.name}: cannot reach Kafka: {exc}") from None

    def send_all(self, topic: str, messages: Iterable[Message]) -> None:
        """Produce every message, then wait until each delivery is confirmed or the flush times out."""
        if self.producer is None:
            self.open()
        errors: list[str] = []

        def delivered(err: Any, _msg: Any) -> None:
            if err is not None:
                errors.append(str(err))

        for key, value, headers in messages:
            while True:
                try:
                    self.producer.produce(topic, value=value, key=key, headers=headers, on_delivery=delivered)
                    break
                except BufferError:  # the local queue is full: let deliveries drain, then retry
                    self.producer.poll(0.5)
        remaining = self.producer.flush(FLUSH_TIMEOUT_S)
        if remaining or errors:
            raise SinkUnavailable(f"{self.name}: {remaining} deliveries unconfirmed, "
                                  f"{len(errors)} failed to topic {topic}: {errors[:3]}")

    def close(self) -> None:
        """Give in-flight deliveries a moment, then drop the producer."""
        if self.producer is not None:
            self.producer.flush(5)
        self.producer = None
