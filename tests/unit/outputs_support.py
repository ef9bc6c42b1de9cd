"""Helpers of the output-safety tests: a directory nothing can be written into, a run of the CLI."""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _writable(folder: Path) -> bool:
    try:
        fd, name = tempfile.mkstemp(dir=folder)
    except OSError:
        return False
    os.close(fd)
    os.unlink(name)
    return True


def unwritable_dir(tmp_path: Path) -> Path:
    """A directory in which creating a file fails.

    A mode-0555 folder does for an ordinary user; root ignores modes, so it gets /sys (sysfs
    refuses new files, for root too).
    """
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    if not _writable(folder):
        return folder
    if Path("/sys").is_dir() and not _writable(Path("/sys")):
        return Path("/sys")
    pytest.skip("no directory here refuses new files (root, and /sys is writable)")


def run_cli(*args: str, cwd: Path = ROOT, env: dict[str, str] | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess:
    """`alertops ARGS` as a subprocess (its own interpreter: tracebacks would reach stderr)."""
    return subprocess.run([sys.executable, "-m", "step_runtime", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd, env={**os.environ, **(env or {})})


def error_lines(stderr: str) -> list[str]:
    """stderr without JSON log lines and build progress lines: what a person reads as the error."""
    return [line for line in stderr.splitlines()
            if line and not line.startswith("{") and not line.startswith("alertops build: [")]


def assert_one_line(res: subprocess.CompletedProcess, status: int, *needles: str) -> str:
    """The command exited with `status` and one error line holding every needle, no traceback."""
    assert res.returncode == status, res.stderr
    assert "Traceback" not in res.stderr
    lines = error_lines(res.stderr)
    assert len(lines) == 1, lines
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]
