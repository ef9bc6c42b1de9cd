"""Decoding a batch in worker processes: Avro decoding is the hot spot of a ZTF step.

fastavro decodes a ZTF packet in about half a millisecond while holding the GIL, so one process
cannot decode much more than 2,000 alerts/s. `DecodePool` spreads a batch over worker processes;
each worker decodes, and, when the processor says which fields it reads, keeps only those, so
that sending the records back (pickling) costs a fraction of decoding them. For ZTF packets the
projected decoder (avro.codegen) builds only those fields in the first place.
"""
from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Callable

from step_runtime.step.decode import make_decoder
from step_runtime.step.errors import DecodeError

_decoder: Callable[[bytes], dict[str, Any]] | None = None


def _die_with_parent() -> None:
    """Linux: get SIGKILL when the step process dies, even by kill -9 (no orphaned workers)."""
    import ctypes
    import os
    import signal

    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, int(signal.SIGKILL))  # PR_SET_PDEATHSIG
    except OSError:
        return
    if os.getppid() == 1:  # the parent died before prctl took effect
        os._exit(1)


def _init(fmt: str, schema_path: str | None, project: bool) -> None:
    global _decoder
    import signal

    # Stopping is the step process's job: a Ctrl-C reaching the whole process group must not
    # kill a worker mid-batch, and the parent's SIGTERM handler makes no sense here.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _die_with_parent()
    # project: the decoder itself keeps only the fields alert processors read (for ZTF packets
    # it never builds the rest), so results are small to send back
    _decoder = make_decoder(fmt, Path(schema_path) if schema_path else None, project=project)


def _decode_chunk(values: list[bytes]) -> list[Any]:
    assert _decoder is not None
    return inline_decode_many(_decoder)(values)


class DecodePool:
    """`decode_many(values)` -> one record or DecodeError per value, decoded by `workers` processes."""

    def __init__(self, fmt: str, schema_path: Path | None, workers: int, project: bool) -> None:
        self.workers = workers
        # fork: workers start in milliseconds and inherit the parsed-schema cache
        ctx = multiprocessing.get_context("fork")
        self.executor = ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init,
                                            initargs=(fmt, str(schema_path) if schema_path else None, project))

    def submit(self, values: list[bytes]) -> Callable[[], list[Any]]:
        """Start decoding in the workers now; the returned function waits for the results."""
        if not values:
            return list
        n = max(1, min(len(values), self.workers * 2))
        size = -(-len(values) // n)
        futures = [self.executor.submit(_decode_chunk, values[i:i + size]) for i in range(0, len(values), size)]

        def results() -> list[Any]:
            out: list[Any] = []
            for f in futures:
                out.extend(f.result())
            return out

        return results

    def decode_many(self, values: list[bytes]) -> list[Any]:
        return self.submit(values)()

    def close(self) -> None:
        # wait=True: with wait=False the executor closes its wake-up pipe while its atexit hook
        # still writes to it ("OSError: Bad file descriptor" on stderr at every exit). Pending
        # chunks are cancelled, so this waits for at most the chunks being decoded (< 1 s).
        self.executor.shutdown(wait=True, cancel_futures=True)


def inline_decode_many(decode: Callable[[bytes], dict[str, Any]]) -> Callable[[list[bytes]], list[Any]]:
    """decode_many in the step process itself."""

    def decode_many(values: list[bytes]) -> list[Any]:
        out: list[Any] = []
        for v in values:
            try:
                out.append(decode(v))
            except DecodeError as exc:
                out.append(exc)
        return out

    return decode_many
