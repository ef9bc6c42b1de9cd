"""Positions from table columns: degrees, radians or sexagesimal text, with every bad value named.

Bad rows (missing, non-numeric or out-of-range coordinates) either stop the build with a message
naming the file, column and row, or are skipped and counted (spec.badRows).
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from step_runtime.spec.trainingset import TableSpec
from step_runtime.trainingset.arrays import mask_of
from step_runtime.trainingset.errors import BuildError
from step_runtime.trainingset.labels import as_array
from step_runtime.trainingset.sexagesimal import Quirk, parse_sexagesimal

Warn = Callable[[str], None]


# What pandas.to_numeric reads as a number, for text columns (spaces around are stripped first).
_NUMBER = r"^[+-]?((\d+\.?\d*|\.\d+)([eE][+-]?\d+)?|inf(inity)?|nan)$"


def _numeric(values: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Floats from a column (NaN where missing), and a mask of present values that are not numbers."""
    values = as_array(values)
    kind = values.type
    if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind) \
            or pa.types.is_boolean(kind) or pa.types.is_null(kind):
        numbers = pc.fill_null(values.cast(pa.float64()), np.nan).to_numpy(zero_copy_only=False)
        return numbers, np.zeros(len(values), dtype=bool)
    if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
        return np.full(len(values), np.nan), mask_of(values.is_valid())  # dates, lists...: not numbers
    text = pc.utf8_trim_whitespace(values)
    present = pc.fill_null(pc.greater(pc.utf8_length(text), 0), False)
    number = pc.fill_null(pc.match_substring_regex(text, _NUMBER, ignore_case=True), False)
    numbers = pc.fill_null(pc.if_else(number, text, pa.scalar(None, text.type)).cast(pa.float64()), np.nan)
    return numbers.to_numpy(zero_copy_only=False), mask_of(present) & ~mask_of(number)


# Positions read as degrees that all fit in radian ranges, over at least this many rows, are
# almost surely radians (a real table in degrees would have to sit within 6.3 deg of RA 0).
RADIANS_MIN_ROWS = 100


def _refuse_radians(ra: np.ndarray, dec: np.ndarray, spec: TableSpec, origin: str, spec_path: str) -> None:
    """Refuse degrees that look like radians, unless coordUnits was set explicitly."""
    finite = np.isfinite(ra) & np.isfinite(dec)
    n = int(finite.sum())
    if n < RADIANS_MIN_ROWS:
        return
    if np.all(np.abs(ra[finite]) <= 2.0 * np.pi) and np.all(np.abs(dec[finite]) <= np.pi / 2.0):
        field = f"spec.{spec_path}.coordUnits" if spec_path else "coordUnits"
        raise BuildError(
            f"{origin}: columns {spec.ra_column!r}/{spec.dec_column!r}: all {n} positions have |ra| <= 2 pi and "
            f"|dec| <= pi/2, so they look like radians, and {field} is unset (degrees). Set {field}: rad "
            f"(or {field}: deg if they really are degrees)"
        )


def _report_quirks(quirks: list[Quirk], column: str, origin: str, row_word: str, warn: Warn) -> None:
    """One warning per kind of quirk (astropy's Illegal*Warning), naming the first row and the count."""
    by_field: dict[str, list[Quirk]] = {}
    for quirk in quirks:
        by_field.setdefault(quirk.field, []).append(quirk)
    meaning = {"second": "60 s read as 0 s of the next minute", "minute": "60 min read as 0 min of the next "
               "hour/degree", "hour": "24 h read as 24 h (RA 360 = 0)"}
    for name, found in by_field.items():
        first = found[0]
        warn(f"{origin}: column {column!r} {row_word} {first.position + 1}: {name} of "
             f"{'24' if name == 'hour' else '60'} in {first.value!r} is out of range; {meaning[name]}, as astropy "
             f"does (IllegalSecondWarning and kin); {len(found)} such value(s) in this column")


def positions_deg(frame: pa.Table, spec: TableSpec, origin: str, bad_rows: str, row_word: str = "data row",
                  spec_path: str = "", warn: Warn | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ra_deg in [0, 360), dec_deg, good-row mask) from the spec's columns and units.

    A bad row under policy "fail" raises BuildError naming the file, column and row (1-based).
    With coordUnits unset, positions that look like radians are refused (`spec_path`, e.g.
    "source", names the field to set). Values read with a warning (a sexagesimal second of 60)
    are reported through `warn`, with file, column and row.
    """
    ra_raw, dec_raw = frame[spec.ra_column], frame[spec.dec_column]
    if spec.coord_units == "sexagesimal":
        parsed_ra = parse_sexagesimal(ra_raw, hours=True)
        parsed_dec = parse_sexagesimal(dec_raw, hours=False)
        ra, ra_unparsed = parsed_ra.degrees, parsed_ra.refused
        dec, dec_unparsed = parsed_dec.degrees, parsed_dec.refused
        what = "not a sexagesimal angle"
        if warn is not None:
            for column, parsed in ((spec.ra_column, parsed_ra), (spec.dec_column, parsed_dec)):
                _report_quirks(parsed.quirks, column, origin, row_word, warn)
    else:
        ra, ra_unparsed = _numeric(ra_raw)
        dec, dec_unparsed = _numeric(dec_raw)
        what = "not a number"
        if spec.coord_units is None:
            _refuse_radians(ra, dec, spec, origin, spec_path)
        if spec.coord_units == "rad":
            ra, dec = np.degrees(ra), np.degrees(dec)
    unit_note = {"deg": "degrees", "rad": "radians", "sexagesimal": "sexagesimal"}[spec.coord_units or "deg"]
    problems = [
        (spec.ra_column, ra_unparsed, what),
        (spec.dec_column, dec_unparsed, what),
        (spec.ra_column, ~ra_unparsed & ~np.isfinite(ra), "missing or not finite"),
        (spec.dec_column, ~dec_unparsed & ~np.isfinite(dec), "missing or not finite"),
        (spec.dec_column, np.isfinite(dec) & (np.abs(dec) > 90.0),
         f"declination out of range (|dec| > 90 deg; units {unit_note})"),
    ]
    bad = np.zeros(frame.num_rows, dtype=bool)
    for _, mask, _ in problems:
        bad |= mask
    if bad.any() and bad_rows == "fail":
        first = int(np.flatnonzero(bad)[0])
        for column, mask, reason in problems:
            if mask[first]:
                value = frame[column][first].as_py()
                raise BuildError(
                    f"{origin}: column {column!r} {row_word} {first + 1}: {reason} (value {value!r}); "
                    f"{int(bad.sum())} bad row(s) in all. Fix them, or set spec.badRows: skip-and-count"
                )
    good = ~bad
    return np.mod(np.where(good, ra, 0.0), 360.0), np.where(good, dec, 0.0), good
