"""Sinks: where a batch's outputs go. Every sink must accept a batch before its offsets commit."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

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


def build_sink(spec: SinkSpec, index: int, output_base: Path, survey: str | None = None) -> Sink:
    """The sink the spec chooses; `output_base` anchors relative file paths; `survey` is the source's
    (the PostgreSQL probability table records it)."""
    name = spec.name or f"{spec.kind()}-{index}"
    field = f"spec.sinks[{index}].{spec.kind()}"
    if spec.postgres is not None:
        from step_runtime.step.sinks.postgres import PostgresSinkWriter
        return PostgresSinkWriter(name, spec.postgres, field, survey)
    if spec.mongodb is not None:
        from step_runtime.step.sinks.mongodb import MongoSinkWriter
        return MongoSinkWriter(name, spec.mongodb, field)
    if spec.kafka is not None:
        from step_runtime.step.sinks.kafka import KafkaSinkWriter
        return KafkaSinkWriter(name, spec.kafka, field, output_base)
    if spec.file is not None:
        from step_runtime.step.sinks.files import FileSinkWriter
        path = Path(spec.file.path)
        return FileSinkWriter(name, path if path.is_absolute() else output_base / path, spec.file.format)
    raise ValueError(f"{field}: no sink kind chosen")
