"""Validation of decoded alerts: what a processor needs to be able to trust."""
from __future__ import annotations

import math
from typing import Any


class ValidationError(ValueError):
    """A decoded message that is not a usable alert; the message names the field."""


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def validate_alert(record: dict[str, Any]) -> None:
    """Check the fields every alert processor relies on; raise ValidationError naming the field.

    objectId (non-empty string), candid (integer), candidate.{ra in [0, 360), dec in [-90, 90],
    jd, magpsf, sigmapsf finite, fid 1..3}.
    """
    oid = record.get("objectId")
    if not isinstance(oid, str) or not oid:
        raise ValidationError(f"objectId: missing or empty (got {oid!r}), expected a ZTF object id")
    candid = record.get("candid")
    if isinstance(candid, bool) or not isinstance(candid, int):
        raise ValidationError(f"candid: expected an integer (got {candid!r})")
    cand = record.get("candidate")
    if not isinstance(cand, dict):
        raise ValidationError("candidate: missing, expected a record")
    ra, dec = _number(cand.get("ra")), _number(cand.get("dec"))
    if ra is None or not math.isfinite(ra) or not 0.0 <= ra < 360.0:
        raise ValidationError(f"candidate.ra: expected degrees in [0, 360) (got {cand.get('ra')!r})")
    if dec is None or not math.isfinite(dec) or not -90.0 <= dec <= 90.0:
        raise ValidationError(f"candidate.dec: expected degrees in [-90, 90] (got {cand.get('dec')!r})")
    for name in ("jd", "magpsf", "sigmapsf"):
        v = _number(cand.get(name))
        if v is None or not math.isfinite(v):
            raise ValidationError(f"candidate.{name}: expected a finite number (got {cand.get(name)!r})")
    fid = cand.get("fid")
    if fid not in (1, 2, 3):
        raise ValidationError(f"candidate.fid: expected 1 (g), 2 (r) or 3 (i) (got {fid!r})")
    prv = record.get("prv_candidates")
    if prv is not None and not isinstance(prv, list):
        raise ValidationError(f"prv_candidates: expected a list or null (got {type(prv).__name__})")
