"""date search (R4 search.html#date, 3.1.1.4.4 and prefixes 3.1.1.4.1): every value is a range
set by its precision (`1990` is the whole year), time zones are honoured, Periods are ranges with
open ends, and each prefix compares the search range [a, b) with the target range [lo, hi):

eq: a <= lo and hi <= b      ne: not eq
gt: hi > b                   lt: lo < a
ge: gt or eq                 le: lt or eq
sa: lo >= b                  eb: hi <= a
ap: approximately (10% of the distance from now)

Values without a time zone are read as UTC (the server documents UTC as its zone).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from .support import observation, patient


@pytest.fixture
def births(data):
    made = {
        "year": "1990", "month": "1990-03", "day": "1990-03-15", "april": "1990-04-01", "next": "1991-01-01",
    }
    return {k: data.create(patient(birthDate=v))["id"] for k, v in made.items()}


def _ids(births, *names):
    return {births[n] for n in names}


@pytest.mark.parametrize("query, expected", [
    ("1990", ("year", "month", "day", "april")),
    ("eq1990", ("year", "month", "day", "april")),
    ("1990-03", ("month", "day")),
    ("1990-03-15", ("day",)),
    ("1991", ("next",)),
    ("1989", ()),
    ("ne1990-03", ("year", "april", "next")),
    ("gt1990-03", ("year", "april", "next")),
    ("ge1990-03", ("year", "month", "day", "april", "next")),
    ("lt1990-03", ("year",)),
    ("le1990-03", ("year", "month", "day")),
    ("sa1990-03", ("april", "next")),
    ("eb1990-03", ()),
    ("eb1990-04", ("month", "day")),
    ("sa1990", ("next",)),
    ("lt1990-03-15", ("year", "month")),
    ("gt1990-03-15", ("year", "month", "april", "next")),
])
def test_prefixes_on_ranges_of_different_precision(data, births, query, expected):
    assert data.ids("/Patient", {"birthdate": query}) == _ids(births, *expected)


def test_or_and(data, births):
    assert data.ids("/Patient", {"birthdate": "1990-03-15,1991"}) == _ids(births, "day", "next")
    assert data.ids("/Patient", [("birthdate", "ge1990-03"), ("birthdate", "lt1990-04")]) == \
        _ids(births, "year", "month", "day")
    assert data.ids("/Patient", [("birthdate", "sa1990-02"), ("birthdate", "eb1990-04")]) == \
        _ids(births, "month", "day")
    # ranges overlapping [1990-03-10, 1990-03-21) from both sides: the year and the month too
    assert data.ids("/Patient", [("birthdate", "ge1990-03-10"), ("birthdate", "le1990-03-20")]) == \
        _ids(births, "year", "month", "day")


@pytest.fixture
def zoned(data):
    """Two instants on either side of midnight UTC, written in other zones."""
    late = data.create(observation(effectiveDateTime="2021-06-01T23:30:00-05:00"))  # 2021-06-02T04:30Z
    early = data.create(observation(effectiveDateTime="2021-06-02T01:00:00+02:00"))  # 2021-06-01T23:00Z
    return late["id"], early["id"]


def test_time_zones(data, zoned):
    late, early = zoned
    assert data.ids("/Observation", {"date": "2021-06-02T04:30:00Z"}) == {late}
    assert data.ids("/Observation", {"date": "2021-06-01T23:30:00-05:00"}) == {late}
    assert data.ids("/Observation", {"date": "2021-06-02T06:30:00+02:00"}) == {late}
    assert data.ids("/Observation", {"date": "2021-06-01T23:00:00Z"}) == {early}
    assert data.ids("/Observation", {"date": "ge2021-06-02T00:00:00Z"}) == {late}
    assert data.ids("/Observation", {"date": "lt2021-06-02T00:00:00Z"}) == {early}
    assert data.ids("/Observation", {"date": "ge2021-06-01T20:00:00-04:00"}) == {late}  # = 2021-06-02T00:00Z


def test_dates_without_zone_are_utc_days(data, zoned):
    late, early = zoned
    assert data.ids("/Observation", {"date": "2021-06-02"}) == {late}
    assert data.ids("/Observation", {"date": "2021-06-01"}) == {early}
    assert data.ids("/Observation", {"date": "2021-06"}) == {late, early}


def test_seconds_and_fractions(data):
    obs = data.create(observation(effectiveDateTime="2021-06-02T10:20:30.250Z"))["id"]
    assert data.ids("/Observation", {"date": "2021-06-02T10:20:30Z"}) == {obs}
    assert data.ids("/Observation", {"date": "2021-06-02T10:20:30.250Z"}) == {obs}
    assert data.ids("/Observation", {"date": "2021-06-02T10:20:30.2Z"}) == {obs}
    assert data.ids("/Observation", {"date": "2021-06-02T10:20:30.3Z"}) == set()
    assert data.ids("/Observation", {"date": "2021-06-02T10:20:31Z"}) == set()
    assert data.ids("/Observation", {"date": "gt2021-06-02T10:20:30.2Z"}) == set()
    assert data.ids("/Observation", {"date": "lt2021-06-02T10:20:30.26Z"}) == {obs}


@pytest.fixture
def periods(data):
    year = data.create(observation(effectivePeriod={"start": "2020-01-01", "end": "2020-12-31"}))
    open_end = data.create(observation(effectivePeriod={"start": "2020-01-01T00:00:00Z"}))
    open_start = data.create(observation(effectivePeriod={"end": "2019-06-30"}))
    return {"year": year["id"], "open_end": open_end["id"], "open_start": open_start["id"]}


@pytest.mark.parametrize("query, expected", [
    ("2020", ("year",)),
    ("2020-06", ()),
    ("ne2020", ("open_end", "open_start")),
    ("ne2020-06", ("year", "open_end", "open_start")),
    ("gt2020-06", ("year", "open_end")),
    ("lt2020-06", ("year", "open_end", "open_start")),
    ("sa2019", ("year", "open_end")),
    ("eb2021", ("year", "open_start")),
    ("eb2020-12", ("open_start",)),
    ("sa2020-06", ()),
    ("gt2030", ("open_end",)),
    ("lt2019", ("open_start",)),
    ("ge2020", ("year", "open_end")),
    ("le2019-06-30", ("open_start",)),
])
def test_periods_and_open_ends(data, periods, query, expected):
    assert data.ids("/Observation", {"date": query}) == {periods[n] for n in expected}


def test_instant_and_period_and_datetime_in_one_parameter(data):
    instant = data.create(observation(effectiveInstant="2022-02-02T10:00:00.000Z"))["id"]
    dt = data.create(observation(effectiveDateTime="2022-02-02"))["id"]
    period = data.create(observation(effectivePeriod={"start": "2022-02-02T08:00:00Z",
                                                      "end": "2022-02-02T09:00:00Z"}))["id"]
    assert data.ids("/Observation", {"date": "2022-02-02"}) == {instant, dt, period}
    assert data.ids("/Observation", {"date": "2022-02-02T10:00:00Z"}) == {instant}
    assert data.ids("/Observation", {"date": "lt2022-02-02T09:30:00Z"}) == {dt, period}


def test_approximately(data):
    today = datetime.now(UTC).date()

    def day(n):
        return (today + timedelta(days=n)).isoformat()

    near = data.create(patient(birthDate=day(100)))["id"]
    far = data.create(patient(birthDate=day(200)))["id"]
    old = data.create(patient(birthDate="1900-01-01"))["id"]
    # 10% of 101 days is ~10 days: day 100 is close to day 101, day 200 is not
    assert data.ids("/Patient", {"birthdate": f"ap{day(101)}"}) == {near}
    assert data.ids("/Patient", {"birthdate": f"ap{day(195)}"}) == {far}
    assert data.ids("/Patient", {"birthdate": "ap1905-01-01"}) == {old}  # 10% of ~120 years
    assert data.ids("/Patient", {"birthdate": "ap1960-01-01"}) == set()


def test_last_updated(data):
    p = data.create(patient())
    stamp = p["meta"]["lastUpdated"]
    other = data.create_later(patient(), stamp)
    assert data.ids("/Patient", {"_lastUpdated": stamp}) == {p["id"]}
    assert data.ids("/Patient", {"_lastUpdated": f"ge{stamp}"}) == {p["id"], other["id"]}
    assert data.ids("/Patient", {"_lastUpdated": f"gt{stamp}"}) == {other["id"]}
    assert data.ids("/Patient", {"_lastUpdated": f"lt{stamp}"}) == set()
    assert data.ids("/Patient", {"_lastUpdated": f"le{other['meta']['lastUpdated']}"}) == {p["id"], other["id"]}
    assert data.ids("/Patient", {"_lastUpdated": "lt2000-01-01"}) == set()


@pytest.mark.parametrize("value", [
    "1990-13", "notadate", "xx1990", "1990-02-30", "19900101", "1990-01-01T25:00:00Z", "eq",
    "1990-01-01T10:00:00+25:00",
])
def test_invalid_dates_are_400(data, value):
    r = data.get("/Patient", {"birthdate": value})
    assert r.status_code == 400, r.text
    assert r.json()["resourceType"] == "OperationOutcome"
