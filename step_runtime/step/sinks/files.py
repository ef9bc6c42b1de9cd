"""File outputs of a step (file sinks and the dead-letter file): one semantics for all of them.

Two modes, chosen by the source (`step_runtime.step.outputs.prepare_file_outputs`):

- `replace` (a bounded source: files). The run writes under a temporary name next to each
  output (`.<name>.<random>.tmp`) and, only once the input is exhausted, renames it over the
  output (`publish`). A run that fails or is stopped leaves earlier results as they were; a run
  with no outputs replaces them with an empty file.
- `append` (an unbounded source: Kafka). Each batch is durable before the step commits its
  offsets: JSONL lines are appended, flushed and fsynced (a failed write is truncated away, so a
  retry leaves no torn line); Parquet writes one file per batch into a folder at the path
  (`part-<UTC time>-<random>.parquet`, renamed into place once complete).

An existing device or pipe (/dev/stdout, /dev/full) is written in place in either mode.
A write that fails (disk full, permission lost) is a one-line error: in `replace` mode the run
ends with exit status 1 and the temporary file is deleted; in `append` mode it is an outage
(`SinkUnavailable`): the batch is retried with backoff and nothing is committed meanwhile.
"""
from __future__ import annotations

import errno
import os
import secrets
import stat
import time
from pathlib import Path
from typing import IO, Any, Callable

from step_runtime.file_outputs import StagedFile, describe_os_error, fsync_dir, is_special_file
from step_runtime.spec.common import SpecError
from step_runtime.step.errors import SinkUnavailable
from step_runtime.step.sinks.jsonsafe import dumps

REPLACE = "replace"
APPEND = "append"


class OutputFailed(ValueError):
    """A file output could not be written (disk full, permission lost): exit status 1."""


class OutputRefused(SpecError):
    """Records a file output cannot take as configured (a Parquet field changing type): exit 2."""


class _FileOutput:
    """What the JSONL and Parquet writers share: the mode, error wrapping, publish and discard."""

    def __init__(self, name: str, path: Path, mode: str) -> None:
        self.name = name
        self.path = path
        self.mode = mode  # set before open(): REPLACE for a bounded source, APPEND for Kafka
        self.staged: StagedFile | None = None
        self.published = False

    def _guard(self, what: str, action: Callable[[], Any]) -> Any:
        try:
            return action()
        except OSError as exc:
            message = f"{self.name}: cannot {what} {self.path}: {describe_os_error(exc)}"
            if self.mode == APPEND and exc.errno not in (errno.EISDIR, errno.ENOTDIR):
                raise SinkUnavailable(message) from None
            raise OutputFailed(message) from None

    def open(self) -> None:
        self.published = False
        self._guard("open", self._open)

    def _open(self) -> None:
        if self.mode == REPLACE:
            self.staged = StagedFile(self.path)

    def publish(self) -> None:
        """Replace mode: make this run's output the file at the path (after a complete run)."""
        if self.mode == REPLACE and self.staged is not None and not self.published:
            self._guard("write", self._finish)
            self._guard("replace", self.staged.commit)
            self.published = True

    def _finish(self) -> None:
        """Flush everything written so far to the staged file."""

    def close(self) -> None:
        """Release the file; in replace mode, an unpublished run's temporary file is deleted."""
        try:
            self._release()
        except OSError:
            pass  # leaving anyway; an unpublished output is discarded below
        if self.staged is not None and not self.published:
            self.staged.discard()
        self.staged = None

    def _release(self) -> None:
        """Close open handles."""


