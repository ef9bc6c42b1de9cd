"""Per-packet CPU cost of decoding ZTF alerts: fastavro (full), fastavro + project_alert, projected.

Runs on one core in this process, over synthetic alerts made from the real packets (every schema
version shipped). Prints microseconds per packet (best of several passes, process CPU time) and,
last, `RESULT decode fastavro_us=<a> projected_us=<b> speedup=<a/b>` where a is fastavro +
project_alert (what a DecodePool worker did before) and b the projected decoder.

    ~/.cache/alertops/venv/bin/python benchmarks/decode.py [--packets 2000] [--passes 5]
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any, Callable

from step_runtime.step.avro.projection import ProjectedZtfDecoder
from step_runtime.step.decode import decode_ztf_avro, make_decoder
from step_runtime.step.decode import ALERT_CANDIDATE_FIELDS, ALERT_TOP_FIELDS, project_alert
from step_runtime.step.synthetic import synthetic_alerts

ALERTS = Path(__file__).resolve().parents[1] / "examples" / "data" / "alerts"


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
    parser.add_argument("--packets", type=int, default=2000)
    parser.add_argument("--passes", type=int, default=5)
    args = parser.parse_args()
    packets = [value for _, _, value in synthetic_alerts(ALERTS, args.packets)]
    size = sum(map(len, packets)) / len(packets)
    print(f"{len(packets)} synthetic ZTF packets, {size / 1000:.1f} kB on average, {args.passes} passes")

    def fastavro_projected(value: bytes) -> dict[str, Any]:
        return project_alert(decode_ztf_avro(value))

    projected = make_decoder("ztf-avro", None, project=True)
    python_only = ProjectedZtfDecoder(ALERT_TOP_FIELDS, ALERT_CANDIDATE_FIELDS, fastavro_projected, use_regex=False)
    full = per_packet_us(decode_ztf_avro, packets, args.passes)
    print(f"fastavro full decode          {full:8.1f} us/packet")
    fa = per_packet_us(fastavro_projected, packets, args.passes)
    print(f"fastavro + project_alert      {fa:8.1f} us/packet")
    py = per_packet_us(python_only, packets, args.passes)
    print(f"projected, generated Python   {py:8.1f} us/packet")
    ours = per_packet_us(projected, packets, args.passes)
    print(f"projected, with regex records {ours:8.1f} us/packet  ({1e6 / ours:.0f} packets/s on one core)")
    print(f"RESULT decode fastavro_us={fa:.1f} projected_us={ours:.1f} speedup={fa / ours:.2f}")


if __name__ == "__main__":
    main()
