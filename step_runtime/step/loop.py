"""The step loop: poll -> resolve schemas -> decode -> validate/filter -> process -> every sink -> commit.

Promises this file keeps:
- a batch's offsets are committed only after every sink and the dead letter accepted it, and
  batches are committed in the order they were polled;
- a sink outage, or a schema registry that cannot answer, is retried with exponential backoff,
  readiness goes false, nothing is committed;
- on stop (SIGTERM) a batch is either finished and committed whole, or abandoned uncommitted.

Three batches overlap: while batch N is written to the sinks (all sinks at once, each in its
own thread: they wait on the network, not on the CPU), batch N+1 is processed and batch N+2
is being decoded. N is committed once written, before N+1's writes start.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable

from step_runtime.step.avro.decoders import NO_SCHEMAS, Schemas
from step_runtime.step.avro.framing import schema_ids
from step_runtime.step.avro.schemas import SchemaCache
from step_runtime.step.decode import Decoder, inline_decode_many
from step_runtime.step.errors import DecodeError, SinkUnavailable
from step_runtime.step.messages import DeadLetter, Message
from step_runtime.step.observe import Health, StepMetrics
from step_runtime.step.processors import Prepare, Processor
from step_runtime.step.validate import AlertGate, Rejected

log = logging.getLogger("alertops.step")
LOOKAHEAD_POLL_MS = 50


@dataclass
class RunSummary:
    """Counts of a run, printed at its end."""

    messages_in: int = 0
    outputs: int = 0
    dead_letters: int = 0
    filtered: Counter[str] = field(default_factory=Counter)
    batches: int = 0
    stopped_by_signal: bool = False
    preview: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class InFlight:
    """A polled batch whose decoding may already be running in the decode pool."""

    messages: list[Message]
    started: float   # monotonic time its first poll began
    polled: float
    decoded: Callable[[], list[Any]]  # waits for and returns the records, or a DecodeError, of each message


@dataclass
class Delivery:
    """A processed batch whose writes to the sinks are under way."""

    batch: InFlight
    result: "Transformed"
    transformed: float
    written: "Future[Written | None]"  # once every sink accepted it; None if stopped first


@dataclass
class Written:
    """A batch every sink accepted: when (epoch seconds), and how long each sink took (ms)."""

    at: float
    sink_ms: dict[str, float]


@dataclass
class Transformed:
    """What became of a batch's messages: outputs, dead letters, and alerts filtered out by reason."""

    outputs: list[dict[str, Any]]
    dead: list[DeadLetter]
    filtered: Counter[str] = field(default_factory=Counter)


def _nth(index: int, count: int, error: str) -> str:
    """An error about one record of a message holding several (an Avro container of 10 alerts)."""
    return error if count == 1 else f"record {index + 1} of {count}: {error}"


def transform(messages: list[Message], decoded: list[Any], processor: Processor) -> Transformed:
    """Process a decoded batch (the records, or a DecodeError, of each message, as the decode
    stage screened them: a `Rejected` in place of each alert it refused); every message ends as
    outputs, dead letters or filtered alerts."""
    dead: list[DeadLetter] = []
    filtered: Counter[str] = Counter()
    records: list[dict[str, Any]] = []
    origin: list[tuple[Message, int, int]] = []  # message, index of the record in it, records in it
    for m, recs in zip(messages, decoded):
        if isinstance(recs, DecodeError):
            dead.append(DeadLetter(m, "decode", str(recs)))
            continue
        for j, rec in enumerate(recs):
            if isinstance(rec, Rejected):
                if rec.filtered:
                    filtered[rec.reason] += 1
                else:
                    dead.append(DeadLetter(m, "validate", _nth(j, len(recs), rec.reason)))
                continue
            records.append(rec)
            origin.append((m, j, len(recs)))
    try:
        outputs, failures = processor.process(records)
    except Exception:  # noqa: BLE001 - isolate the records that break the batch
        outputs, failures = [], []
        for i, rec in enumerate(records):
            try:
                out, fail = processor.process([rec])
                outputs.extend(out)
                failures.extend((i, err) for _, err in fail)
            except Exception as exc:  # noqa: BLE001 - this record is the culprit: dead-letter it
                failures.append((i, f"{type(exc).__name__}: {exc}"))
    for i, err in failures:
        m, j, n = origin[i]
        dead.append(DeadLetter(m, "process", _nth(j, n, err)))
    return Transformed(outputs, dead, filtered)


