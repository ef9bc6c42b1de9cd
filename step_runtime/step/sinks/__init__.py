"""Sinks: where a batch's outputs go. Every sink must accept a batch before its offsets commit."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Protocol

from step_runtime.spec.pipelinestep import SinkSpec


class Sink(Protocol):
    """What the step loop needs from a sink."""

    name: str

    def open(self) -> None:
        """Connect; raise SinkUnavailable if the service cannot be reached yet."""

    def write(self, records: list[dict[str, Any]]) -> None:
        """Write the batch's outputs idempotently, or raise SinkUnavailable (nothing to undo)."""

    def close(self) -> None:
        """Release connections."""


def _postgres(name: str, spec: Any, field: str, output_base: Path, survey: str | None) -> Sink:
    from step_runtime.step.sinks.postgres import PostgresSinkWriter
    return PostgresSinkWriter(name, spec, field, survey)


def _mongodb(name: str, spec: Any, field: str, output_base: Path, survey: str | None) -> Sink:
    from step_runtime.step.sinks.mongodb import MongoSinkWriter
    return MongoSinkWriter(name, spec, field)


def _kafka(name: str, spec: Any, field: str, output_base: Path, survey: str | None) -> Sink:
    from step_runtime.step.sinks.kafka import KafkaSinkWriter
    return KafkaSinkWriter(name, spec, field, output_base)


def _file(name: str, spec: Any, field: str, output_base: Path, survey: str | None) -> Sink:
    from step_runtime.step.sinks.files import FileSinkWriter
    path = Path(spec.path)
    return FileSinkWriter(name, path if path.is_absolute() else output_base / path, spec.format)


# A builder for every choice of SinkSpec (its fields; a unit test checks that the sets are equal).
# The sinks' modules are imported only when chosen: a step without MongoDB never imports pymongo.
SINKS: dict[str, Callable[[str, Any, str, Path, str | None], Sink]] = {
    "postgres": _postgres, "mongodb": _mongodb, "kafka": _kafka, "file": _file}


def build_sink(spec: SinkSpec, index: int, output_base: Path, survey: str | None = None) -> Sink:
    """The sink the spec chooses; `output_base` anchors relative file paths; `survey` is the source's
    (the PostgreSQL probability table records it)."""
    kind = spec.kind()
    return SINKS[kind](spec.name or f"{kind}-{index}", spec.chosen(), f"spec.sinks[{index}].{kind}", output_base, survey)
