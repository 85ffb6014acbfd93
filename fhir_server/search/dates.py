"""FHIR date, dateTime and instant values as the time ranges they stand for.

`2020` means the whole year: [2020-01-01T00:00, 2021-01-01T00:00). Values without a time zone
are read as UTC (the spec leaves the zone to the server; we document UTC).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

_DATE_RE = re.compile(
    r"^(?P<y>\d{4})(?:-(?P<m>\d{2})(?:-(?P<d>\d{2})"
    r"(?:T(?P<H>\d{2}):(?P<M>\d{2})(?::(?P<S>\d{2})(?P<f>\.\d+)?)?(?P<tz>Z|[+-]\d{2}:\d{2})?)?)?)?$")


class DateError(ValueError):
    pass


def period(value: str) -> tuple[datetime, datetime]:
    """The half-open UTC range [low, high) a FHIR date/dateTime/instant covers."""
    match = _DATE_RE.match(value.strip())
    if not match:
        raise DateError(f"{value!r} is not a FHIR date or dateTime (YYYY, YYYY-MM, YYYY-MM-DD, "
                        f"YYYY-MM-DDThh:mm:ss[.fff][Z|±hh:mm])")
    g = match.groupdict()
    try:
        tz = UTC
        if g["tz"] and g["tz"] != "Z":
            sign = 1 if g["tz"][0] == "+" else -1
            tz = timezone(sign * timedelta(hours=int(g["tz"][1:3]), minutes=int(g["tz"][4:6])))
        year = int(g["y"])
        if g["m"] is None:
            low = datetime(year, 1, 1, tzinfo=tz)
            return _utc(low), _utc(low.replace(year=year + 1)) if year < 9999 else _max()
        month = int(g["m"])
        if g["d"] is None:
            low = datetime(year, month, 1, tzinfo=tz)
            high = low.replace(year=year + 1, month=1) if month == 12 else low.replace(month=month + 1)
            return _utc(low), _utc(high)
        day = int(g["d"])
        if g["H"] is None:
            low = datetime(year, month, day, tzinfo=tz)
            return _utc(low), _utc(low + timedelta(days=1))
        if g["M"] is not None and g["S"] is None:
            low = datetime(year, month, day, int(g["H"]), int(g["M"]), tzinfo=tz)
            return _utc(low), _utc(low + timedelta(minutes=1))
        fraction = g["f"] or ""
        micro = int((fraction[1:] + "000000")[:6]) if fraction else 0
        low = datetime(year, month, day, int(g["H"]), int(g["M"]), int(g["S"]), micro, tzinfo=tz)
        digits = len(fraction) - 1 if fraction else 0
        step = timedelta(microseconds=10 ** (6 - min(digits, 6))) if digits else timedelta(seconds=1)
        return _utc(low), _utc(low + step)
    except ValueError as exc:
        raise DateError(f"{value!r} is not a valid date: {exc}") from None


def instant(value: str) -> datetime:
    """The start of the range a value covers, for parameters like `_since`."""
    return period(value)[0]


def _utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


def _max() -> datetime:
    return datetime.max.replace(tzinfo=UTC)
