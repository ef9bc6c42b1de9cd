"""Prometheus metrics of the operator: reconciles, errors, durations, status writes."""
from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Iterator

from prometheus_client import Counter, Histogram

RECONCILES = Counter("alertops_operator_reconciles_total",
                     "Reconciles (apply of children) by kind and result.", ["kind", "result"])
ERRORS = Counter("alertops_operator_reconcile_errors_total",
                 "Reconcile errors by kind and reason (InvalidSpec, ApiError, Unexpected).", ["kind", "reason"])
DURATION = Histogram("alertops_operator_reconcile_duration_seconds",
                     "Time to render and apply a resource's children.", ["kind"],
                     buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
STATUS_WRITES = Counter("alertops_operator_status_writes_total",
                        "Status patches written (only when something changed).", ["kind"])
TRANSITIONS = Counter("alertops_operator_phase_transitions_total",
                      "Phase transitions reported as Events.", ["kind", "phase"])
CHECK_ROUNDS = Histogram("alertops_operator_check_round_seconds",
                         "Duration of one round of the periodic check over every resource.",
                         buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))


@contextmanager
def timed(kind: str) -> Iterator[None]:
    """Observe the duration of a reconcile of `kind`."""
    start = time.perf_counter()
    try:
        yield
    finally:
        DURATION.labels(kind).observe(time.perf_counter() - start)
