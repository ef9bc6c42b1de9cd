"""A step's file outputs: checked before anything is consumed, published after a complete run.

`prepare_file_outputs` (before the run) picks the mode of every file output from the source
(bounded files: replace at the end; Kafka: append per batch, see `step_runtime.step.sinks.files`)
and refuses, naming the spec fields, outputs that share a path, lie inside one another or inside
an input, or cannot be written. `publish_file_outputs` (after the run) renames this run's files
over the previous ones, only when the input was read to its end.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from step_runtime.file_outputs import NamedPath, absolute, path_problems
from step_runtime.spec.common import SpecError
from step_runtime.spec.pipelinestep import PipelineStepSpec
from step_runtime.step.sinks.files import APPEND, REPLACE

log = logging.getLogger("alertops.step")


def _anchored(path: str, base: Path) -> Path:
    p = Path(path)
    return absolute(p if p.is_absolute() else base / p)


def input_paths(spec: PipelineStepSpec, base_dir: Path, output_base: Path) -> list[NamedPath]:
    """The files and folders a step reads, resolved as the runtime resolves them."""
    found: list[NamedPath] = []
    for kind in ("files", "kafka"):
        source = getattr(spec.source, kind)
        if source is None:
            continue
        if kind == "files":
            found.append(NamedPath("spec.source.files.path", _anchored(source.path, base_dir)))
        if source.schema_path:
            found.append(NamedPath(f"spec.source.{kind}.schemaPath", _anchored(source.schema_path, base_dir)))
    from step_runtime.storage.fetch import local_path

    for field, settings in spec.file_sources():  # a model or catalog: by path, or where its uri lands
        name = "uri" if settings.uri else "catalog" if field.endswith("crossmatch") else "path"
        found.append(NamedPath(f"{field}.{name}", absolute(local_path(settings, base_dir))))
    for i, sink in enumerate(spec.sinks):
        if sink.kafka is not None and sink.kafka.schema_path:
            found.append(NamedPath(f"spec.sinks[{i}].kafka.schemaPath", _anchored(sink.kafka.schema_path, output_base)))
    return found


def file_outputs(spec: PipelineStepSpec, sinks: list[Any], dead_letters: Any) -> list[tuple[str, Any]]:
    """(spec field, writer) of every file output: file sinks and the dead-letter file."""
    found = [(f"spec.sinks[{i}].file.path", sink) for i, (s, sink) in enumerate(zip(spec.sinks, sinks))
             if s.file is not None]
    if spec.dead_letter is not None and spec.dead_letter.file is not None:
        found.append(("spec.deadLetter.file.path", dead_letters))
    return found


def prepare_file_outputs(spec: PipelineStepSpec, sinks: list[Any], dead_letters: Any, base_dir: Path,
                         output_base: Path) -> None:
    """Set every file output's mode and check its path; SpecError (exit 2) naming each problem.

    Also refuses a missing source folder here, before the sinks are opened.
    """
    if spec.source.files is not None:
        folder = _anchored(spec.source.files.path, base_dir)
        if not folder.exists():
            raise SpecError(f"spec.source.files.path: {folder} does not exist")
    mode = REPLACE if spec.source.files is not None else APPEND
    outputs = file_outputs(spec, sinks, dead_letters)
    named, folders = [], set()
    for field, writer in outputs:
        writer.mode = mode
        named.append(NamedPath(field, absolute(writer.path)))
        if mode == APPEND and getattr(writer, "format", "jsonl") == "parquet":
            folders.add(field)  # one Parquet file per batch, in a folder at the path
    problems = path_problems(named, input_paths(spec, base_dir, output_base), frozenset(folders))
    if problems:
        raise SpecError("\n".join(problems))


def publish_file_outputs(spec: PipelineStepSpec, sinks: list[Any], dead_letters: Any, complete: bool) -> None:
    """After a run: this run's files replace the previous ones if the input was read to its end.

    A run stopped early (SIGTERM) publishes nothing, so earlier results stay as they were.
    Append-mode outputs (Kafka) have nothing to publish: each batch was durable before its commit.
    """
    outputs = [(field, w) for field, w in file_outputs(spec, sinks, dead_letters) if w.mode == REPLACE]
    if not outputs:
        return
    if not complete:
        log.warning("run stopped before the end of its input: file outputs not replaced (earlier results kept)",
                    extra={"fields": {"outputs": [str(w.path) for _, w in outputs]}})
        return
    for _, writer in outputs:
        writer.publish()
