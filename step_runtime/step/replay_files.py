"""Which files of a folder a file source replays, and which it skips (counted, and logged)."""
from __future__ import annotations

import fnmatch
import logging
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("alertops.step")


def patterns(fmt: str) -> tuple[str, ...]:
    """File-name patterns a folder source reads for a message format."""
    return ("*.jsonl", "*.json") if fmt == "json" else ("*.avro",)


@dataclass(frozen=True)
class ReplayFiles:
    """The files a source folder holds: those replayed (sorted by name) and those skipped."""

    used: list[Path]
    skipped: list[Path]


def replay_files(path: Path, fmt: str) -> ReplayFiles:
    """The files of `path` (a folder, or one file) that a source of format `fmt` reads.

    Sub-folders are not descended into; other files (not matching `patterns(fmt)`) are skipped.
    """
    if path.is_file():
        return ReplayFiles([path], [])
    files = sorted(p for p in path.iterdir() if p.is_file())
    wanted = patterns(fmt)
    matches = [any(fnmatch.fnmatchcase(p.name, pat) for pat in wanted) for p in files]
    return ReplayFiles([p for p, m in zip(files, matches) if m], [p for p, m in zip(files, matches) if not m])


def log_replay_folder(path: Path, fmt: str, found: ReplayFiles, messages: int) -> None:
    """Log what the folder holds: files read, files skipped; a warning when there is nothing to replay."""
    fields = {"path": str(path), "messages": messages, "files": len(found.used), "skipped_files": len(found.skipped)}
    if found.skipped:
        fields["skipped_examples"] = [p.name for p in found.skipped[:5]]
    log.info("file source ready", extra={"fields": fields})
    if messages == 0:
        kinds = " or ".join(patterns(fmt))
        what = f"no messages in its {kinds} files" if found.used else f"no {kinds} files"
        others = f" ({len(found.skipped)} other file(s) skipped)" if found.skipped else ""
        log.warning(f"source folder is empty: {path} holds {what}{others}; nothing to replay",
                    extra={"fields": fields})
