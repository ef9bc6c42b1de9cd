"""Observability: JSON logs on stderr, Prometheus metrics, /healthz /readyz /metrics over HTTP."""
from __future__ import annotations

import json
import logging
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, plus `extra={"fields": {...}}`."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(), "logger": record.name, "msg": record.getMessage()}
        entry.update(getattr(record, "fields", {}) or {})
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def setup_logging(level: str = "INFO") -> None:
    """JSON lines on stderr for the alertops loggers."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger("alertops")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


class StepMetrics:
    """The step's Prometheus metrics, in their own registry."""

    def __init__(self, step: str) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        labels = ["step"]
        self.step = step
        self.messages_in = Counter("alertops_step_messages_in_total", "Messages consumed.", labels, registry=r)
        self.messages_out = Counter("alertops_step_messages_out_total", "Output records accepted by every sink.",
                                    labels, registry=r)
        self.dead_letters = Counter("alertops_step_dead_letters_total", "Messages sent to the dead letter.",
                                    [*labels, "stage"], registry=r)
        self.batches = Counter("alertops_step_batches_committed_total", "Batches committed.", labels, registry=r)
        self.sink_failures = Counter("alertops_step_sink_failures_total", "Failed sink writes (retried).",
                                     [*labels, "sink"], registry=r)
        self.batch_seconds = Histogram(
            "alertops_step_batch_duration_seconds", "First poll to commit of a batch.", labels, registry=r,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))
        self.lag = Gauge("alertops_step_consumer_lag", "Messages behind the high watermark.",
                         [*labels, "topic", "partition"], registry=r)
        self.ready = Gauge("alertops_step_ready", "1 when the step is ready.", labels, registry=r)
        self.alert_latency = Histogram(
            "alertops_step_alert_latency_seconds",
            "From a message's Kafka timestamp to its batch accepted by every sink.", labels, registry=r,
            buckets=(0.05, 0.1, 0.25, 0.5, 0.75, 1, 1.5, 2.5, 5, 10, 30, 60, 300))
        self.filtered = Counter("alertops_step_alerts_filtered_total",
                                "Good alerts the step's alertFilter left out, by reason.", [*labels, "reason"], registry=r)


class Health:
    """Liveness and readiness state, written by the step loop and read by the HTTP server."""

    def __init__(self, liveness_timeout_s: float = 300.0) -> None:
        self._lock = threading.Lock()
        self._ready = False
        self._reason = "starting"
        self._beat = time.monotonic()
        self.liveness_timeout_s = liveness_timeout_s

    def set_ready(self, ready: bool, reason: str = "") -> None:
        with self._lock:
            self._ready = ready
            self._reason = reason

    def beat(self) -> None:
        """The loop is making progress (or deliberately waiting)."""
        with self._lock:
            self._beat = time.monotonic()

    def readiness(self) -> tuple[bool, str]:
        with self._lock:
            return self._ready, self._reason

    def alive(self) -> bool:
        with self._lock:
            return time.monotonic() - self._beat < self.liveness_timeout_s


def serve_http(port: int, health: Health, metrics: StepMetrics) -> ThreadingHTTPServer:
    """Start /healthz, /readyz and /metrics on 0.0.0.0:port in a daemon thread."""

    class Handler(BaseHTTPRequestHandler):
        def _send(self, code: int, body: bytes, ctype: str = "text/plain; charset=utf-8") -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/healthz":
                ok = health.alive()
                self._send(200 if ok else 503, b"ok\n" if ok else b"step loop stalled\n")
            elif path == "/readyz":
                ok, reason = health.readiness()
                self._send(200 if ok else 503, (b"ready\n" if ok else f"not ready: {reason}\n".encode()))
            elif path == "/metrics":
                self._send(200, generate_latest(metrics.registry), CONTENT_TYPE_LATEST)
            else:
                self._send(404, b"not found: try /healthz /readyz /metrics\n")

        def log_message(self, *args: Any) -> None:
            return None  # probes every few seconds would drown the JSON logs

    server = ThreadingHTTPServer(("0.0.0.0", port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="alertops-http", daemon=True).start()
    return server
