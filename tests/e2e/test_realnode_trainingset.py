"""TrainingSetBuild as real pods on the real node: a 2-partition Indexed Job and the merge Job run
`alertops build` in the built image on a volume every pod mounts (a hostPath PersistentVolume of
the test environment), and the result is exactly what `alertops build` gives on this machine; a
build on bad input fails with the build's own message in status.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import yaml
from operator_harness import REPO, Kubectl, OperatorProcess, condition, wait_for
from realnode_harness import RealNode, host_path_volume

DEMO = REPO / "examples" / "trainingset-demo.yaml"
CATALOGS = REPO / "examples" / "data" / "catalogs"
OUTPUT = "training/vsx-labeled.parquet"


def build_manifest(name: str, inputs: str, parallelism: int, image: str | None = None,
                   claim: str | None = None, **spec: object) -> dict:
    """examples/trainingset-demo.yaml with its inputs under `inputs` (the volume in a pod, a local
    folder for `alertops build`) and its output at OUTPUT (relative: under --output-dir)."""
    doc = yaml.safe_load(DEMO.read_text())
    doc["metadata"] = {"name": name}
    s = doc["spec"]
    s["parallelism"] = parallelism
    for table in [s["source"], *s["catalogs"]]:
        table["path"] = table["path"].replace("data/catalogs", inputs)
    s["output"]["path"] = OUTPUT
    if image:
        s["image"] = image
    if claim:
        s["dataVolumeClaim"] = claim
    s.update(spec)
    return doc


def copy_inputs(folder: Path) -> None:
    shutil.copytree(CATALOGS, folder / "inputs", ignore=shutil.ignore_patterns("*.md"))
    for p in [folder / "inputs", *(folder / "inputs").rglob("*")]:
        p.chmod(0o777 if p.is_dir() else 0o666)


def phase(kubectl: Kubectl, ns: str, name: str, *phases: str) -> dict | None:
    obj = kubectl.get("trainingsetbuild", name, ns)
    return obj if obj and (obj.get("status") or {}).get("phase") in phases else None


def local_build(manifest: dict, folder: Path) -> subprocess.CompletedProcess[str]:
    """`alertops build` on this machine, as a user runs it."""
    path = folder / "trainingset.yaml"
    path.write_text(yaml.safe_dump(manifest))
    return subprocess.run([str(Path(sys.executable).parent / "alertops"), "build", str(path),
                           "--output-dir", str(folder / "out")], capture_output=True, text=True, timeout=600)


def test_partitioned_build_on_real_pods_matches_alertops_build(kubectl: Kubectl, realnode: RealNode,
                                                                operator: OperatorProcess, realnode_namespace: str,
                                                                tmp_path: Path):
    import pyarrow.parquet as pq

    ns, name = realnode_namespace, "vsx"
    volume = host_path_volume(kubectl, realnode, ns, "training-data")
    copy_inputs(volume)
    kubectl.apply(yaml.safe_dump(build_manifest(name, "/data/inputs", 2, realnode.image, "training-data")), ns)
    build = wait_for(lambda: phase(kubectl, ns, name, "Succeeded", "Failed"), 420, "the build to finish")
    assert build["status"]["phase"] == "Succeeded", json.dumps(build["status"], indent=1)
    assert build["status"]["progress"] == "2/2"
    jobs = kubectl.json("get", "jobs", "-n", ns, "-l", f"app.kubernetes.io/instance={name}")["items"]
    roles = {j["metadata"]["labels"]["alertops.io/role"]: j for j in jobs}
    assert set(roles) == {"partition", "merge"} and roles["partition"]["status"]["succeeded"] == 2
    build_pods = kubectl.json("get", "pods", "-n", ns, "-l", f"app.kubernetes.io/instance={name}")["items"]
    assert len(build_pods) == 3 and {p["spec"]["nodeName"] for p in build_pods} == {realnode.name}

    # The same manifest, inputs in a local folder, through `alertops build` on this machine.
    copy_inputs(tmp_path)
    local = local_build(build_manifest(name, str(tmp_path / "inputs"), 2), tmp_path)
    assert local.returncode == 0, local.stderr[-3000:]
    ours, theirs = pq.read_table(volume / OUTPUT), pq.read_table(tmp_path / "out" / OUTPUT)
    assert ours.num_rows > 0 and ours.equals(theirs), f"{ours.num_rows} rows in the cluster, {theirs.num_rows} locally"
    assert build["status"]["rowsOut"] == ours.num_rows
    summary = json.loads((volume / f"{OUTPUT}.summary.json").read_text())
    local_summary = json.loads((tmp_path / "out" / f"{OUTPUT}.summary.json").read_text())
    for key in ("rows_in", "rows_out", "conflicts", "classes"):
        assert summary.get(key) == local_summary.get(key), key

    def counts(s: dict) -> dict:  # the catalogs' counts; their origin is where the inputs were
        return {name: {k: v for k, v in c.items() if k != "origin"} for name, c in s["catalogs"].items()}

    assert counts(summary) == counts(local_summary)


def test_build_on_bad_input_fails_with_the_builds_message(kubectl: Kubectl, realnode: RealNode,
                                                          operator: OperatorProcess, realnode_namespace: str,
                                                          tmp_path: Path):
    ns, name = realnode_namespace, "broken"
    volume = host_path_volume(kubectl, realnode, ns, "training-data")
    copy_inputs(volume)
    bad = build_manifest(name, "/data/inputs", 1, realnode.image, "training-data", backoffLimit=0)
    bad["spec"]["source"]["idColumn"] = "no_such_column"
    kubectl.apply(yaml.safe_dump(bad), ns)
    build = wait_for(lambda: phase(kubectl, ns, name, "Succeeded", "Failed"), 300, "the build to finish")
    assert build["status"]["phase"] == "Failed"
    # What `alertops build` itself says about this input, word for word, reaches status.
    expected = "no column 'no_such_column' (from spec.source.idColumn)"
    copy_inputs(tmp_path)
    bad_local = build_manifest(name, str(tmp_path / "inputs"), 1)
    bad_local["spec"]["source"]["idColumn"] = "no_such_column"
    local = local_build(bad_local, tmp_path)
    assert local.returncode == 2 and expected in local.stderr, local.stderr
    assert expected in build["status"]["lastError"], build["status"]["lastError"]
    assert expected in condition(build, "Ready")["message"]
