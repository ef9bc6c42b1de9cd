"""File sink: JSONL or Parquet, appended batch by batch (local runs and demos)."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from step_runtime.step.sinks.jsonsafe import dumps


class FileSinkWriter:
    """JSONL lines or one Parquet row group per batch; the first batch fixes the Parquet schema."""

    def __init__(self, name: str, path: Path, fmt: str) -> None:
        self.name = name
        self.path = path
        self.format = fmt
        self.writer: Any = None
        self.schema: Any = None

    def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.format == "jsonl":
            self.path.write_text("")  # a run writes a fresh file

    def write(self, records: list[dict[str, Any]]) -> None:
        if not records:
            return
        if self.format == "jsonl":
            with open(self.path, "a") as fh:
                fh.write("".join(dumps(r) + "\n" for r in records))
                fh.flush()
                os.fsync(fh.fileno())
            return
        import pyarrow as pa
        import pyarrow.parquet as pq

        if self.writer is None:
            table = pa.Table.from_pylist(records)
            self.schema = table.schema
            self.writer = pq.ParquetWriter(self.path, self.schema, compression="zstd")
        else:
            table = pa.Table.from_pylist(records, schema=self.schema)
        self.writer.write_table(table)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.writer = None