class StepRunner:
    """Runs one step until the input ends (files), it is stopped, or it has been idle too long."""

    def __init__(self, *, source: Any, decode: Decoder, processor: Processor, gate: AlertGate | None,
                 sinks: list[Any], dead_letters: Any, metrics: StepMetrics, health: Health,
                 stop: threading.Event, initial_backoff_s: float, max_backoff_s: float,
                 schemas: SchemaCache | None = None, exit_when_idle_s: float | None = None,
                 preview_rows: int = 0,
                 decode_submit: Callable[[list[bytes], Schemas], Callable[[], list[Any]]] | None = None) -> None:
        self.source = source
        # With a decode pool, the next batch is polled and its decoding started before the
        # current one is processed, written and committed: decoding overlaps the rest. The
        # decode stage screens each alert with the gate and runs the processor's `prepare`
        # (a pool is built with the same gate and prepare: DecodePool(gate=, prepare=)).
        self.decode_submit = decode_submit or self._inline(decode, gate, processor.prepare)
        self.pipelined = decode_submit is not None
        self.processor = processor
        self.schemas = schemas
        self.sinks = sinks
        self.dead_letters = dead_letters
        self.metrics = metrics
        self.health = health
        self.stop = stop
        self.initial_backoff_s = initial_backoff_s
        self.max_backoff_s = max_backoff_s
        self.exit_when_idle_s = exit_when_idle_s
        self.preview_rows = preview_rows
        self.summary = RunSummary()
        self.step = metrics.step
        self.exhausted = False  # a bounded source (files) has given every message
        # One thread runs a batch's delivery (retries included) behind the processing of the
        # next batch; the sink pool writes to all sinks of one attempt at once.
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="alertops-deliver")
        self._sink_pool = ThreadPoolExecutor(max_workers=len(sinks) + 1, thread_name_prefix="alertops-sink")

    @staticmethod
    def _inline(decode: Decoder, gate: AlertGate | None,
                prepare: Prepare | None) -> Callable[[list[bytes], Schemas], Callable[[], list[Any]]]:
        """Decoding in the step process, when the batch is processed (no decode pool)."""
        many = inline_decode_many(decode, gate, prepare)
        return lambda values, schemas: (lambda: many(values, schemas))

    # -- connecting ---------------------------------------------------------------------------
    def _with_backoff(self, what: str, attempt: Callable[[], None]) -> bool:
        """Call `attempt` until it stops raising SinkUnavailable; False if stopped meanwhile."""
        backoff = self.initial_backoff_s
        while True:
            try:
                attempt()
                return True
            except SinkUnavailable as exc:
                self.health.set_ready(False, str(exc))
                self.metrics.ready.labels(self.step).set(0)
                log.warning("%s failed; retrying", what,
                            extra={"fields": {"error": str(exc), "retry_in_s": round(backoff, 3)}})
            self.health.beat()
            if self.stop.wait(backoff):
                return False
            backoff = min(backoff * 2, self.max_backoff_s)

    def open(self) -> bool:
        """Connect source, sinks and dead letter (retrying); False if stopped first."""
        parts = [self.source, *self.sinks, self.dead_letters] + ([self.schemas] if self.schemas else [])
        for part in parts:
            name = getattr(part, "name", "source")
            if not self._with_backoff(f"opening {name}", part.open):
                return False
        self._set_ready()
        return True

    def _set_ready(self) -> None:
        self.health.set_ready(True)
        self.metrics.ready.labels(self.step).set(1)

    # -- one batch ----------------------------------------------------------------------------
    def deliver(self, outputs: list[dict[str, Any]], dead: list[DeadLetter]) -> Written | None:
        """Hand the batch to every sink and the dead letter; when and how fast once all accepted
        it, None if stopped first.

        A sink that accepted is not asked again while another one is retried, so a Kafka sink
        does not produce the batch twice because PostgreSQL was down.
        """
        pending: list[tuple[Any, list[Any]]] = [(s, outputs) for s in self.sinks]
        if dead:
            pending.append((self.dead_letters, dead))
        timings: dict[str, float] = {}

        def timed_write(writer: Any, payload: list[Any]) -> float:
            t0 = time.monotonic()
            writer.write(payload)
            return round((time.monotonic() - t0) * 1000, 1)

        def attempt() -> None:
            failure: BaseException | None = None
            started = [(item, self._sink_pool.submit(timed_write, *item)) for item in pending]
            for item, future in started:  # wait for all before raising: none is left writing
                try:
                    timings[item[0].name] = future.result()
                    pending.remove(item)
                except SinkUnavailable as exc:
                    self.metrics.sink_failures.labels(self.step, item[0].name).inc()
                    failure = failure or exc
                except BaseException as exc:  # noqa: BLE001 - a bug in a sink: re-raised below
                    failure = exc
            if failure is not None:
                raise failure

        if not self._with_backoff("writing batch", attempt):
            return None
        return Written(time.time(), timings)

    def _resolve(self, values: list[bytes]) -> Schemas | None:
        """The schemas of the batch's Confluent-framed messages, by id (retried while the registry
        cannot answer); None if stopped meanwhile."""
        ids = schema_ids(values) if self.schemas is not None else set()
        if not ids:
            return NO_SCHEMAS
        assert self.schemas is not None
        found: dict[int, bytes | str] = {}
        cache = self.schemas
        if not self._with_backoff("resolving schemas", lambda: found.update(cache.resolve(ids))):
            return None
        return found

    def _poll(self, timeout_ms: int | None = None) -> InFlight | None:
        """The next batch with its decoding under way; None when none came (or, with
        `self.exhausted` set, at the end of the input, or when stopped while resolving schemas)."""
        started = time.monotonic()  # batch latency runs from its first poll to its commit
        messages = self.source.poll_batch(self.stop.is_set, timeout_ms)
        if messages is None:
            self.exhausted = True
            return None
        if not messages:
            return None
        self.metrics.messages_in.labels(self.step).inc(len(messages))
        self.summary.messages_in += len(messages)
        values = [m.value for m in messages]
        schemas = self._resolve(values)
        if schemas is None:
            log.info("stopping: abandoning a batch whose schemas were being resolved (not committed)",
                     extra={"fields": {"messages": len(messages)}})
            return None
        return InFlight(messages, started, time.monotonic(), self.decode_submit(values, schemas))

    def run(self) -> RunSummary:
        """The loop. Returns when the input ends, on stop, or after exit_when_idle_s without input."""
        if not self.open():
            self.summary.stopped_by_signal = True
            return self.summary
        idle_since = time.monotonic()
        ahead: InFlight | None = None
        writing: Delivery | None = None
        while not self.stop.is_set():
            self.health.beat()
            self._update_lag()
            if ahead is None:
                ahead = self._poll()
                if self.exhausted:
                    log.info("input exhausted")
                    break
                if self.stop.is_set():
                    log.info("stopping: abandoning the batch being polled (not committed)",
                             extra={"fields": {"messages": len(ahead.messages) if ahead else 0}})
                    break
                if ahead is None:
                    # Nothing new: finish the batch being written rather than hold its commit.
                    if writing is not None:
                        ok, writing = self._complete(writing), None
                        if not ok:
                            break
                    if self.exit_when_idle_s is not None and time.monotonic() - idle_since >= self.exit_when_idle_s:
                        log.info("idle; exiting", extra={"fields": {"idle_s": self.exit_when_idle_s}})
                        break
                    continue
            batch, ahead = ahead, None
            if self.pipelined:
                # A short poll: a quiet topic must not delay this batch's commit by a full timeout.
                ahead = self._poll(LOOKAHEAD_POLL_MS)
            result = transform(batch.messages, batch.decoded(), self.processor)
            transformed = time.monotonic()
            if writing is not None:
                ok, writing = self._complete(writing), None
                if not ok:
                    self._abandon(batch, ahead)
                    ahead = None
                    break
            writing = Delivery(batch, result, transformed,
                               self._writer.submit(self.deliver, result.outputs, result.dead))
            idle_since = time.monotonic()
        if writing is not None:
            # Stopping or at the end: a batch already handed to the sinks is finished and
            # committed if they accept it before the stop (retries end on stop: then it is not).
            self._complete(writing)
        if ahead is not None:
            self._abandon(ahead, None)
        if self.stop.is_set():
            self.summary.stopped_by_signal = True
        return self.summary

    def _abandon(self, *batches: InFlight | None) -> None:
        for batch in batches:
            if batch is not None:
                log.info("stopping: abandoning a batch (not committed)",
                         extra={"fields": {"messages": len(batch.messages)}})

    def _complete(self, delivery: Delivery) -> bool:
        """Wait for a batch's writes, then commit it; False if stopped during sink retries."""
        messages = delivery.batch.messages
        written = delivery.written.result()
        if written is None:
            log.info("stopping: batch abandoned during sink retries (not committed)",
                     extra={"fields": {"messages": len(messages)}})
            self.summary.stopped_by_signal = True
            return False
        delivered = time.monotonic()
        self.source.commit(messages)
        self._set_ready()
        batch, outputs, dead = delivery.batch, delivery.result.outputs, delivery.result.dead
        elapsed = time.monotonic() - batch.started
        self.metrics.batch_seconds.labels(self.step).observe(elapsed)
        self.metrics.batches.labels(self.step).inc()
        self.metrics.messages_out.labels(self.step).inc(len(outputs))
        for d in dead:
            self.metrics.dead_letters.labels(self.step, d.stage).inc()
        for reason, n in delivery.result.filtered.items():
            self.metrics.filtered.labels(self.step, reason).inc(n)
        self.summary.filtered.update(delivery.result.filtered)
        latency = self._latency(messages, written.at)
        self.summary.outputs += len(outputs)
        self.summary.dead_letters += len(dead)
        self.summary.batches += 1
        if len(self.summary.preview) < self.preview_rows:
            self.summary.preview.extend(outputs[: self.preview_rows - len(self.summary.preview)])
        log.info("batch committed", extra={"fields": {
            "messages": len(messages), "outputs": len(outputs), "dead_letters": len(dead),
            "filtered": dict(delivery.result.filtered),
            "batch_ms": round(elapsed * 1000, 1), "poll_ms": round((batch.polled - batch.started) * 1000, 1),
            "process_ms": round((delivery.transformed - batch.polled) * 1000, 1), "sink_ms": written.sink_ms,
            "wait_ms": round((delivered - delivery.transformed) * 1000, 1),
            "commit_ms": round((time.monotonic() - delivered) * 1000, 1), "written_at": round(written.at, 3),
            "latency_ms": latency, "offsets": _offset_ranges(messages)}})
        return True

    def _latency(self, messages: list[Message], written_at: float) -> dict[str, float] | None:
        """Each message's time from its Kafka timestamp to its batch written (the histogram), and
        the batch's p50/p99/max in ms (None without timestamps: file sources)."""
        stamps = [m.timestamp_ms for m in messages if m.timestamp_ms is not None]
        if not stamps:
            return None
        import numpy as np

        seconds = written_at - np.asarray(stamps, dtype=np.float64) / 1000.0
        observe = self.metrics.alert_latency.labels(self.step).observe
        for s in seconds.tolist():
            observe(s)
        p50, p99 = np.percentile(seconds, [50, 99]) * 1000
        return {"p50": round(float(p50), 1), "p99": round(float(p99), 1), "max": round(float(seconds.max()) * 1000, 1)}

    def _update_lag(self) -> None:
        for (topic, partition), lag in self.source.lag().items():
            self.metrics.lag.labels(self.step, topic, str(partition)).set(lag)

    def close(self) -> None:
        """Close every part, ignoring errors (we are leaving anyway)."""
        self._writer.shutdown(wait=True)
        self._sink_pool.shutdown(wait=True)
        for part in [*self.sinks, self.dead_letters, self.source]:
            try:
                part.close()
            except Exception as exc:  # noqa: BLE001 - shutting down: close the other parts regardless
                log.warning("close failed", extra={"fields": {"part": getattr(part, "name", "source"), "error": str(exc)}})


def _offset_ranges(messages: list[Message]) -> dict[str, list[int]]:
    """The first and last offset of the batch in each topic/partition (for replays and benchmarks)."""
    ranges: dict[str, list[int]] = {}
    for m in messages:
        key = f"{m.topic}/{m.partition}"
        r = ranges.get(key)
        if r is None:
            ranges[key] = [m.offset, m.offset]
        else:
            r[0], r[1] = min(r[0], m.offset), max(r[1], m.offset)
    return ranges
