"""The records that travel through a step: raw messages, bad-message reports, batches."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Message:
    """One input message and where it came from (topic/partition/offset, or file/line)."""

    value: bytes
    topic: str
    partition: int
    offset: int
    key: bytes | None = None
    timestamp_ms: int | None = None  # Kafka's message timestamp (create or log-append time), if any


@dataclass(frozen=True)
class DeadLetter:
    """A message that could not be processed, with the reason and the stage that refused it."""

    message: Message
    stage: str   # decode | validate | process
    error: str


@dataclass
class Batch:
    """The unit of work and of commit: messages in, outputs and dead letters out."""

    messages: list[Message]
    first_poll_monotonic: float
    records: list[dict[str, Any]] = field(default_factory=list)
    record_messages: list[Message] = field(default_factory=list)
    outputs: list[dict[str, Any]] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)
