"""The step loop: poll -> decode -> validate -> process -> every sink -> commit, with retries.

Promises this file keeps:
- a batch's offsets are committed only after every sink and the dead letter accepted it, and
  batches are committed in the order they were polled;
- a sink outage is retried with exponential backoff, readiness goes false, nothing is committed;
- on stop (SIGTERM) a batch is either finished and committed whole, or abandoned uncommitted.

Three batches overlap: while batch N is written to the sinks (all sinks at once, each in its
own thread: they wait on the network, not on the CPU), batch N+1 is processed and batch N+2
is being decoded. N is committed once written, before N+1's writes start.
"""
from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable

from step_runtime.step.errors import DecodeError
from step_runtime.step.messages import DeadLetter, Message
from step_runtime.step.observe import Health, StepMetrics
from step_runtime.step.processors import Processor
from step_runtime.step.errors import SinkUnavailable
from step_runtime.step.validate import ValidationError, validate_alert

log = logging.getLogger("alertops.step")
LOOKAHEAD_POLL_MS = 50


@dataclass
class RunSummary:
    """Counts of a run, printed at its end."""

    messages_in: int = 0
    outputs: int = 0
    dead_letters: int = 0
    batches: int = 0
    stopped_by_signal: bool = False
    preview: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class InFlight:
    """A polled batch whose decoding may already be running in the decode pool."""

    messages: list[Message]
    started: float   # monotonic time its first poll began
    polled: float
    decoded: Callable[[], list[Any]]  # waits for and returns a record or DecodeError per message


@dataclass
class Delivery:
    """A processed batch whose writes to the sinks are under way."""

    batch: InFlight
    outputs: list[dict[str, Any]]
    dead: list[DeadLetter]
    transformed: float
    written: "Future[bool]"  # True once every sink accepted it; False if stopped first


def transform(messages: list[Message], decode: Callable[[bytes], dict[str, Any]] | None,
              processor: Processor, decode_many: Callable[[list[bytes]], list[Any]] | None = None,
              decoded: list[Any] | None = None) -> tuple[list[dict[str, Any]], list[DeadLetter]]:
    """Decode, validate and process a batch; every message ends as output or as a dead letter.

    `decoded` (a record or DecodeError per message) skips decoding; else `decode_many` decodes
    the whole batch at once, else `decode` is called per message.
    """
    dead: list[DeadLetter] = []
    records: list[dict[str, Any]] = []
    origin: list[Message] = []
    if decoded is None:
        if decode_many is None:
            assert decode is not None
            from step_runtime.step.decode_pool import inline_decode_many
            decode_many = inline_decode_many(decode)
        decoded = decode_many([m.value for m in messages])
    for m, rec in zip(messages, decoded):
        if isinstance(rec, DecodeError):
            dead.append(DeadLetter(m, "decode", str(rec)))
            continue
        if processor.validates_alerts:
            try:
                validate_alert(rec)
            except ValidationError as exc:
                dead.append(DeadLetter(m, "validate", str(exc)))
                continue
        records.append(rec)
        origin.append(m)
    try:
        outputs, failures = processor.process(records)
    except Exception:  # noqa: BLE001 - isolate the messages that break the batch
        outputs, failures = [], []
        for i, rec in enumerate(records):
            try:
                out, fail = processor.process([rec])
                outputs.extend(out)
                failures.extend((i, err) for _, err in fail)
            except Exception as exc:  # noqa: BLE001
                failures.append((i, f"{type(exc).__name__}: {exc}"))
    dead.extend(DeadLetter(origin[i], "process", err) for i, err in failures)
    return outputs, dead


