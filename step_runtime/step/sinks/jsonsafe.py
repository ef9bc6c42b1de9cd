"""Turning output records into strict JSON (NaN and infinities become null)."""
from __future__ import annotations

import json
import math
from typing import Any


def json_safe(value: Any, bytes_as_hex: bool = True) -> Any:
    """A copy of `value` where non-finite floats are None and (with bytes_as_hex) bytes are hex strings."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v, bytes_as_hex) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v, bytes_as_hex) for v in value]
    if bytes_as_hex and isinstance(value, (bytes, bytearray)):
        return bytes(value).hex()
    return value


def dumps(value: Any) -> str:
    """Compact strict JSON of a record."""
    return json.dumps(json_safe(value), separators=(",", ":"), allow_nan=False, default=str)
