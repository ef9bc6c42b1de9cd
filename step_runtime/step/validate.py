"""What every alert processor can trust, and which alerts a step leaves out on purpose.

`validate_alert` checks a decoded alert (alert_model) and names the packet's own field in its
error (candidate.fid for ZTF, diaSource.band for LSST): the error becomes the dead letter's.
`AlertGate` validates, then applies the step's alert filter: solar-system alerts skipped by default
(variable-star and transient classifiers have nothing to say about asteroids), and alerts under
a minimum real/bogus reliability. Filtered alerts are counted, not dead-lettered: they are good
alerts this step does not want.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from step_runtime.step.alert_model import Survey

# The alert fields validation reads (the decoder builds them for every alert processor). Of the
# previous detections it checks only that they are a list (or null): naming one field of them
# keeps the rest of each detection to what the processor reads ("detections" alone would decode
# all 14 alert-model fields of 30 detections per alert, a third more than the features need).
VALIDATED_FIELDS = frozenset({"survey", "oid", "solarSystem", "source.sourceId", "source.ra", "source.dec",
                              "source.mjd", "source.band", "source.mag", "source.magErr", "source.flux",
                              "source.fluxErr", "detections.sourceId"})


class ValidationError(ValueError):
    """A decoded message that is not a usable alert; the message names the field."""


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def validate_alert(alert: dict[str, Any], survey: Survey) -> None:
    """Check the fields every alert processor relies on; raise ValidationError naming the field.

    oid (non-empty), source (a record) with sourceId (integer), ra in [0, 360), dec in [-90, 90],
    mjd finite, a band of the survey, and the survey's measurement (ZTF magpsf and sigmapsf, LSST
    psfFlux and psfFluxErr) finite; detections a list or null.
    """
    d = survey.describe
    oid = alert.get("oid")
    if not isinstance(oid, str) or not oid:
        raise ValidationError(f"{d('oid')}: missing or empty (got {oid!r}), expected {survey.oid_expected}")
    src = alert.get("source")
    if not isinstance(src, dict):
        raise ValidationError(f"{d('source')}: missing, expected a record")
    sid = src.get("sourceId")
    if isinstance(sid, bool) or not isinstance(sid, int):
        raise ValidationError(f"{d('source.sourceId')}: expected an integer (got {sid!r})")
    ra, dec = _number(src.get("ra")), _number(src.get("dec"))
    if ra is None or not math.isfinite(ra) or not 0.0 <= ra < 360.0:
        raise ValidationError(f"{d('source.ra')}: expected degrees in [0, 360) (got {src.get('ra')!r})")
    if dec is None or not math.isfinite(dec) or not -90.0 <= dec <= 90.0:
        raise ValidationError(f"{d('source.dec')}: expected degrees in [-90, 90] (got {src.get('dec')!r})")
    for name in ("mjd", *survey.measured):
        v = _number(src.get(name))
        if v is None or not math.isfinite(v):
            # only None, NaN and infinities get here: the same before and after a unit conversion
            raise ValidationError(f"{d('source.' + name)}: expected a finite number (got {src.get(name)!r})")
    band = src.get("band")
    if band not in survey.band_codes:
        codes = list(survey.band_codes.values())
        expected = ", ".join(codes[:-1]) + " or " + codes[-1]
        raise ValidationError(f"{d('source.band')}: expected {expected} (got {band!r})")
    prv = alert.get("detections")
    if prv is not None and not isinstance(prv, list):
        raise ValidationError(f"{d('detections')}: expected a list or null (got {type(prv).__name__})")


class AlertGate:
    """Validation, then the step's alert filter; `reads` are the alert fields both need."""

    def __init__(self, survey: Survey, min_reliability: float | None = None, solar_system: str = "skip") -> None:
        self.survey = survey
        self.min_reliability = min_reliability
        self.skip_solar_system = solar_system == "skip"
        self.reads = VALIDATED_FIELDS | ({"source.reliability"} if min_reliability is not None else set())

    def __call__(self, alert: dict[str, Any]) -> str | None:
        """None for an alert to process; the reason ("solar_system", "reliability") for one the
        step leaves out. Raises ValidationError for an alert that is not usable."""
        validate_alert(alert, self.survey)
        if self.skip_solar_system and alert.get("solarSystem"):
            return "solar_system"
        if self.min_reliability is not None:
            r = _number(alert["source"].get("reliability"))
            if r is None or not r >= self.min_reliability:  # no score: not shown to be real
                return "reliability"
        return None


@dataclass(frozen=True)
class Rejected:
    """What the gate made of a record it did not let through, where the batch was decoded (a
    decode worker): `filtered` (a good alert the step leaves out, `reason` the filter) or not (an
    invalid alert, `reason` its error: a dead letter)."""

    reason: str
    filtered: bool


def screen(gate: AlertGate, alert: dict[str, Any]) -> dict[str, Any] | Rejected:
    """The alert when the gate lets it through, else what it was rejected for."""
    try:
        reason = gate(alert)
    except ValidationError as exc:
        return Rejected(str(exc), filtered=False)
    return alert if reason is None else Rejected(reason, filtered=True)
