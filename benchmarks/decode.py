"""Per-packet CPU cost of decoding alerts: fastavro (whole packet) against the projected decoder.

Runs on one core in this process. ZTF: synthetic alerts made from the real packets (every schema
version shipped). LSST: realistic v11.1 alerts (step/synthetic.py LsstAlerts: every field filled,
30 previous diaSources, 30 forced sources, three real 34,560-byte cutouts) in the Confluent wire
format. Prints microseconds per packet (best of several passes, process CPU time) of:

- fastavro: the whole packet decoded (`fastavro.reader`, or `schemaless_reader` after the
  Confluent header), what a plain step does;
- fastavro + the alert model: the same, then mapped to what processors read (alert_model.canonical);
- projected: alertops' decoder building only the fields the features, model and validation read,
  in generated Python only, and with its regular-expression fast path (what a step runs).

Last line: `RESULT decode survey=<s> fastavro_us=<a> projected_us=<b> speedup=<a/b>`.

    ~/.cache/alertops/venv/bin/python benchmarks/decode.py [--survey ztf|lsst] [--packets 2000] [--passes 5]
"""
from __future__ import annotations

import argparse
import io
import json
import time
from pathlib import Path
from typing import Any, Callable

import fastavro

from step_runtime.step import alert_model
from step_runtime.step.avro.decoders import AlertDecoder
from step_runtime.step.avro.schemas import SchemaCache, SchemaDirectory
from step_runtime.step.features import READS
from step_runtime.step.synthetic import LsstAlerts, real_cutouts, synthetic_alerts
from step_runtime.step.validate import VALIDATED_FIELDS

ROOT = Path(__file__).resolve().parents[1]
ALERTS = ROOT / "examples" / "data" / "alerts"
LSST = ROOT / "examples" / "data" / "lsst"
FIELDS = READS | VALIDATED_FIELDS  # what a features or model step decodes


def per_packet_us(decode: Callable[[bytes], Any], packets: list[bytes], passes: int) -> float:
    """Best-of-`passes` CPU microseconds per packet (after one warm-up pass)."""
    for value in packets:
        decode(value)
    best = float("inf")
    for _ in range(passes):
        start = time.process_time()
        for value in packets:
            decode(value)
        best = min(best, time.process_time() - start)
    return best / len(packets) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--survey", choices=["ztf", "lsst"], default="ztf")
    parser.add_argument("--packets", type=int, default=2000)
    parser.add_argument("--passes", type=int, default=5)
    args = parser.parse_args()
    survey = alert_model.SURVEYS[args.survey]
    schemas: dict[int, bytes | str] = {}
    if args.survey == "ztf":
        packets = [value for _, _, value in synthetic_alerts(ALERTS, args.packets)]

        def whole(value: bytes) -> Any:
            return next(fastavro.reader(io.BytesIO(value)))

        writer = fastavro.parse_schema(fastavro.reader(io.BytesIO(packets[0])).writer_schema)
    else:
        made = LsstAlerts(LSST / "schema", cutouts=real_cutouts(LSST / "alerts" / "boom_25409136044802067.avro",
                                                                LSST / "schema"))
        packets = [made.packet(i)[2] for i in range(args.packets)]
        schemas = SchemaCache(SchemaDirectory(LSST / "schema")).resolve({made.schema_id})
        writer = fastavro.parse_schema(json.loads(schemas[made.schema_id]))

        def whole(value: bytes) -> Any:
            return fastavro.schemaless_reader(io.BytesIO(value[5:]), writer, None)

    size = sum(map(len, packets)) / len(packets)
    print(f"{len(packets)} synthetic {args.survey} packets, {size / 1000:.1f} kB on average, {args.passes} passes")
    projection = alert_model.plan(survey, FIELDS, writer)

    def mapped(value: bytes) -> Any:
        return alert_model.canonical(whole(value), survey, projection)

    python_only = AlertDecoder(survey, FIELDS, use_regex=False)
    projected = AlertDecoder(survey, FIELDS)
    full = per_packet_us(whole, packets, args.passes)
    print(f"fastavro, whole packet            {full:8.1f} us/packet")
    fm = per_packet_us(mapped, packets, args.passes)
    print(f"fastavro + the alert model        {fm:8.1f} us/packet")
    py = per_packet_us(lambda v: python_only(v, schemas), packets, args.passes)
    print(f"projected, generated Python       {py:8.1f} us/packet")
    ours = per_packet_us(lambda v: projected(v, schemas), packets, args.passes)
    print(f"projected, with regex records     {ours:8.1f} us/packet  ({1e6 / ours:.0f} packets/s on one core)")
    print(f"RESULT decode survey={args.survey} fastavro_us={full:.1f} projected_us={ours:.1f} speedup={full / ours:.2f}")


if __name__ == "__main__":
    main()
