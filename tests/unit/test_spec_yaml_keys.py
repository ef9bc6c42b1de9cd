"""YAML that means something other than it says: repeated keys and YAML 1.1's booleans."""
from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from outputs_support import ROOT, error_lines, run_cli

from step_runtime.spec.common import SpecError, load_yaml_documents, read_manifest

STEP = textwrap.dedent(f"""\
    apiVersion: alertops.io/v1alpha1
    kind: PipelineStep
    metadata: {{name: t}}
    spec:
      source: {{files: {{path: {ROOT / 'examples/data/alerts'}, format: ztf-avro}}}}
      processor:
        features: {{}}
      sinks: [{{file: {{path: out/a.jsonl, format: jsonl}}}}]
      processor:
        python: {{function: "json:dumps"}}
    """)


def test_two_processor_blocks_are_refused_naming_both_lines(tmp_path: Path) -> None:
    manifest = tmp_path / "step.yaml"
    manifest.write_text(STEP)
    res = run_cli("run", str(manifest), "--http-port", "0")
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert error_lines(res.stderr) == [
        f"alertops run: {manifest}: line 9: duplicate key 'processor' (first at line 6); YAML would silently "
        "keep only the last one: remove or merge one of them"]
    assert not (tmp_path / "out").exists()


def _build_with_label_map(tmp_path: Path, label_map: str):
    """`alertops build` of a manifest whose catalog's labelMap is `label_map`, written on line 10."""
    manifest = tmp_path / "ts.yaml"
    manifest.write_text(textwrap.dedent(f"""\
        apiVersion: alertops.io/v1alpha1
        kind: TrainingSetBuild
        metadata: {{name: t}}
        spec:
          source: {{path: src.csv}}
          catalogs:
            - name: linear
              path: cat.csv
              labelColumn: LCtype
              labelMap: {label_map}
              radiusArcsec: 1
          output: {{path: out.parquet}}
        """))
    return run_cli("build", str(manifest))


def test_label_map_keys_that_yaml_makes_equal_are_refused(tmp_path: Path) -> None:
    res = _build_with_label_map(tmp_path, "{1: RRL, true: Y}")
    assert res.returncode == 2 and "Traceback" not in res.stderr
    lines = error_lines(res.stderr)
    assert len(lines) == 1
    assert "line 10: key 'true' is the same key as '1' on line 10" in lines[0]
    assert "quote keys meant as text ('1', 'true')" in lines[0]


@pytest.mark.parametrize("text,line", [
    ("m: {0: a, no: b}\n", "key 'no' is the same key as '0'"),
    ("m: {off: a, false: b}\n", "key 'false' is the same key as 'off'"),
    ("m: {1: a, 1.0: b}\n", "key '1.0' is the same key as '1'"),
    ("a: 1\nb:\n  c: 1\n  c: 2\n", "line 4: duplicate key 'c' (first at line 3)"),
    ("---\nkind: A\n---\nkind: B\nkind: C\n", "line 5: duplicate key 'kind' (first at line 4)"),
])
def test_equal_keys_are_refused(text: str, line: str, tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(text)
    with pytest.raises(SpecError, match=None) as exc:
        read_manifest(path, "PipelineStep")
    assert line in str(exc.value)


def test_a_merge_may_still_be_overridden_and_distinct_keys_pass() -> None:
    docs = load_yaml_documents("base: &b {x: 1, y: 2}\nd:\n  <<: *b\n  x: 3\nm: {'1': a, 'true': b, 2: c}\n")
    assert docs == [{"base": {"x": 1, "y": 2}, "d": {"x": 3, "y": 2}, "m": {"1": "a", "true": "b", 2: "c"}}]


def test_a_yaml_boolean_where_text_is_expected_gets_a_hint(tmp_path: Path) -> None:
    res = _build_with_label_map(tmp_path, "{yes: Y}")
    assert res.returncode == 2
    assert "(got True); YAML reads unquoted yes/no/on/off/true/false as a boolean: quote it" in res.stderr
