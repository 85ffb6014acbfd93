"""Values at the edges of what FHIR allows, or past them, in the pure functions that read them:
each gives a result or the module's own error (turned into a 4xx by its caller), never an
OverflowError, RecursionError or an int() ValueError. Their HTTP answers: tests/api/test_odd_input.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from fhir_server import jsonio
from fhir_server.api.app import describe
from fhir_server.interactions.urls import whole_number
from fhir_server.search.dates import EARLIEST, LATEST, DateError, period, shift
from fhir_server.search.keys import SHORT_TIME
from fhir_server.search.params import date
from fhir_server.search.params.number import parse_number
from fhir_server.terminology import ucum


# -- dates -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("text", ["2024-01-01T00:00:00+14:30", "2024-01-01T00:00:00-15:00", "0000", "2024-13",
                                  "2024-02-30", "2024-01-01T24:00:00Z"])
def test_dates_outside_fhir_are_date_errors(text):
    with pytest.raises(DateError):
        period(text)


def test_shift_stays_inside_the_edges():
    assert shift(EARLIEST, -timedelta(days=1)) == EARLIEST
    assert shift(LATEST, timedelta(days=1)) == LATEST
    assert shift(LATEST, timedelta(microseconds=500)) == LATEST  # past the stored milliseconds
    assert shift(datetime(2024, 1, 2, tzinfo=UTC), -timedelta(days=1)) == datetime(2024, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize("prefix", date.PREFIXES)
@pytest.mark.parametrize("text", ["0001", "0001-01-01T00:00:00+14:00", "9999", "9999-12-31T23:59:59.999-14:00"])
def test_every_prefix_works_at_the_edges(prefix, text):
    a, b = period(text)
    _, _, test = date.rule(prefix, a, b)
    test(EARLIEST, LATEST)
    date.bounds("date", prefix, a, b)


def _admits(condition: dict, value: datetime) -> bool:
    ops = {"$gt": value.__gt__, "$gte": value.__ge__, "$lt": value.__lt__, "$lte": value.__le__}
    return all(ops[op](bound) for op, bound in condition.items())


@pytest.mark.parametrize("prefix", date.PREFIXES)
@pytest.mark.parametrize("text", ["0001", "0001-01-01T00:00:00+14:00", "9999", "9999-12-31T23:59:59.999-14:00",
                                  "9999-12-31", "0001-01-01"])
def test_values_clamped_to_an_edge_are_found_by_the_index_whenever_they_match(prefix, text):
    a, b = period(text)
    field, condition, test = date.rule(prefix, a, b)
    for edge in (EARLIEST, LATEST):  # what a value pushed past the edge by its zone is stored as
        if field is None or not test(edge, edge):
            continue
        shifted = {op: shift(v, -SHORT_TIME) if op in ("$gt", "$gte") else v for op, v in condition.items()}
        assert _admits(condition, edge) or (field == "h" and _admits(shifted, edge)), (prefix, text, edge)


# -- numbers ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("text", ["1e400", "-1e400", "1e999999999", "9" * 5000, "-" + "9" * 400])
def test_numbers_past_a_double_are_refused(text):
    with pytest.raises(ValueError, match="beyond the numbers"):
        parse_number(text)


def test_long_and_tiny_numbers_are_read():
    assert parse_number("0." + "9" * 5000)[0] == 1.0
    assert parse_number("1e-999999999") == (0.0, 0.0, 0.0)


@pytest.mark.parametrize("text,maximum,expected", [
    ("3", None, 3), ("0003", None, 3), ("9" * 18, None, 10 ** 18 - 1), ("9" * 19, None, None),
    ("9" * 5000, None, None), ("²", None, None), ("٣", None, None), ("", None, None), ("-1", None, None),
    ("9" * 5000, 1000, 1000), ("99999999999999999999", 1000, 1000), ("12", 1000, 12), ("²", 1000, None)])
def test_whole_numbers_are_ascii_digits_never_handed_to_int_unbounded(text, maximum, expected):
    assert whole_number(text, maximum) == expected


# -- UCUM ------------------------------------------------------------------------------------------
def test_deeply_nested_units_are_a_syntax_error_not_a_recursion():
    code = "(" * 500 + "mg" + ")" * 500
    assert "nest more than" in ucum.syntax_error(code)
    assert ucum.converter(code) is None
    assert ucum.syntax_error("(" * ucum.MAX_NESTING + "mg" + ")" * ucum.MAX_NESTING) is None


@pytest.mark.parametrize("code", ["10*" + "9" * 20, "10*" + "9" * 400, "m2000000000", "m." * 40 + "m"])
def test_units_the_library_would_take_ages_over_are_not_converted(code):
    assert ucum.converter(code) is None  # compared as written


def test_ordinary_units_still_convert():
    assert ucum.canonical(5.4, "mg") == (5.4e-06, "kilogram")
    assert ucum.converter("mL/min/{1.73_m2}") is not None


# -- JSON ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("text", ["[" * n + "]" * n for n in (jsonio.MAX_DEPTH + 1, 900, 10_000)]
                         + ['{"a":' * 300 + "1" + "}" * 300])
def test_json_nested_past_the_limit_is_refused(text):
    with pytest.raises(jsonio.JSONError, match="nesting"):
        jsonio.loads(text)


def test_json_at_the_limit_is_read_and_written_back():
    text = "[" * jsonio.MAX_DEPTH + "]" * jsonio.MAX_DEPTH
    assert jsonio.dumps(jsonio.loads(text)) == text.encode()


def test_huge_integer_literals_stay_as_written():
    text = "9" * 10_000
    value = jsonio.loads(f'{{"v":{text}}}')["v"]
    assert isinstance(value, jsonio.Decimal) and value.text == text
    assert jsonio.dumps({"v": value}) == f'{{"v":{text}}}'.encode()


# -- the unexpected-error log line -----------------------------------------------------------------
def test_an_unexpected_error_is_described_in_one_short_line():
    def recurse(n):
        return recurse(n + 1)

    with pytest.raises(RecursionError) as caught:
        recurse(0)
    line = describe(caught.value)
    assert line.startswith("RecursionError: maximum recursion depth exceeded at test_odd_values.py:")
    assert "\n" not in line and len(line) < 600 and line.count(" in recurse") == 4

    with pytest.raises(ValueError) as caught:
        raise ValueError("x" * 10_000 + "\nsecond line")
    line = describe(caught.value)
    assert len(line) < 600 and "\n" not in line
