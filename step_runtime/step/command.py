"""`alertops run FILE`: run a PipelineStep manifest locally or in a pod."""
from __future__ import annotations

import argparse
import gc
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from step_runtime.cli import port_number

DEFAULT_HTTP_PORT = 8080
DEFAULT_SHUTDOWN_S = 25.0  # under Kubernetes' default 30 s grace period


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `alertops run`."""
    parser.add_argument("manifest", metavar="FILE", help="PipelineStep manifest (YAML)")
    parser.add_argument("--output-dir", metavar="DIR",
                        help="base for relative output paths (file sinks, dead-letter file)")
    parser.add_argument("--http-port", type=port_number, metavar="N", default=None,
                        help="port of /healthz /readyz /metrics (default 8080, env ALERTOPS_HTTP_PORT; 0 = off)")
    parser.add_argument("--exit-when-idle", type=float, metavar="SECONDS", default=None,
                        help="Kafka source: exit 0 after this long without messages (replays, benchmarks)")
    parser.add_argument("--shutdown-timeout", type=float, metavar="SECONDS",
                        default=float(os.environ.get("ALERTOPS_SHUTDOWN_TIMEOUT_S", DEFAULT_SHUTDOWN_S)),
                        help="after SIGTERM, exit by force after this long (default 25)")
    parser.add_argument("--log-level", default=os.environ.get("ALERTOPS_LOG_LEVEL", "INFO"),
                        choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="log level (default INFO)")


def _error(message: str) -> int:
    print(f"alertops run: {message}", file=sys.stderr)
    return 2


def main(args: argparse.Namespace) -> int:
    """Run the step; 0 when done or stopped cleanly, 2 on a user error, 1 on a runtime failure."""
    import logging

    from step_runtime.spec.common import SpecError, parse_spec, read_manifest
    from step_runtime.spec.pipelinestep import KIND, PipelineStepSpec
    from step_runtime.step.deadletter import build_dead_letters
    from step_runtime.step.decode import make_decoder, survey_of
    from step_runtime.step.errors import DecodeError
    from step_runtime.step.loop import StepRunner
    from step_runtime.step.model import ModelError
    from step_runtime.step.observe import Health, StepMetrics, serve_http, setup_logging
    from step_runtime.step.outputs import prepare_file_outputs, publish_file_outputs
    from step_runtime.step.processors import build_processor
    from step_runtime.step.sinks import build_sink
    from step_runtime.step.sources import build_schema_cache, build_source
    from step_runtime.step.validate import AlertGate
    from step_runtime.storage.fetch import FetchPolicy

    setup_logging(args.log_level)
    log = logging.getLogger("alertops.step")
    manifest_path = Path(args.manifest)
    try:
        doc = read_manifest(manifest_path, KIND)
        spec = parse_spec(PipelineStepSpec, doc["spec"], str(manifest_path))
    except SpecError as exc:
        return _error(str(exc))
    name = str((doc.get("metadata") or {}).get("name") or manifest_path.stem)
    base_dir = manifest_path.resolve().parent
    output_base = Path(args.output_dir).resolve() if args.output_dir else base_dir

    src = spec.source.kafka or spec.source.files
    assert src is not None
    schema_path = None
    if src.schema_path:
        schema_path = Path(src.schema_path)
        schema_path = schema_path if schema_path.is_absolute() else base_dir / schema_path
    survey = survey_of(src.format)
    try:
        processor = build_processor(spec.processor, base_dir, survey, FetchPolicy.from_spec(spec.fetch))
        # Alert processors declare the alert fields they read: the decoder builds only those (and
        # what validation and the alert filter read). The python processor gets whole records.
        gate = None
        fields = None
        if processor.reads is not None and survey is not None:
            gate = AlertGate(survey, spec.alert_filter.min_reliability, spec.alert_filter.solar_system)
            fields = processor.reads | gate.reads
        elif spec.alert_filter.min_reliability is not None:
            raise ValueError("spec.alertFilter.minReliability: only alert processors (features, model on alerts, "
                             "crossmatch) filter alerts")
        decode = make_decoder(src.format, schema_path, fields)
        schemas = build_schema_cache(src, base_dir) if survey is not None else None
        sinks = [build_sink(s, i, output_base, survey.name if survey else None) for i, s in enumerate(spec.sinks)]
        kafka = spec.source.kafka
        dead_letters = build_dead_letters(spec.dead_letter, kafka.bootstrap_servers if kafka else None,
                                          kafka.auth if kafka else None, output_base)
        source = build_source(spec.source, base_dir)
        prepare_file_outputs(spec, sinks, dead_letters, base_dir, output_base)
    except (SpecError, ModelError, DecodeError, ValueError, ImportError) as exc:
        return _error(str(exc))

    metrics = StepMetrics(name)
    health = Health()
    stop = threading.Event()
    server = None
    explicit = args.http_port is not None or "ALERTOPS_HTTP_PORT" in os.environ
    try:
        port = (args.http_port if args.http_port is not None
                else port_number(os.environ.get("ALERTOPS_HTTP_PORT", str(DEFAULT_HTTP_PORT))))
    except argparse.ArgumentTypeError as exc:
        return _error(f"env ALERTOPS_HTTP_PORT: {exc}")
    if port:
        try:
            server = serve_http(port, health, metrics)
        except OSError as exc:
            if explicit:
                return _error(f"--http-port {port}: cannot listen: {exc}")
            # A local run on the default port should not fail because 8080 is taken.
            log.warning("HTTP endpoints off: default port taken", extra={"fields": {"port": port, "error": str(exc)}})

    def on_signal(signum: int, _frame: Any) -> None:
        if stop.is_set():
            os._exit(1)  # second signal: leave now; nothing partial was committed
        log.info("stop requested", extra={"fields": {"signal": signal.Signals(signum).name}})
        stop.set()
        # Hard deadline: a sink call stuck past the grace period must not keep the pod alive.
        timer = threading.Timer(args.shutdown_timeout, lambda: os._exit(1))
        timer.daemon = True
        timer.start()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    pool = None
    if src.decode_workers > 0:
        from step_runtime.step.decode_pool import DecodePool
        pool = DecodePool(src.format, schema_path, src.decode_workers, fields, gate=gate, prepare=processor.prepare)

    retry = spec.retry
    runner = StepRunner(source=source, decode=decode, processor=processor, gate=gate, schemas=schemas,
                        sinks=sinks, dead_letters=dead_letters, metrics=metrics, health=health, stop=stop,
                        initial_backoff_s=retry.initial_backoff_ms / 1000.0,
                        max_backoff_s=retry.max_backoff_ms / 1000.0,
                        exit_when_idle_s=args.exit_when_idle,
                        preview_rows=20 if spec.source.files is not None else 0,
                        decode_submit=pool.submit if pool is not None else None)
    log.info("step starting", extra={"fields": {"step": name, "processor": spec.processor.kind(),
                                                 "sinks": [s.name for s in sinks], "http_port": port if server else None}})
    # What exists now (modules, the model, clients, parsed schemas) lives as long as the step.
    # Frozen, the garbage collector no longer walks it at each full collection of the alerts in
    # flight (a tenth of the step process's CPU), nor do the decode workers forked from it.
    gc.collect()
    gc.freeze()
    try:
        summary = runner.run()
        publish_file_outputs(spec, sinks, dead_letters, complete=not summary.stopped_by_signal)
    except (ValueError, SpecError) as exc:
        log.error("step failed", extra={"fields": {"error": str(exc)}})
        print(f"alertops run: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, SpecError) else 1
    finally:
        gc.unfreeze()  # collectable again, for a caller that goes on (tests run steps in-process)
        runner.close()
        if pool is not None:
            pool.close()
        if server is not None:
            server.shutdown()
    log.info("step finished", extra={"fields": {
        "messages_in": summary.messages_in, "outputs": summary.outputs,
        "dead_letters": summary.dead_letters, "filtered": dict(summary.filtered), "batches": summary.batches,
        "stopped_by_signal": summary.stopped_by_signal}})
    if spec.source.files is not None:
        print_summary(summary, [s.name for s in sinks])
    return 0


def print_summary(summary: Any, sink_names: list[str]) -> None:
    """A short table of the first outputs and the counts, for local runs."""
    rows = summary.preview
    if rows:
        if "probabilities" in rows[0]:
            cols = [c for c in ("oid", "candid", "diaSourceId", "class_name", "probability", "classifier_name",
                                "classifier_version") if c in rows[0]]
        else:
            cols = [c for c in rows[0] if not isinstance(rows[0][c], (list, dict))][:8]
        table = [[_cell(r.get(c)) for c in cols] for r in rows]
        widths = [max(len(c), *(len(row[i]) for row in table)) for i, c in enumerate(cols)]
        print("  ".join(c.ljust(w) for c, w in zip(cols, widths)))
        for row in table:
            print("  ".join(v.ljust(w) for v, w in zip(row, widths)))
    filtered = "".join(f"  filtered ({reason}): {n}" for reason, n in sorted(summary.filtered.items()))
    print(f"messages in: {summary.messages_in}  outputs: {summary.outputs}  "
          f"dead-lettered: {summary.dead_letters}{filtered}  sinks: {', '.join(sink_names)}")


def _cell(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3f}"
    return "" if v is None else str(v)
