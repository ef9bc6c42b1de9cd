"""Progress: a rich progress bar on a terminal, plain lines on stderr otherwise (logs, pods)."""
from __future__ import annotations

import sys
import time
from typing import Any


class Progress:
    """Steps of a build. Use as a context manager; `step(text)` marks one step done."""

    def __init__(self, total: int, enabled_tty: bool | None = None) -> None:
        self.total = total
        self.done = 0
        self.tty = sys.stderr.isatty() if enabled_tty is None else enabled_tty
        self._rich: Any = None
        self._task: Any = None
        self._start = time.monotonic()

    def __enter__(self) -> "Progress":
        if self.tty:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
            from rich.progress import Progress as RichProgress

            self._rich = RichProgress(TextColumn("[bold]build[/]"), BarColumn(), MofNCompleteColumn(),
                                      TimeElapsedColumn(), TextColumn("{task.description}"),
                                      console=Console(stderr=True), transient=True)
            self._rich.__enter__()
            self._task = self._rich.add_task("starting", total=self.total)
        return self

    def step(self, text: str) -> None:
        """One step done, described by `text`."""
        self.done += 1
        if self._rich is not None:
            self._rich.update(self._task, advance=1, description=text)
        else:
            elapsed = time.monotonic() - self._start
            print(f"alertops build: [{self.done}/{self.total}] {elapsed:6.1f}s {text}", file=sys.stderr, flush=True)

    def warn(self, text: str) -> None:
        """A warning the user should read (not a step): always printed, above the bar on a terminal."""
        if self._rich is not None:
            from rich.markup import escape

            self._rich.console.print(f"[yellow]warning:[/] {escape(text)}", highlight=False)
        else:
            print(f"alertops build: warning: {text}", file=sys.stderr, flush=True)

    def __exit__(self, *exc: object) -> None:
        if self._rich is not None:
            self._rich.__exit__(*exc)
