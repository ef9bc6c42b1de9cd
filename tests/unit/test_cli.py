"""The `alertops` command itself: version, help, and the error for no subcommand."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from step_runtime import __version__
from step_runtime.cli import SUBCOMMANDS, build_parser, main


def test_version_is_printed(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"alertops {__version__}"


def test_no_subcommand_prints_help_and_fails(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "usage: alertops" in capsys.readouterr().out


def test_help_lists_every_installed_subcommand() -> None:
    help_text = build_parser().format_help()
    listed = [name for name in SUBCOMMANDS if f"    {name}" in help_text]
    # Every subcommand whose module exists must be listed; none may be silently lost.
    from step_runtime.cli import _available

    present = [n for n, (mod, _) in SUBCOMMANDS.items() if _available(mod)]
    assert listed == present


def test_console_script_runs_as_a_module() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "step_runtime", "--version"],
        capture_output=True, text=True, timeout=60, check=True,
    )
    assert __version__ in out.stdout


def test_console_script_exits_with_the_subcommands_status() -> None:
    # run(): main(), then the exit without the interpreter's last garbage collection.
    done = subprocess.run([sys.executable, "-m", "step_runtime"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "usage: alertops" in done.stdout


@pytest.mark.parametrize("preset,expected", [(None, "1"), ("4", "4")])
def test_openblas_runs_on_one_thread_unless_the_user_says(preset, expected, monkeypatch) -> None:
    if preset is None:
        monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    else:
        monkeypatch.setenv("OPENBLAS_NUM_THREADS", preset)
    assert main([]) == 2
    assert os.environ["OPENBLAS_NUM_THREADS"] == expected
