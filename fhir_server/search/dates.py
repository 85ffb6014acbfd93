"""FHIR date, dateTime and instant values as the time ranges they stand for.

`2020` means the whole year: [2020-01-01T00:00, 2021-01-01T00:00). Values without a time zone
are read as UTC (the spec leaves the zone to the server; we document UTC).

FHIR's range is years 0001–9999 in any zone from -14:00 to +14:00, a little wider than what a
Python datetime holds in UTC: `9999-12-31T23:59:59-14:00` is in the year 10000 UTC. Ranges are
therefore computed on whole microseconds and clamped to [`EARLIEST`, `LATEST`]; a value past
either edge is stored and searched as that edge (`clamped`, `shift` do the same for the arithmetic
of search prefixes), so no valid value fails.
"""

from __future__ import annotations

import calendar
import re
from datetime import UTC, datetime, timedelta

_DATE_RE = re.compile(
    r"^(?P<y>\d{4})(?:-(?P<m>\d{2})(?:-(?P<d>\d{2})"
    r"(?:T(?P<H>\d{2}):(?P<M>\d{2})(?::(?P<S>\d{2})(?P<f>\.\d+)?)?(?P<tz>Z|[+-]\d{2}:\d{2})?)?)?)?$")

EARLIEST = datetime(1, 1, 1, tzinfo=UTC)
LATEST = datetime(9999, 12, 31, 23, 59, 59, 999000, tzinfo=UTC)  # milliseconds: what the database keeps
_NAIVE_MIN = datetime.min
_MICRO = timedelta(microseconds=1)
_LAST = (LATEST - EARLIEST) // _MICRO


class DateError(ValueError):
    pass


def period(value: str) -> tuple[datetime, datetime]:
    """The half-open UTC range [low, high) a FHIR date/dateTime/instant covers (clamped to
    [EARLIEST, LATEST] when the zone pushes it past year 1 or 9999)."""
    match = _DATE_RE.match(value.strip())
    if not match:
        raise DateError(f"{value!r} is not a FHIR date or dateTime (YYYY, YYYY-MM, YYYY-MM-DD, "
                        f"YYYY-MM-DDThh:mm:ss[.fff][Z|±hh:mm])")
    try:
        low, step = _local_start_and_length(match.groupdict())
        offset = _offset(match.group("tz"))
    except ValueError as exc:
        raise DateError(f"{value!r} is not a valid date: {exc}") from None
    start = (low - _NAIVE_MIN) // _MICRO - offset // _MICRO
    return _at(start), _at(start + step // _MICRO)


def _local_start_and_length(g: dict[str, str | None]) -> tuple[datetime, timedelta]:
    """The naive local start of the value and how long it lasts (its precision)."""
    year = int(g["y"] or 0)
    if g["m"] is None:
        return datetime(year, 1, 1), timedelta(days=366 if calendar.isleap(year) else 365)
    month = int(g["m"])
    if g["d"] is None:
        low = datetime(year, month, 1)
        return low, timedelta(days=calendar.monthrange(year, month)[1])
    day = int(g["d"])
    if g["H"] is None:
        return datetime(year, month, day), timedelta(days=1)
    if g["M"] is not None and g["S"] is None:
        return datetime(year, month, day, int(g["H"]), int(g["M"])), timedelta(minutes=1)
    fraction = g["f"] or ""
    micro = int((fraction[1:] + "000000")[:6]) if fraction else 0
    low = datetime(year, month, day, int(g["H"]), int(g["M"]), int(g["S"] or 0), micro)
    digits = len(fraction) - 1 if fraction else 0
    step = timedelta(microseconds=10 ** (6 - min(digits, 6))) if digits else timedelta(seconds=1)
    return low, step


def _offset(tz: str | None) -> timedelta:
    if not tz or tz == "Z":
        return timedelta(0)
    hours, minutes = int(tz[1:3]), int(tz[4:6])
    if hours > 14 or minutes > 59 or (hours == 14 and minutes):
        raise ValueError(f"the time zone {tz} is not between -14:00 and +14:00")
    sign = 1 if tz[0] == "+" else -1
    return sign * timedelta(hours=hours, minutes=minutes)


def _at(micros: int) -> datetime:
    """EARLIEST + micros, clamped to [EARLIEST, LATEST]."""
    return EARLIEST + timedelta(microseconds=min(max(micros, 0), _LAST))


def shift(value: datetime, delta: timedelta) -> datetime:
    """`value + delta`, clamped to [EARLIEST, LATEST] instead of overflowing."""
    try:
        return min(max(value + delta, EARLIEST), LATEST)
    except OverflowError:
        return EARLIEST if delta < timedelta(0) else LATEST


def instant(value: str) -> datetime:
    """The start of the range a value covers, for parameters like `_since`."""
    return period(value)[0]