class JsonlOutput(_FileOutput):
    """A JSON-lines file: one line per record.

    Replace mode writes through a buffered handle (completed by `publish`); append mode writes
    each batch with unbuffered appends and fsyncs it, so nothing is left in a buffer to be
    written twice after a failure.
    """

    def __init__(self, name: str, path: Path, mode: str = APPEND) -> None:
        super().__init__(name, path, mode)
        self.handle: IO[bytes] | None = None
        self.fd: int | None = None

    def _open(self) -> None:
        super()._open()
        if self.staged is not None:
            self.handle = open(self.staged.tmp, "wb")
            return
        created = not self.path.exists()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        if created:
            fsync_dir(self.path.parent)

    def write_lines(self, lines: list[str]) -> None:
        """Write the lines; in append mode they are on disk (fsynced) when this returns."""
        if not lines:
            return
        data = "".join(line + "\n" for line in lines).encode()
        self._guard("write", lambda: self._write(data))

    def _write(self, data: bytes) -> None:
        if self.handle is not None:
            self.handle.write(data)
            return
        assert self.fd is not None, "open() first"
        info = os.fstat(self.fd)
        regular = stat.S_ISREG(info.st_mode)
        before = info.st_size if regular else 0
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(self.fd, view):]
            if regular:
                os.fsync(self.fd)
        except OSError:
            if regular:  # a retried batch must not follow a torn line
                try:
                    os.ftruncate(self.fd, before)
                except OSError:
                    pass
            raise

    def _finish(self) -> None:
        if self.handle is not None:
            self.handle.flush()

    def _release(self) -> None:
        if self.handle is not None:
            handle, self.handle = self.handle, None
            handle.close()
        if self.fd is not None:
            fd, self.fd = self.fd, None
            os.close(fd)


