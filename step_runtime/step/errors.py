"""Errors shared by the step's parts: a message that cannot be decoded, a service that cannot be reached.

They live here, apart from the modules that raise them, so that sources, sinks, decoders and the
dead letter can all use them without importing each other.
"""
from __future__ import annotations


class DecodeError(ValueError):
    """A message whose bytes cannot be turned into a record."""


class SinkUnavailable(RuntimeError):
    """The sink could not accept the batch now (connection lost, timeout): retry later."""


class SchemaUnavailable(SinkUnavailable):
    """A schema registry that cannot answer now (unreachable, timeout, 5xx): retry later, like a sink
    outage; nothing is committed meanwhile."""
