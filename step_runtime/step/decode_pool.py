"""Decoding a batch in worker processes: Avro decoding is the hot spot of an alert step.

fastavro decodes a ZTF packet in about half a millisecond while holding the GIL, so one process
cannot decode much more than 2,000 alerts/s. `DecodePool` spreads a batch over worker processes;
each worker decodes with the projected decoder (avro.codegen), which builds only the fields the
processor reads, then screens each alert (validation, alert filter) and runs the processor's
per-alert `prepare` (the features of each light curve): what is sent back (pickled) and left for
the step process is a few identifiers and features per alert, not its light curve.

The packets reach the workers through an arena of shared memory mapped before the workers fork:
the step process copies a batch in once and sends only offsets, instead of pickling 60-120 MB per
batch through a pipe (three more copies and thousands of system calls); a batch larger than half
the arena is pickled as before.

A worker lives under a memory limit (`worker_memory_bytes`), so a packet that makes a decoder
allocate without end gets a MemoryError (a dead letter) instead of the machine's memory. If a
worker dies all the same (the kernel's OOM killer, kill -9), its batch is decoded again one
message at a time in fresh workers: a message that kills a worker again is a dead letter naming
that, and the step goes on.

One death the executor cannot see: a worker killed while writing its result leaves half a
message in the result pipe, and the executor's manager thread waits for the rest forever (every
future of the pool with it). `_await` watches for that case: a worker is dead and the result is
still missing a moment later. It kills the pool's other workers and closes the step process's
copy of the pipe's write end; the manager thread then reads end-of-file and breaks the pool the
usual way, so the batch is retried one by one.
"""
from __future__ import annotations

import gc
import logging
import mmap
import multiprocessing
import os
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any, Callable

from step_runtime.step.avro.decoders import FramedDecoder, Schemas
from step_runtime.step.decode import inline_decode_many, make_decoder
from step_runtime.step.errors import DecodeError
from step_runtime.step.processors import Prepare
from step_runtime.step.validate import AlertGate

log = logging.getLogger("alertops.step")

DEFAULT_WORKER_MEMORY = 1 << 30  # what a worker may allocate beyond what it inherited at fork
DEFAULT_ARENA = 256 << 20  # two batches in flight of up to 128 MiB each (1,000 Rubin alerts: 120 MB)
WATCH_INTERVAL_S = 1.0  # how often a wait for results checks that the pool's workers live

_decode_many: Callable[[list[bytes], Schemas], list[Any]] | None = None
_arena: mmap.mmap | memoryview | None = None


def _die_with_parent() -> None:
    """Linux: get SIGKILL when the step process dies, even by kill -9 (no orphaned workers)."""
    import ctypes
    import signal

    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
    except OSError:
        return
    if os.getppid() == 1:  # the parent died before prctl took effect
        os._exit(1)