class ParquetOutput(_FileOutput):
    """Parquet: one file whose schema grows with the batches (replace), or one file per batch (append).

    The first batch sets each field's type. A field that was always null takes the type of its
    first non-null values, and a field seen for the first time is added (earlier rows get null):
    in replace mode the staged file is rewritten with the wider schema. A field whose values
    change type (int64 then string) is refused, naming the sink and the field.
    """

    def __init__(self, name: str, path: Path, mode: str = APPEND) -> None:
        super().__init__(name, path, mode)
        self.writer: Any = None
        self.schema: Any = None
        self.per_batch_files = False

    def _open(self) -> None:
        super()._open()
        self.writer, self.schema = None, None
        self.per_batch_files = self.mode == APPEND and not is_special_file(self.path)
        if self.per_batch_files:
            self.path.mkdir(parents=True, exist_ok=True)
            self.schema = _latest_schema(self.path)

    def write_records(self, records: list[dict[str, Any]]) -> None:
        """Write one batch of records."""
        if not records:
            return
        table = self._conformed(records)
        if self.per_batch_files:
            self._guard("write", lambda: self._write_part(table))
        else:
            self._guard("write", lambda: self._write_staged(table))

    def _conformed(self, records: list[dict[str, Any]]) -> Any:
        table = _infer_table(self.name, records)
        schema = table.schema if self.schema is None else _widen(self.name, self.schema, table.schema)
        if self.schema is not None and not schema.equals(self.schema) and self.writer is not None:
            self._guard("rewrite", lambda: self._rewrite_staged(schema))
        self.schema = schema
        return table if table.schema.equals(schema) else _conform(table, schema)

    def _write_staged(self, table: Any) -> None:
        import pyarrow.parquet as pq

        if self.writer is None:
            target = self.staged.tmp if self.staged is not None else self.path
            self.writer = pq.ParquetWriter(target, self.schema, compression="zstd")
        self.writer.write_table(table)

    def _rewrite_staged(self, schema: Any) -> None:
        """Close the staged file and write it again with `schema` (rare: once per new field)."""
        import pyarrow.parquet as pq

        if self.staged is None or self.staged.in_place:
            raise OutputRefused(f"{self.name}: the Parquet schema grew after the first batch (a new field, or "
                                f"one that was only null), which {self.path} cannot take: write to a regular file")
        self.writer.close()
        self.writer = None
        old = _conform(pq.read_table(self.staged.tmp), schema)
        self.writer = pq.ParquetWriter(self.staged.tmp, schema, compression="zstd")
        self.writer.write_table(old)

    def _write_part(self, table: Any) -> None:
        import pyarrow.parquet as pq

        now = time.time_ns()
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now // 1_000_000_000)) + f"{now % 1_000_000_000:09d}"
        part = StagedFile(self.path / f"part-{stamp}-{secrets.token_hex(4)}.parquet")  # names sort by time
        try:
            pq.write_table(table, part.tmp, compression="zstd")
            part.commit()
        finally:
            part.discard()

    def _finish(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if self.writer is None:  # no records this run: an empty file replaces the last run's rows
            assert self.staged is not None
            pq.write_table(pa.table({}) if self.schema is None else self.schema.empty_table(), self.staged.tmp)
            return
        self.writer.close()
        self.writer = None

    def _release(self) -> None:
        if self.writer is not None:
            writer, self.writer = self.writer, None
            writer.close()


def _latest_schema(folder: Path) -> Any:
    """The schema of the newest part file in an append-mode Parquet folder (None when empty)."""
    import pyarrow.parquet as pq

    parts = sorted(folder.glob("part-*.parquet"))
    return pq.read_schema(parts[-1]) if parts else None


def _infer_table(sink: str, records: list[dict[str, Any]]) -> Any:
    """The batch as an Arrow table; a field with values of different types is named."""
    import pyarrow as pa

    try:
        return pa.Table.from_pylist(records)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        names = list(dict.fromkeys(k for r in records for k in r))
        for field in names:
            try:
                pa.array([r.get(field) for r in records])
            except (pa.ArrowInvalid, pa.ArrowTypeError) as field_exc:
                raise OutputRefused(f"{sink}: Parquet field '{field}' holds values of different types in one "
                                    f"batch ({field_exc}); a Parquet column has one type") from None
        raise OutputRefused(f"{sink}: cannot convert the batch to Parquet: {exc}") from None


def _widen(sink: str, schema: Any, batch: Any) -> Any:
    """`schema` extended by the batch's new fields and typed where it was only null; conflicts refused."""
    import pyarrow as pa

    for field in batch:
        if field.name not in schema.names:
            continue
        old = schema.field(field.name).type
        if old != field.type and not pa.types.is_null(old) and not pa.types.is_null(field.type):
            try:
                pa.unify_schemas([pa.schema([schema.field(field.name)]), pa.schema([field])])
            except (pa.ArrowInvalid, pa.ArrowTypeError):
                raise OutputRefused(
                    f"{sink}: Parquet field '{field.name}' changed type between batches: {old} in earlier "
                    f"batches, {field.type} now; a Parquet column has one type (make the processor output "
                    f"one type, or write JSONL)") from None
    try:
        return pa.unify_schemas([schema, batch])
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise OutputRefused(f"{sink}: Parquet schema changed between batches: {exc}") from None


def _conform(table: Any, schema: Any) -> Any:
    """`table` with exactly `schema`'s columns: missing ones as nulls, null-typed ones cast."""
    import pyarrow as pa

    columns = [table.column(f.name).cast(f.type) if f.name in table.column_names else pa.nulls(len(table), f.type)
               for f in schema]
    return pa.Table.from_arrays(columns, schema=schema)


class FileOutputWriter:
    """A step writer (a file sink, the dead-letter file) backed by one file output."""

    name: str
    output: JsonlOutput | ParquetOutput

    @property
    def path(self) -> Path:
        return self.output.path

    @property
    def mode(self) -> str:
        return self.output.mode

    @mode.setter
    def mode(self, value: str) -> None:
        self.output.mode = value

    def open(self) -> None:
        self.output.open()

    def publish(self) -> None:
        """Replace mode, after a complete run: this run's file replaces the previous one."""
        self.output.publish()

    def close(self) -> None:
        self.output.close()


class FileSinkWriter(FileOutputWriter):
    """The `file` sink: JSONL or Parquet, with the mode's semantics (see the module docstring)."""

    def __init__(self, name: str, path: Path, fmt: str, mode: str = APPEND) -> None:
        self.name = name
        self.format = fmt
        self.output = (JsonlOutput if fmt == "jsonl" else ParquetOutput)(name, path, mode)

    def write(self, records: list[dict[str, Any]]) -> None:
        if isinstance(self.output, JsonlOutput):
            self.output.write_lines([dumps(r) for r in records])
        else:
            self.output.write_records(records)
