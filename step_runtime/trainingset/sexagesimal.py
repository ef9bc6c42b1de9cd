"""Sexagesimal angles ("12:34:56.7", "-05 06 07.8") to degrees, whole columns at once.

astropy's `Angle` parses strings one at a time through a PLY grammar: about 0.5 ms a value, 8 s
for a 15k-row table. Here the forms its grammar accepts with ':' or ' ' separators are matched
by one regular expression over the whole column (pyarrow's RE2), and the value is computed with
the very floating-point steps `Angle` takes, so results are bit-identical to astropy:

    a = |d| + m / 60  (+ s / 3600);  value = copysign(a, sign * d);  hours -> degrees: * HOURANGLE_TO_DEG

(a single number is just sign * value). astropy's range rules are kept: an hour of exactly 24,
a minute or a second of exactly 60 is accepted with a warning (60 s reads as 0 s of the next
minute, which is the same number), beyond that the value is refused. Anything else (letters such
as 12h34m56s, unicode signs, exponents without a dot) goes to astropy itself, value by value.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from step_runtime.trainingset.arrays import arrow_of

# astropy converts hours to degrees through radians: the factor is 15 less one ulp
# (14.999999999999998). Using it too keeps every position bit-identical to astropy's (a test
# checks the constant against astropy.units).
HOURANGLE_TO_DEG = (15.0 * (np.pi / 180.0)) / (np.pi / 180.0)

_F = r"(?:\d+\.\d*|\.\d+)(?:[eE][+-]?\d+)?|\d+"  # astropy's UFLOAT | UINT
_PATTERN = (
    r"^ *(?P<sign>[+-]?) *(?:"
    rf"(?P<d3c>\d+) *: *(?P<m3c>\d+) *: *(?P<s3c>{_F})"
    rf"|(?P<d3s>\d+) +(?P<m3s>\d+) +(?P<s3s>{_F})"
    rf"|(?P<d2c>\d+) *: *(?P<m2c>{_F})"
    rf"|(?P<d2s>\d+) +(?P<m2s>{_F})"
    rf"|(?P<v1>{_F})"
    r") *$"
)


@dataclass(frozen=True)
class Quirk:
    """A value astropy accepts with a warning (hour 24, minute 60, second 60)."""

    position: int   # 0-based position in the column
    field: str      # "hour", "minute" or "second"
    value: str      # the text as read


@dataclass(frozen=True)
class ParsedAngles:
    """Degrees per value (NaN where missing or refused), which values were refused, and quirks."""

    degrees: np.ndarray
    refused: np.ndarray
    quirks: list[Quirk]


def _as_text(values: Any) -> pa.Array:
    """A column as an Arrow string array (from Arrow, or from any sequence such as a pandas Series)."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if not isinstance(values, pa.Array):
        values = pa.array([None if v is None or v != v else str(v) for v in values], pa.string())
    if pa.types.is_dictionary(values.type):
        values = values.cast(values.type.value_type)
    if not (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)):
        values = values.cast(pa.string())
    return values


def parse_sexagesimal(values: Any, hours: bool) -> ParsedAngles:
    """Degrees from a column of sexagesimal strings (hours for RA, degrees for Dec).

    Missing or blank values give NaN and are not refused (the caller reports them as missing).
    """
    values = _as_text(values)
    n = len(values)
    text = pc.utf8_trim_whitespace(values)
    present = pc.fill_null(pc.greater(pc.utf8_length(text), 0), False).to_numpy(zero_copy_only=False)
    found = pc.extract_regex(text, _PATTERN)
    matched = present & found.is_valid().to_numpy(zero_copy_only=False)

    def field(name: str) -> tuple[np.ndarray, np.ndarray]:
        column = found.field(name)
        given = pc.fill_null(pc.greater(pc.utf8_length(column), 0), False).to_numpy(zero_copy_only=False) & matched
        numbers = pc.cast(pc.if_else(arrow_of(given), column, "0"), pa.float64()).to_numpy(zero_copy_only=False)
        return numbers, given

    negative = pc.fill_null(pc.equal(found.field("sign"), "-"), False).to_numpy(zero_copy_only=False)
    d3c, three_colon = field("d3c")
    d3s, three_space = field("d3s")
    d2c, two_colon = field("d2c")
    d2s, two_space = field("d2s")
    v1, single = field("v1")
    first = np.select([three_colon, three_space, two_colon, two_space], [d3c, d3s, d2c, d2s], 0.0)
    minutes = np.select([three_colon, three_space, two_colon, two_space],
                        [field("m3c")[0], field("m3s")[0], field("m2c")[0], field("m2s")[0]], 0.0)
    seconds = np.where(three_colon, field("s3c")[0], field("s3s")[0])
    three = three_colon | three_space
    tuple_form = three | two_colon | two_space

    sign = np.where(negative, -1.0, 1.0)
    signed_first = sign * first  # -0.0 for "-00:30:00", as astropy's sign * value
    a = np.abs(signed_first) + minutes / 60.0
    a = np.where(three, a + seconds / 3600.0, a)
    value = np.where(tuple_form, np.copysign(a, signed_first), sign * v1)

    refused = np.zeros(n, dtype=bool)
    quirks: list[tuple[int, str]] = []
    checks = [("minute", minutes, tuple_form), ("second", seconds, three)]
    if hours:
        hour = np.abs(signed_first)
        refused |= tuple_form & (hour > 24.0)
        quirks += [(int(i), "hour") for i in np.flatnonzero(tuple_form & (hour == 24.0))]
    for name, numbers, applies in checks:
        refused |= applies & (numbers > 60.0)
        quirks += [(int(i), name) for i in np.flatnonzero(applies & (numbers == 60.0))]
    degrees = np.where(matched & ~refused, value * HOURANGLE_TO_DEG if hours else value, np.nan)

    others = np.flatnonzero(present & ~matched)
    if others.size:
        _parse_with_astropy(values, others, hours, degrees, refused, quirks)
    return ParsedAngles(degrees, refused, [Quirk(i, f, str(values[i].as_py())) for i, f in sorted(quirks)])


def _parse_with_astropy(values: pa.Array, positions: np.ndarray, hours: bool, degrees: np.ndarray,
                        refused: np.ndarray, quirks: list[tuple[int, str]]) -> None:
    """The forms the expression does not cover, value by value through astropy (rare)."""
    from astropy import units as u
    from astropy.coordinates import Angle, IllegalHourWarning, IllegalMinuteWarning, IllegalSecondWarning

    kinds = {IllegalHourWarning: "hour", IllegalMinuteWarning: "minute", IllegalSecondWarning: "second"}
    unit = u.hourangle if hours else u.deg
    for pos in positions:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                degrees[pos] = Angle(str(values[int(pos)].as_py()).strip(), unit=unit).degree
            except Exception:  # noqa: BLE001 - astropy refuses a bad angle with many exception types
                refused[pos] = True
                continue
        for warning in caught:
            kind = kinds.get(type(warning.message))
            if kind:
                quirks.append((int(pos), kind))