def _limit_memory(allowance: int) -> None:
    """Cap this process's address space at what it has now plus `allowance` bytes."""
    import resource

    try:
        with open("/proc/self/statm") as fh:
            size = int(fh.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        resource.setrlimit(resource.RLIMIT_AS, (size + allowance, size + allowance))
    except (OSError, ValueError) as exc:
        log.warning("decode worker runs without a memory limit", extra={"fields": {"error": str(exc)}})


def _init(fmt: str, schema_path: str | None, fields: frozenset[str] | None, memory: int,
          arena: mmap.mmap | None, gate: AlertGate | None, prepare: Prepare | None) -> None:
    global _decode_many, _arena
    import signal

    # Stopping is the step process's job: a Ctrl-C reaching the whole process group must not
    # kill a worker mid-batch, and the parent's SIGTERM handler makes no sense here.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _die_with_parent()
    _limit_memory(memory)
    decoder = make_decoder(fmt, Path(schema_path) if schema_path else None, fields)
    # Inherited through fork, never pickled (so are the gate and the processor). Alert packets
    # are decoded where they lie, through a memoryview: a copy of each (119 kB for a Rubin
    # alert) cost this VM about 70 ms a batch of 1000, a third of the decoding itself. Their
    # decoders hand out only bytes and str (avro.codegen); other formats get bytes.
    _arena = memoryview(arena) if arena is not None and isinstance(decoder, FramedDecoder) else arena
    _decode_many = inline_decode_many(decoder, gate, prepare)


def _decode_chunk(values: list[bytes] | list[tuple[int, int]], schemas: Schemas) -> list[Any]:
    """Decode, screen and prepare a chunk: its packets, or their (offset, length) spans in the
    shared arena."""
    assert _decode_many is not None
    # The collector stays off while a chunk is decoded: the chunk's alerts (dicts and lists,
    # without cycles) are all kept until it is done, so each collection walked them again to free
    # nothing (8% of a worker's time). It runs again after, for whatever cycles there are.
    gc.disable()
    try:
        if values and isinstance(values[0], tuple):
            assert _arena is not None
            return _decode_many([_arena[o:o + n] for o, n in values], schemas)
        return _decode_many(values, schemas)  # type: ignore[arg-type]
    finally:
        gc.enable()


class _Arena:
    """Shared memory in two slots, one per batch in flight (the step overlaps two batches)."""

    def __init__(self, size: int) -> None:
        self.map = mmap.mmap(-1, size)  # anonymous and MAP_SHARED: forked workers see the same pages
        self.slot_size = size // 2
        self.busy = [False, False]

    def put(self, values: list[bytes]) -> tuple[int, list[tuple[int, int]]] | None:
        """Copy `values` into a free slot: (slot, spans); None when no slot is free or big enough."""
        total = sum(len(v) for v in values)
        slot = next((i for i, b in enumerate(self.busy) if not b), None)
        if slot is None or total > self.slot_size:
            return None
        self.busy[slot] = True
        spans = []
        at = slot * self.slot_size
        for v in values:
            self.map[at:at + len(v)] = v
            spans.append((at, len(v)))
            at += len(v)
        return slot, spans

    def release(self, slot: int) -> None:
        self.busy[slot] = False


def _await(future: "Future[list[Any]]", executor: ProcessPoolExecutor) -> list[Any]:
    """`future.result()`, or BrokenProcessPool when one of `executor`'s workers died in a way
    the executor cannot notice (killed mid-way through writing its result: see the module doc)."""
    suspect = False
    while True:
        try:
            return future.result(timeout=WATCH_INTERVAL_S)
        except FutureTimeout:
            # Executor internals (CPython's): its worker processes and its result pipe.
            processes = list((getattr(executor, "_processes", None) or {}).values())
            dead = any(p.exitcode is not None for p in processes)
            if not dead:
                suspect = False
                continue
            if not suspect:  # the executor usually notices within milliseconds: give it a round
                suspect = True
                continue
            log.warning("a decode worker died and its pool did not notice; breaking the pool")
            for p in processes:
                if p.exitcode is None:
                    p.kill()
            for p in processes:
                p.join(timeout=5)
            writer = getattr(getattr(executor, "_result_queue", None), "_writer", None)
            if writer is not None and not writer.closed:
                writer.close()  # the last write end: the manager thread reads EOF and breaks the pool
            try:
                return future.result(timeout=30)
            except FutureTimeout:
                raise BrokenProcessPool("decode pool stuck after a worker died") from None


def worker_memory(workers: int) -> int:
    """Bytes each worker may allocate: 1 GiB, or its share of the container's memory limit when
    that is smaller (the step process keeps one share)."""
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(path).read_text().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < 1 << 50:
            return max(256 << 20, min(DEFAULT_WORKER_MEMORY, int(text) // (workers + 1)))
    return DEFAULT_WORKER_MEMORY


class DecodePool:
    """`submit(values, schemas)` -> a function giving the records (or DecodeError) of each value,
    decoded by `workers` processes."""

    def __init__(self, fmt: str, schema_path: Path | None, workers: int, fields: frozenset[str] | None,
                 memory_per_worker: int | None = None, arena_bytes: int = DEFAULT_ARENA,
                 gate: AlertGate | None = None, prepare: Prepare | None = None) -> None:
        self.workers = workers
        self.memory = memory_per_worker or worker_memory(workers)
        self.arena = _Arena(arena_bytes) if arena_bytes else None
        self.initargs = (fmt, str(schema_path) if schema_path else None, fields, self.memory,
                         self.arena.map if self.arena else None, gate, prepare)
        self.executor = self._start()

    def _start(self) -> ProcessPoolExecutor:
        # fork: workers start in milliseconds and inherit the parsed-schema cache
        ctx = multiprocessing.get_context("fork")
        return ProcessPoolExecutor(max_workers=self.workers, mp_context=ctx, initializer=_init,
                                   initargs=self.initargs)

    def _restart(self) -> None:
        old, self.executor = self.executor, self._start()
        old.shutdown(wait=False, cancel_futures=True)

    def _submit(self, values: list[Any], schemas: Schemas) -> "Future[list[Any]]":
        try:
            return self.executor.submit(_decode_chunk, values, schemas)
        except BrokenProcessPool:
            self._restart()
            return self.executor.submit(_decode_chunk, values, schemas)

    def submit(self, values: list[bytes], schemas: Schemas) -> Callable[[], list[Any]]:
        """Start decoding in the workers now; the returned function waits for the results."""
        if not values:
            return list
        placed = self.arena.put(values) if self.arena else None
        items: list[Any] = placed[1] if placed else values
        n = max(1, min(len(items), self.workers * 2))
        size = -(-len(items) // n)
        chunks = [items[i:i + size] for i in range(0, len(items), size)]
        futures = [self._submit(chunk, schemas) for chunk in chunks]
        executor = self.executor

        def results() -> list[Any]:
            out: list[Any] = []
            try:
                for chunk, f in zip(chunks, futures):
                    try:
                        out.extend(_await(f, executor))
                    except BrokenProcessPool:
                        out.extend(self._one_by_one(chunk, schemas))
            finally:
                if placed:
                    self.arena.release(placed[0])  # type: ignore[union-attr]
            return out

        return results

    def _one_by_one(self, values: list[Any], schemas: Schemas) -> list[Any]:
        """After a worker died: each value (or arena span) alone in a fresh pool, so only the one
        that kills a worker again is lost to decoding (and dead-lettered with that reason)."""
        log.warning("a decode worker died; decoding its messages one by one",
                    extra={"fields": {"messages": len(values)}})
        out: list[Any] = []
        for value in values:
            try:
                out.extend(_await(self._submit([value], schemas), self.executor))
            except BrokenProcessPool:
                self._restart()
                size = value[1] if isinstance(value, tuple) else len(value)
                out.append(DecodeError(f"the decode worker died decoding this {size}-byte message "
                                       f"(killed, or out of its {self.memory >> 20} MiB memory limit)"))
        return out

    def decode_many(self, values: list[bytes], schemas: Schemas) -> list[Any]:
        return self.submit(values, schemas)()

    def worker_pids(self) -> list[int]:
        """The pids of the running workers (for tests and diagnostics)."""
        return [p.pid for p in (self.executor._processes or {}).values() if p.pid is not None]

    def close(self) -> None:
        # wait=True: with wait=False the executor closes its wake-up pipe while its atexit hook
        # still writes to it ("OSError: Bad file descriptor" on stderr at every exit). Pending
        # chunks are cancelled, so this waits for at most the chunks being decoded (< 1 s).
        self.executor.shutdown(wait=True, cancel_futures=True)
        if self.arena is not None:
            self.arena.map.close()
