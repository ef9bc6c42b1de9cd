"""User mistakes end as one line on stderr with exit status 2; a traceback only with ALERTOPS_DEBUG=1."""
from __future__ import annotations

import hashlib
import pickle
from pathlib import Path

import pytest
from outputs_support import ROOT, assert_one_line, run_cli, unwritable_dir

from step_runtime.cli import build_parser, main
from step_runtime.step.model import ModelError, load_pinned_model

DEMO = ROOT / "examples" / "step-demo.yaml"


@pytest.mark.parametrize("command", ["run", "build"])
def test_manifest_that_is_a_directory(tmp_path: Path, command: str) -> None:
    assert_one_line(run_cli(command, str(tmp_path)), 2,
                    f"alertops {command}: {tmp_path}: is a directory, expected a manifest file")


@pytest.mark.parametrize("command", ["run", "build"])
def test_manifest_that_is_binary(tmp_path: Path, command: str) -> None:
    manifest = tmp_path / "model.yaml"
    manifest.write_bytes(bytes(range(256)) * 4)
    assert_one_line(run_cli(command, str(manifest)), 2, "model.yaml: not a YAML manifest: binary data")
    manifest.write_bytes(b"apiVersion: x\n\x00\x01\x02")
    assert_one_line(run_cli(command, str(manifest)), 2, "model.yaml: not a YAML manifest: binary data (a NUL byte")


def test_http_port_out_of_range(tmp_path: Path) -> None:
    res = run_cli("run", str(DEMO), "--output-dir", str(tmp_path), "--http-port", "70000")
    assert_one_line(res, 2, "alertops run: argument --http-port: expected a port number 0-65535, got 70000")
    res = run_cli("run", str(DEMO), "--output-dir", str(tmp_path), env={"ALERTOPS_HTTP_PORT": "70000"})
    assert_one_line(res, 2, "alertops run: env ALERTOPS_HTTP_PORT: expected a port number 0-65535, got 70000")
    assert not (tmp_path / "step-demo").exists()


def test_operator_ports_out_of_range_and_bad_env_do_not_break_the_cli() -> None:
    assert_one_line(run_cli("operator", "--metrics-port", "70000"), 2,
                    "alertops operator: argument --metrics-port: expected a port number 0-65535, got 70000")
    assert_one_line(run_cli("operator", env={"ALERTOPS_LIVENESS_PORT": "x"}), 2,
                    "argument --liveness-port: expected a port number 0-65535, got 'x'")
    res = run_cli("--version", env={"ALERTOPS_LIVENESS_PORT": "x"})  # was a ValueError for every command
    assert res.returncode == 0 and "Traceback" not in res.stderr


def test_crds_write_into_a_directory_that_cannot_be_written(tmp_path: Path) -> None:
    folder = unwritable_dir(tmp_path)
    assert_one_line(run_cli("crds", "--write", str(folder / "crds")), 2,
                    f"alertops crds: --write {folder / 'crds'}: cannot write")
    (tmp_path / "file").write_text("")
    assert_one_line(run_cli("crds", "--write", str(tmp_path / "file")), 2, "is a file, expected a directory")


def test_unexpected_errors_are_one_line_and_a_traceback_only_with_debug(tmp_path: Path, monkeypatch,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    import pipeline_operator.crds_command as crds_command

    def broken() -> dict[str, str]:
        raise RuntimeError("a bug\nover two lines")

    monkeypatch.setattr(crds_command, "render_files", broken)
    monkeypatch.delenv("ALERTOPS_DEBUG", raising=False)
    assert main(["crds"]) == 1
    assert capsys.readouterr().err == ("alertops crds: failed: RuntimeError: a bug over two lines "
                                       "(set ALERTOPS_DEBUG=1 for a traceback)\n")
    monkeypatch.setenv("ALERTOPS_DEBUG", "1")
    with pytest.raises(RuntimeError):
        main(["crds"])


def test_help_documents_every_exit_status() -> None:
    parser = build_parser()
    helps = [parser.format_help()]
    sub = next(a for a in parser._actions if a.dest == "command")
    helps += [p.format_help() for p in sub.choices.values()]
    for text in helps:
        for status in ("0  success", "1  the environment failed", "2  a mistake to fix"):
            assert status in text


def test_argument_errors_are_one_line() -> None:
    res = run_cli("run")
    assert_one_line(res, 2, "alertops run: the following arguments are required: FILE (see alertops run --help)")


def _pinned(path: Path, data: bytes) -> str:
    path.write_bytes(data)
    return hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("data,says", [
    (bytes.fromhex("3a9f0c11d2e47b8855aa") * 50, "unrecognised binary data (it starts 3a 9f 0c 11"),
    (b"", "the file is empty"),
    (b'{"weights": [1, 2]}', "a text file (it starts '{\"weights\": [1, 2]}')"),
    (b"PK\x03\x04" + bytes(60), "a ZIP archive"),
    (b"\x89HDF\r\n\x1a\n" + bytes(60), "an HDF5 file"),
])
def test_model_file_that_is_not_joblib_says_what_it_is(tmp_path: Path, data: bytes, says: str) -> None:
    path = tmp_path / "random.joblib"
    with pytest.raises(ModelError) as exc:
        load_pinned_model(path, _pinned(path, data))
    message = str(exc.value)
    assert f"cannot load {path}: {says}" in message
    assert "not a joblib or pickle file; expected a fitted scikit-learn classifier saved with joblib.dump" in message


def test_model_pickle_that_is_truncated_or_needs_a_missing_module(tmp_path: Path) -> None:
    path = tmp_path / "m.joblib"
    with pytest.raises(ModelError, match=r"a pickle \(protocol \d\) that ends early \(truncated\?\)"):
        load_pinned_model(path, _pinned(path, pickle.dumps({"a": list(range(100))})[:40]))
    # A pickle of a class from a module this image lacks (the opcodes of pickle protocol 2).
    needs = b"\x80\x02cno_such_module_xyz\nModel\nq\x00)\x81q\x01."
    with pytest.raises(ModelError, match="needs the Python module 'no_such_module_xyz', which is not installed"):
        load_pinned_model(path, _pinned(path, needs))
