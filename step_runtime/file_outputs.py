"""Output files, shared by `alertops run` (file sinks, dead-letter file) and `alertops build`.

- Checks made before a run reads anything: every output writable, none sharing a path with
  another output or lying inside another output or an input. Each check returns the problems as
  text naming the spec field, so the caller raises its own one-line user error; nothing is
  written except a probe file that is deleted at once.
- `StagedFile`: a file written under a temporary name next to its target and renamed over it
  once complete, so a failed run leaves the previous file as it was.
"""
from __future__ import annotations

import os
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class NamedPath:
    """A path and the spec field (or option) it comes from, for messages."""

    field: str
    path: Path


def absolute(path: Path) -> Path:
    """`path` made absolute with symlinks resolved, so that two spellings of one file compare equal.

    A device or pipe keeps its name: /dev/stdout resolves to a pipe's pseudo-name that cannot
    be opened.
    """
    plain = Path(os.path.abspath(path))
    return plain if is_special_file(plain) else plain.resolve()


def is_special_file(path: Path) -> bool:
    """True for an existing character device, FIFO or socket (/dev/stdout, /dev/full, a pipe)."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return False
    return stat.S_ISCHR(mode) or stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)


def _nearest_existing(path: Path) -> Path:
    for candidate in [path, *path.parents]:
        if candidate.exists() or candidate.is_symlink():
            return candidate
    return Path(path.anchor or "/")


def writable_problem(path: Path, *, directory: bool = False, special_ok: bool = True) -> str | None:
    """Why `path` cannot be written as a file (or, with `directory`, used as a folder), else None.

    The nearest existing folder above it must be a folder in which a file can be created: that
    is tested by creating and deleting a probe file, because permission bits say nothing for
    root or on a read-only mount. An existing special file (/dev/full) is written in place;
    `special_ok=False` refuses it.
    """
    if path.exists():
        if path.is_dir() and not directory:
            return "is a directory, expected a file"
        if directory and not path.is_dir():
            return "exists and is not a directory (this output writes a folder of files)"
        if is_special_file(path):
            if not special_ok:
                return "is a device or pipe, expected a regular file"
            return None if os.access(path, os.W_OK) else "is not writable"
        if path.is_file() and not os.access(path, os.W_OK):
            return "is not writable (permission denied)"
        if directory:
            return _probe(path)
    existing = _nearest_existing(path.parent)
    if not existing.is_dir():
        return f"cannot be created: {existing} is a file, not a directory"
    return _probe(existing)


def _probe(folder: Path) -> str | None:
    try:
        fd, name = tempfile.mkstemp(prefix=".alertops-probe.", dir=folder)
    except OSError as exc:
        return f"cannot be written: directory {folder} is not writable ({exc.strerror or exc})"
    os.close(fd)
    os.unlink(name)
    return None


def _nested(a: Path, b: Path) -> bool:
    """One of the two paths lies inside the other."""
    return a in b.parents or b in a.parents


def overlap_problems(outputs: list[NamedPath], inputs: list[NamedPath]) -> list[str]:
    """Outputs that share a path, lie inside one another, or would overwrite or sit inside an input.

    Paths must already be absolute (`absolute`).
    """
    problems = []
    for i, out in enumerate(outputs):
        for other in outputs[:i]:
            if out.path == other.path:
                problems.append(f"{out.field}: {out.path} is also the path of {other.field}; "
                                "every output needs a path of its own")
            elif _nested(out.path, other.path):
                problems.append(f"{out.field}: {out.path} overlaps {other.field} ({other.path}): "
                                "one lies inside the other")
        for inp in inputs:
            if out.path == inp.path:
                problems.append(f"{out.field}: {out.path} is the input {inp.field}; writing it would "
                                "overwrite the input")
            elif _nested(out.path, inp.path):
                problems.append(f"{out.field}: {out.path} overlaps the input {inp.field} ({inp.path}): "
                                "outputs must lie outside the inputs")
    return problems


def path_problems(outputs: list[NamedPath], inputs: list[NamedPath], folders: frozenset[str] = frozenset(),
                  special_ok: bool = True) -> list[str]:
    """Every problem of a run's outputs: overlaps first, then each path that cannot be written.

    `folders` names the fields whose output is a folder of files rather than one file.
    """
    problems = overlap_problems(outputs, inputs)
    reported: set[str] = set()
    for out in outputs:
        problem = writable_problem(out.path, directory=out.field in folders, special_ok=special_ok)
        # A folder that cannot be written is named once, not once per output inside it.
        if problem and problem not in reported:
            problems.append(f"{out.field}: {out.path} {problem}")
            if problem.startswith("cannot be"):
                reported.add(problem)
    return problems


def describe_os_error(exc: OSError) -> str:
    """The reason of an OSError in words ("No space left on device"), whichever library raised it."""
    if exc.errno:
        return os.strerror(exc.errno)
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def fsync_dir(folder: Path) -> None:
    """Make a rename or a new file in `folder` durable (best effort: not every filesystem allows it)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class StagedFile:
    """A file written under a temporary name next to `path` and renamed over it by `commit`.

    A device or pipe at `path` is written in place instead (nothing to rename).
    """

    def __init__(self, path: Path) -> None:
        self.path = absolute(path)  # a symlinked file is replaced at its target, not unlinked
        self.in_place = is_special_file(self.path)
        if self.in_place:
            self.tmp = self.path
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
            try:  # mkstemp makes 0600: give the file the mode the target has, or would get
                os.fchmod(fd, stat.S_IMODE(self.path.stat().st_mode) if self.path.is_file() else 0o666 & ~_umask())
            finally:
                os.close(fd)
            self.tmp = Path(name)

    def commit(self) -> None:
        """fsync the temporary file, rename it over the target, fsync the folder."""
        if self.in_place:
            return
        with open(self.tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(self.tmp, self.path)
        fsync_dir(self.path.parent)

    def discard(self) -> None:
        """Delete the temporary file (the target is left as it was)."""
        if not self.in_place:
            try:
                self.tmp.unlink()
            except FileNotFoundError:
                pass


def _umask() -> int:
    """The process umask, read without changing it (os.umask would race with other threads)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o022
