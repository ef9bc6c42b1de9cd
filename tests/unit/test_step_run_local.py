"""`alertops run` on files: the demo end to end, dead letters, python and crossmatch processors."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from step_runtime.spec.pipelinestep import PythonProcessor
from step_runtime.step.loop import transform
from step_runtime.step.messages import Message
from step_runtime.step.processors import PythonStep

ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "examples" / "data" / "alerts"


def run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "step_runtime", "run", *args, "--http-port", "0"],
                          capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def test_demo_writes_predictions_and_dead_letters(tmp_path: Path) -> None:
    res = run(str(ROOT / "examples" / "step-demo.yaml"), "--output-dir", str(tmp_path))
    assert res.returncode == 0, res.stderr
    assert "messages in: 11  outputs: 9  dead-lettered: 2" in res.stdout
    table = pq.read_table(tmp_path / "step-demo" / "probabilities.parquet").to_pylist()
    assert len(table) == 9 and len({r["oid"] for r in table}) == 9
    assert all(len(r["probabilities"]) == 5 for r in table)
    lines = (tmp_path / "step-demo" / "probabilities.jsonl").read_text().splitlines()
    assert [json.loads(x)["candid"] for x in lines] == [r["candid"] for r in table]
    dead = [json.loads(x) for x in (tmp_path / "step-demo" / "dead-letters.jsonl").read_text().splitlines()]
    assert {d["stage"] for d in dead} == {"decode", "validate"}
    assert {d["key"] for d in dead} == {"corrupt-87704463155000.avro", "87704463155001-proto.avro"}
    for line in res.stderr.splitlines():  # logs are JSON lines
        assert json.loads(line)["logger"].startswith("alertops")
    assert not (ROOT / "examples" / "step-demo").exists()  # outputs went to --output-dir


def test_tampered_model_is_refused_with_both_hashes(tmp_path: Path) -> None:
    model = tmp_path / "models" / "demo_classifier.joblib"
    model.parent.mkdir()
    original = (ROOT / "examples/models/demo_classifier.joblib").read_bytes()
    model.write_bytes(original[:-1] + bytes([original[-1] ^ 0xFF]))  # one byte changed, whatever it was
    (tmp_path / "data").symlink_to(ROOT / "examples" / "data")
    manifest = tmp_path / "step.yaml"
    manifest.write_text((ROOT / "examples" / "step-demo.yaml").read_text())
    res = run(str(manifest), "--output-dir", str(tmp_path / "out"))
    assert res.returncode == 2
    assert "25d1202f0255a2a18aed52f51125d5afffdfade8ae83fab23793be89d141f265" in res.stderr
    assert "refusing to load" in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "out").exists()


def test_bad_manifest_is_exit_2_with_the_field(tmp_path: Path) -> None:
    manifest = tmp_path / "step.yaml"
    manifest.write_text(textwrap.dedent("""
        apiVersion: alertops.io/v1alpha1
        kind: PipelineStep
        metadata: {name: x}
        spec:
          source: {files: {path: ., format: ztf-avro}}
          processor: {features: {}}
          sinks: [{mongodb: {uri: {name: mongo, key: uri}, database: d, collection: c, key: [oid]}}]
        """))
    res = run(str(manifest))
    assert res.returncode == 2
    assert "Secret 'mongo' key 'uri'" in res.stderr and "ALERTOPS_SECRET_MONGO_URI" in res.stderr


def _msg(i: int) -> Message:
    return Message(b"{}", "t", 0, i)


def test_python_processor_dead_letters_only_the_failing_messages(tmp_path: Path) -> None:
    (tmp_path / "userstep.py").write_text(textwrap.dedent("""
        def double(records, config):
            out = []
            for r in records:
                if r["x"] < 0:
                    raise ValueError(f"negative x {r['x']}")
                out.append({"oid": r["oid"], "y": 2 * r["x"] * int(config["scale"])})
            return out
        """))
    step = PythonStep(PythonProcessor(function="userstep:double", path=str(tmp_path), config={"scale": "3"}), tmp_path)
    msgs = [Message(json.dumps({"oid": f"o{i}", "x": x}).encode(), "t", 0, i) for i, x in enumerate([1, -1, 2])]
    from step_runtime.step.decode import decode_json, inline_decode_many
    msgs.append(Message(b"not json", "t", 0, 3))
    result = transform(msgs, inline_decode_many(decode_json)([m.value for m in msgs]), step)
    assert result.outputs == [{"oid": "o0", "y": 6}, {"oid": "o2", "y": 12}]
    assert [(d.message.offset, d.stage) for d in result.dead] == [(3, "decode"), (1, "process")]
    assert "negative x -1" in result.dead[1].error


def test_crossmatch_processor_attaches_the_nearest_catalog_object(tmp_path: Path) -> None:
    pytest.importorskip("step_runtime.crossmatch")
    from step_runtime.spec.pipelinestep import CrossmatchProcessor
    from step_runtime.step.alert_model import ZTF
    from step_runtime.step.decode import alerts_of
    from step_runtime.step.processors import CrossmatchStep

    alerts = [alerts_of(p.read_bytes())[0] for p in sorted(ALERTS.glob("[0-9]*.avro")) if "proto" not in p.name]
    cat = tmp_path / "cat.csv"
    # one catalog star 1 arcsec north of the first alert, one far away
    ra0, dec0 = alerts[0]["source"]["ra"], alerts[0]["source"]["dec"]
    cat.write_text(f"name,ra,dec,cls\nnear,{ra0},{dec0 + 1 / 3600},RRab\nfar,{ra0},{dec0 + 1},EW\n")
    step = CrossmatchStep(CrossmatchProcessor(catalog=str(cat), id_column="name", columns=["cls"],
                                              radius_arcsec=2.0), tmp_path, ZTF)
    outputs, failures = step.process(alerts)
    assert failures == []
    assert outputs[0]["xm_id"] == "near" and outputs[0]["xm_cls"] == "RRab"
    assert outputs[0]["xm_separation_arcsec"] == pytest.approx(1.0, abs=1e-6)
    assert all(o["xm_id"] is None for o in outputs[1:])


def test_pipelined_loop_with_decode_workers_outputs_every_message_once_in_order(tmp_path: Path) -> None:
    import threading

    from step_runtime.spec.pipelinestep import FeaturesProcessor, FileSource
    from step_runtime.step.alert_model import ZTF
    from step_runtime.step.deadletter import FileDeadLetters
    from step_runtime.step.decode import make_decoder
    from step_runtime.step.decode_pool import DecodePool
    from step_runtime.step.loop import StepRunner
    from step_runtime.step.observe import Health, StepMetrics
    from step_runtime.step.processors import FeaturesStep
    from step_runtime.step.sinks.files import FileSinkWriter
    from step_runtime.step.sources import FileReplaySource
    from step_runtime.step.validate import AlertGate

    gate = AlertGate(ZTF)
    processor = FeaturesStep(FeaturesProcessor(), tmp_path, ZTF)
    fields = processor.reads | gate.reads
    pool = DecodePool("ztf-avro", None, workers=2, fields=fields, gate=gate, prepare=processor.prepare)
    sink = FileSinkWriter("out", tmp_path / "out.jsonl", "jsonl")
    runner = StepRunner(source=FileReplaySource(FileSource(path=str(ALERTS), batch_size=3), tmp_path),
                        decode=make_decoder("ztf-avro", None, fields), processor=processor, gate=gate, sinks=[sink],
                        dead_letters=FileDeadLetters(tmp_path / "dead.jsonl"), metrics=StepMetrics("t"),
                        health=Health(), stop=threading.Event(), initial_backoff_s=0.01, max_backoff_s=0.1,
                        decode_submit=pool.submit)
    try:
        summary = runner.run()
    finally:
        runner.close()
        pool.close()
    assert (summary.messages_in, summary.outputs, summary.dead_letters, summary.batches) == (11, 9, 2, 4)
    rows = [json.loads(x) for x in (tmp_path / "out.jsonl").read_text().splitlines()]
    expected = [p.name.split(".")[0] for p in sorted(ALERTS.glob("[0-9]*.avro")) if "proto" not in p.name]
    assert [str(r["candid"]) for r in rows] == expected


def test_lsst_alerts_from_files_through_crossmatch_and_python_processors(tmp_path: Path) -> None:
    """The crossmatch matches on the diaSource position and names LSST's identity columns; the
    python processor gets whole records, cutouts (plain FITS) included."""
    import textwrap

    from step_runtime.spec.pipelinestep import CrossmatchProcessor, PythonProcessor
    from step_runtime.step.alert_model import LSST
    from step_runtime.step.avro.framing import schema_ids
    from step_runtime.step.avro.schemas import SchemaCache, SchemaDirectory
    from step_runtime.step.decode import alerts_of, make_decoder
    from step_runtime.step.processors import CrossmatchStep, PythonStep

    lsst = Path(__file__).resolve().parents[2] / "examples" / "data" / "lsst"
    value = (lsst / "alerts" / "boom_25409136044802067.avro").read_bytes()
    schemas = SchemaCache(SchemaDirectory(lsst / "schema")).resolve(schema_ids([value]))
    alert = alerts_of(value, "lsst-avro", schemas)[0]
    ra, dec = alert["source"]["ra"], alert["source"]["dec"]
    (tmp_path / "cat.csv").write_text(f"name,ra,dec\nnear,{ra},{dec + 0.5 / 3600}\n")
    step = CrossmatchStep(CrossmatchProcessor(catalog="cat.csv", id_column="name", radius_arcsec=1.0), tmp_path, LSST)
    (out,), failures = step.process([alert])
    assert failures == [] and out["xm_id"] == "near" and out["xm_separation_arcsec"] == pytest.approx(0.5, abs=1e-6)
    assert (out["survey"], out["oid"], out["diaSourceId"]) == ("lsst", "25401295582003262", 25409136044802067)
    (tmp_path / "stamps.py").write_text(textwrap.dedent("""
        def sizes(records, config):
            return [{"diaSourceId": r["diaSource"]["diaSourceId"], "science": len(r["cutoutScience"]),
                     "fits": r["cutoutScience"][:6].decode()} for r in records]
        """))
    python = PythonStep(PythonProcessor(function="stamps:sizes", path=str(tmp_path)), tmp_path)
    records = make_decoder("lsst-avro", None, None)(value, schemas)
    assert python.process(records)[0] == [{"diaSourceId": 25409136044802067, "science": 34560, "fits": "SIMPLE"}]


def test_decode_stage_screens_and_prepares_with_the_same_outputs_as_the_step_process(tmp_path: Path) -> None:
    """Decode workers screen each alert and run the processor's prepare; the outputs are those of
    preparing in the step process, and a prepare that fails there leaves the records to process()."""
    from step_runtime.spec.pipelinestep import ModelProcessor
    from step_runtime.step.alert_model import ZTF
    from step_runtime.step.decode import inline_decode_many, make_decoder
    from step_runtime.step.processors import ModelStep, Prepared
    from step_runtime.step.validate import AlertGate, Rejected

    demo = ROOT / "examples" / "models" / "demo_classifier.joblib"
    import hashlib
    step = ModelStep(ModelProcessor(path=str(demo), sha256=hashlib.sha256(demo.read_bytes()).hexdigest(),
                                    classifierName="demo", classifierVersion="1"), tmp_path, ZTF)
    gate = AlertGate(ZTF)
    assert step.prepare is not None and step.reads is not None
    decode = make_decoder("ztf-avro", None, step.reads | gate.reads)
    files = sorted(p for p in ALERTS.glob("*.avro"))
    msgs = [Message(p.read_bytes(), "t", 0, i, p.name.encode(), None) for i, p in enumerate(files)]
    values = [m.value for m in msgs]

    screened = inline_decode_many(decode, gate, step.prepare)(values)
    items = [r for recs in screened if isinstance(recs, list) for r in recs]
    assert any(isinstance(r, Rejected) and not r.filtered for r in items)  # the demo's invalid alert
    assert sum(isinstance(r, Prepared) for r in items) == 9

    def broken(records: list) -> list:
        raise RuntimeError("prepare failed in a worker")

    unprepared = inline_decode_many(decode, gate, broken)(values)
    assert not any(isinstance(r, Prepared) for recs in unprepared if isinstance(recs, list) for r in recs)
    plain = transform(msgs, inline_decode_many(decode, gate)(values), step)  # prepared by process()
    for decoded in (screened, unprepared):
        result = transform(msgs, decoded, step)
        assert result.outputs == plain.outputs and len(result.outputs) == 9
        assert [(d.message.key, d.stage, d.error) for d in result.dead] == \
            [(d.message.key, d.stage, d.error) for d in plain.dead]
