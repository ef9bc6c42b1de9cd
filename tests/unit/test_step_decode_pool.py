"""Decoding in worker processes gives the same alerts and the same errors as inline, and survives workers dying."""
from __future__ import annotations

import os
import signal
from pathlib import Path

from step_runtime.step.alert_model import ALL_FIELDS
from step_runtime.step.decode import alerts_of
from step_runtime.step.decode_pool import DecodePool
from step_runtime.step.errors import DecodeError

ALERTS = Path(__file__).resolve().parents[2] / "examples" / "data" / "alerts"


def _expected(value: bytes) -> object:
    try:
        return alerts_of(value)
    except DecodeError as exc:
        return exc


def test_pool_matches_inline_decoding_and_keeps_errors_in_place() -> None:
    values = [p.read_bytes() for p in sorted(ALERTS.glob("*.avro"))]
    pool = DecodePool("ztf-avro", None, workers=2, fields=ALL_FIELDS)
    try:
        got = pool.decode_many(values, {})
    finally:
        pool.close()
    assert len(got) == len(values)
    for value, recs in zip(values, got):
        want = _expected(value)
        if isinstance(want, DecodeError):
            assert isinstance(recs, DecodeError) and str(recs) == str(want)
        else:
            assert recs == want
    assert sum(1 for r in got if not isinstance(r, DecodeError)) == 10


def test_a_killed_worker_loses_nothing_and_the_pool_goes_on() -> None:
    values = [p.read_bytes() for p in sorted(ALERTS.glob("[0-9]*.avro"))] * 20
    pool = DecodePool("ztf-avro", None, workers=2, fields=ALL_FIELDS)
    try:
        assert len(pool.decode_many(values[:4], {})) == 4  # workers are up
        pending = pool.submit(values, {})
        for pid in pool.worker_pids():
            os.kill(pid, signal.SIGKILL)
        got = pending()
        assert [g == alerts_of(v) for g, v in zip(got, values)] == [True] * len(values)
        assert pool.decode_many(values[:3], {}) == [alerts_of(v) for v in values[:3]]  # a fresh pool
    finally:
        pool.close()


def test_a_message_that_kills_its_worker_becomes_a_decode_error() -> None:
    good = (ALERTS / "1661382530015060001.avro").read_bytes()
    pool = DecodePool("ztf-avro", None, workers=1, fields=ALL_FIELDS)
    try:
        got = pool._one_by_one([good, b"\x00" * 3, good], {})
        assert got[0] == alerts_of(good) and got[2] == alerts_of(good)
        assert isinstance(got[1], DecodeError)  # an ordinary decode error, the worker lives
    finally:
        pool.close()


_STUCK_POOL = None


def _die_mid_result() -> None:
    """In a forked worker: write the start of a 1 MiB result to the pool's result pipe, then
    die, as a worker killed while sending its result does."""
    import struct

    writer = _STUCK_POOL._result_queue._writer
    os.write(writer.fileno(), struct.pack("!i", 1 << 20) + b"half a result")
    os.kill(os.getpid(), signal.SIGKILL)


def test_a_worker_killed_while_sending_its_result_breaks_the_pool_instead_of_hanging_it() -> None:
    """CPython's executor waits forever for the rest of that result; `_await` sees the dead
    worker and breaks the pool, so the batch is retried one by one."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    import pytest

    from step_runtime.step import decode_pool

    global _STUCK_POOL
    _STUCK_POOL = ProcessPoolExecutor(max_workers=2, mp_context=multiprocessing.get_context("fork"))
    try:
        future = _STUCK_POOL.submit(_die_mid_result)
        with pytest.raises(BrokenProcessPool):
            decode_pool._await(future, _STUCK_POOL)
    finally:
        _STUCK_POOL.shutdown(wait=True, cancel_futures=True)
        _STUCK_POOL = None