class StepRunner:
    """Runs one step until the input ends (files), it is stopped, or it has been idle too long."""

    def __init__(self, *, source: Any, decode: Callable[[bytes], dict[str, Any]], processor: Processor,
                 sinks: list[Any], dead_letters: Any, metrics: StepMetrics, health: Health,
                 stop: threading.Event, initial_backoff_s: float, max_backoff_s: float,
                 exit_when_idle_s: float | None = None, preview_rows: int = 0,
                 decode_submit: Callable[[list[bytes]], Callable[[], list[Any]]] | None = None) -> None:
        self.source = source
        self.decode = decode
        # With a decode pool, the next batch is polled and its decoding started before the
        # current one is processed, written and committed: decoding overlaps the rest.
        self.decode_submit = decode_submit
        self.pipelined = decode_submit is not None
        self.processor = processor
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
        self.sink_ms: dict[str, float] = {}
        # One thread runs a batch's delivery (retries included) behind the processing of the
        # next batch; the sink pool writes to all sinks of one attempt at once.
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="alertops-deliver")
        self._sink_pool = ThreadPoolExecutor(max_workers=len(sinks) + 1, thread_name_prefix="alertops-sink")

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
        for part in [self.source, *self.sinks, self.dead_letters]:
            name = getattr(part, "name", "source")
            if not self._with_backoff(f"opening {name}", part.open):
                return False
        self._set_ready()
        return True

    def _set_ready(self) -> None:
        self.health.set_ready(True)
        self.metrics.ready.labels(self.step).set(1)

    # -- one batch ----------------------------------------------------------------------------
    def deliver(self, outputs: list[dict[str, Any]], dead: list[DeadLetter]) -> bool:
        """Hand the batch to every sink and the dead letter; True once all accepted it.

        A sink that accepted is not asked again while another one is retried, so a Kafka sink
        does not produce the batch twice because PostgreSQL was down.
        """
        pending: list[tuple[Any, list[Any]]] = [(s, outputs) for s in self.sinks]
        if dead:
            pending.append((self.dead_letters, dead))
        self.sink_ms: dict[str, float] = {}

        def timed_write(writer: Any, payload: list[Any]) -> float:
            t0 = time.monotonic()
            writer.write(payload)
            return round((time.monotonic() - t0) * 1000, 1)

        def attempt() -> None:
            failure: BaseException | None = None
            started = [(item, self._sink_pool.submit(timed_write, *item)) for item in pending]
            for item, future in started:  # wait for all before raising: none is left writing
                try:
                    self.sink_ms[item[0].name] = future.result()
                    pending.remove(item)
                except SinkUnavailable as exc:
                    self.metrics.sink_failures.labels(self.step, item[0].name).inc()
                    failure = failure or exc
                except BaseException as exc:  # noqa: BLE001 - a bug in a sink: re-raised below
                    failure = exc
            if failure is not None:
                raise failure

        return self._with_backoff("writing batch", attempt)

    def _poll(self, timeout_ms: int | None = None) -> InFlight | list[Message] | None:
        """The next batch with its decoding under way; [] when none came; None at end of input."""
        started = time.monotonic()  # batch latency runs from its first poll to its commit
        messages = self.source.poll_batch(self.stop.is_set, timeout_ms)
        if not messages:
            return messages
        self.metrics.messages_in.labels(self.step).inc(len(messages))
        self.summary.messages_in += len(messages)
        values = [m.value for m in messages]
        if self.decode_submit is not None:
            decoded = self.decode_submit(values)
        else:
            from step_runtime.step.decode_pool import inline_decode_many
            many = inline_decode_many(self.decode)  # type: ignore[arg-type]
            decoded = lambda: many(values)  # noqa: E731 - decoded when the batch is processed
        return InFlight(messages, started, time.monotonic(), decoded)

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
                polled = self._poll()
                if polled is None:
                    log.info("input exhausted")
                    break
                if self.stop.is_set():
                    log.info("stopping: abandoning the batch being polled (not committed)",
                             extra={"fields": {"messages": len(polled.messages) if isinstance(polled, InFlight) else 0}})
                    break
                if not isinstance(polled, InFlight):
                    # Nothing new: finish the batch being written rather than hold its commit.
                    if writing is not None:
                        ok, writing = self._complete(writing), None
                        if not ok:
                            break
                    if self.exit_when_idle_s is not None and time.monotonic() - idle_since >= self.exit_when_idle_s:
                        log.info("idle; exiting", extra={"fields": {"idle_s": self.exit_when_idle_s}})
                        break
                    continue
                ahead = polled
            batch, ahead = ahead, None
            if self.pipelined:
                # A short poll: a quiet topic must not delay this batch's commit by a full timeout.
                nxt = self._poll(LOOKAHEAD_POLL_MS)
                if isinstance(nxt, InFlight):
                    ahead = nxt
            outputs, dead = transform(batch.messages, self.decode, self.processor, decoded=batch.decoded())
            transformed = time.monotonic()
            if writing is not None:
                ok, writing = self._complete(writing), None
                if not ok:
                    self._abandon(batch, ahead)
                    ahead = None
                    break
            writing = Delivery(batch, outputs, dead, transformed,
                               self._writer.submit(self.deliver, outputs, dead))
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
        if not delivery.written.result():
            log.info("stopping: batch abandoned during sink retries (not committed)",
                     extra={"fields": {"messages": len(messages)}})
            self.summary.stopped_by_signal = True
            return False
        delivered = time.monotonic()
        self.source.commit(messages)
        self._set_ready()
        batch, outputs, dead = delivery.batch, delivery.outputs, delivery.dead
        elapsed = time.monotonic() - batch.started
        self.metrics.batch_seconds.labels(self.step).observe(elapsed)
        self.metrics.batches.labels(self.step).inc()
        self.metrics.messages_out.labels(self.step).inc(len(outputs))
        for d in dead:
            self.metrics.dead_letters.labels(self.step, d.stage).inc()
        self.summary.outputs += len(outputs)
        self.summary.dead_letters += len(dead)
        self.summary.batches += 1
        if len(self.summary.preview) < self.preview_rows:
            self.summary.preview.extend(outputs[: self.preview_rows - len(self.summary.preview)])
        log.info("batch committed", extra={"fields": {
            "messages": len(messages), "outputs": len(outputs), "dead_letters": len(dead),
            "batch_ms": round(elapsed * 1000, 1), "poll_ms": round((batch.polled - batch.started) * 1000, 1),
            "process_ms": round((delivery.transformed - batch.polled) * 1000, 1), "sink_ms": self.sink_ms,
            "wait_ms": round((delivered - delivery.transformed) * 1000, 1),
            "commit_ms": round((time.monotonic() - delivered) * 1000, 1)}})
        return True

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
            except Exception as exc:  # noqa: BLE001
                log.warning("close failed", extra={"fields": {"part": getattr(part, "name", "source"), "error": str(exc)}})
