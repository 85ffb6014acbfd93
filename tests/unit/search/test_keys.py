"""search/keys.py: stored values flattened into ordered string keys, and search conditions as
keys or key ranges inside one `code=` prefix."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fhir_server.search.dates import EARLIEST, LATEST, period
from fhir_server.search.keys import (
    SHORT_TIME,
    contained_prefix,
    encode,
    flatten,
    is_keyed,
    key_condition,
    prefixed,
    search_conditions,
    sortable_number,
)
from fhir_server.storage.records import KeyRange

TOP = "\U0010ffff"
finite = st.floats(allow_nan=False)
# every FHIR year (a day from the edges, so that the zones below stay inside datetime's range)
instants = st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30),
                        timezones=st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30)),
                                                   timezone(timedelta(hours=-11))]))


def day(y, m, d):
    return datetime(y, m, d, tzinfo=UTC)


# -- encode / sortable_number ---------------------------------------------------------------------
def test_numbers_sort_as_strings_in_numeric_order():
    numbers = [-1e300, -1000, -2.5, -1, -1e-300, 0, 1e-300, 0.5, 1, 2, 10, 1e300, float("inf")]
    encoded = [sortable_number(n) for n in numbers]
    assert encoded == sorted(encoded)
    assert len(set(encoded)) == len(numbers)


def test_negative_infinity_sorts_first():
    assert sortable_number(float("-inf")) < sortable_number(-1e308)


@given(finite, finite)
def test_string_order_of_numbers_is_numeric_order(a, b):
    if a < b:
        assert sortable_number(a) < sortable_number(b)
    elif a > b:
        assert sortable_number(a) > sortable_number(b)


@given(finite)
def test_sortable_number_is_sixteen_hex_digits(n):
    s = sortable_number(n)
    assert len(s) == 16
    int(s, 16)


def test_ints_and_floats_encode_alike():
    assert encode(3) == encode(3.0) == sortable_number(3.0)


def test_encode_strings_as_they_are_and_booleans_as_words():
    assert encode("Durand") == "Durand"
    assert encode(True) == "true"
    assert encode(False) == "false"  # not the number 0


def test_encode_datetime_in_utc_with_microseconds():
    paris = timezone(timedelta(hours=2))
    assert encode(datetime(2024, 6, 1, 12, 0, tzinfo=paris)) == "2024-06-01T10:00:00.000000Z"


@given(instants, instants)
def test_string_order_of_instants_is_time_order(a, b):
    if a < b:
        assert encode(a) < encode(b)
    elif a == b:
        assert encode(a) == encode(b)


def test_years_before_1000_are_zero_padded():
    assert encode(datetime(1, 1, 1, tzinfo=UTC)) == "0001-01-01T00:00:00.000000Z"
    assert encode(datetime(999, 12, 31, 23, 59, 59, 999000, tzinfo=UTC)) == "0999-12-31T23:59:59.999000Z"
    assert encode(LATEST) == "9999-12-31T23:59:59.999000Z"


_YEARS = (1, 2, 9, 10, 99, 100, 999, 1000, 1974, 2024, 9998, 9999)
_TIMES = ("T00:00:00", "T12:30:00.5", "T23:59:59.999")
_ZONES = ("-14:00", "-05:30", "Z", "+01:00", "+14:00")
_EDGES = [f"{y:04d}-{md}{t}{z}" for y in _YEARS for md in ("01-01", "12-31") for t in _TIMES for z in _ZONES]


def test_date_keys_sort_in_time_order_from_year_1_to_9999_in_every_zone():
    ranges = [period(text) for text in _EDGES]
    for side in (0, 1):
        by_time = sorted(ranges, key=lambda r: r[side])
        by_key = sorted(ranges, key=lambda r: encode(r[side]))
        assert [r[side] for r in by_key] == [r[side] for r in by_time]


@pytest.mark.parametrize("text", _EDGES + ["0001", "9999", "0001-01", "9999-12", "0001-01-01", "9999-12-31"])
def test_every_value_at_the_edges_of_fhir_time_has_a_range_inside_what_is_stored(text):
    low, high = period(text)
    assert EARLIEST <= low <= high <= LATEST
    assert flatten({"date": [{"l": low, "h": high}]})  # keyed, whatever the zone did


def test_values_pushed_past_the_edges_by_their_zone_are_clamped():
    assert period("9999-12-31T23:59:59.999-14:00") == (LATEST, LATEST)
    assert period("0001-01-01T00:00:00+14:00") == (EARLIEST, EARLIEST)
    assert period("9999-12-31T23:59:59.999+14:00")[0] == datetime(9999, 12, 31, 9, 59, 59, 999000, tzinfo=UTC)
    assert period("0001-01-01T00:00:00-14:00")[0] == datetime(1, 1, 1, 14, tzinfo=UTC)


def test_conditions_at_the_edges_do_not_overflow():
    for value in (EARLIEST, LATEST):
        for op in ("$gt", "$gte", "$lt", "$lte"):
            assert search_conditions("date.h", {op: value})
            assert search_conditions("date.l", {op: value})


def test_encode_gives_none_for_other_values():
    assert encode(None) is None
    assert encode({"l": 1}) is None
    assert encode([1]) is None


# -- flatten ---------------------------------------------------------------------------------------
def test_flatten_keys_each_value_under_its_code_sorted_and_unique():
    assert flatten({"name": ["durand", "marie", "durand"], "gender": ["female"]}) == [
        "gender=female", "name=durand", "name=marie"]


def test_short_time_range_is_keyed_by_its_low_end_only():
    keys = flatten({"birthdate": [{"l": day(1974, 12, 25), "h": day(1974, 12, 26)}]})
    assert keys == ["birthdate.l=1974-12-25T00:00:00.000000Z"]


def test_long_time_range_is_keyed_by_both_ends():
    keys = flatten({"date": [{"l": day(2024, 1, 1), "h": day(2025, 1, 1)}]})
    assert keys == ["date.h=2025-01-01T00:00:00.000000Z", "date.l=2024-01-01T00:00:00.000000Z"]


def test_range_of_exactly_short_time_is_short():
    low = day(2024, 1, 1)
    assert flatten({"date": [{"l": low, "h": low + SHORT_TIME}]}) == ["date.l=" + encode(low)]


def test_point_number_is_keyed_once_and_an_interval_by_both_ends():
    assert flatten({"value": [{"l": 5.0, "h": 5.0}]}) == ["value.l=" + sortable_number(5.0)]
    assert sorted(flatten({"value": [{"l": 4.5, "h": 5.5}]})) == [
        "value.h=" + sortable_number(5.5), "value.l=" + sortable_number(4.5)]


def test_derived_token_forms_are_not_keyed():
    keys = flatten({"identifier": ["123", "http://ex.org|", "http://ex.org|123", "|123"]})
    assert keys == ["identifier=123", "identifier=http://ex.org|123"]


def test_modifier_specific_values_are_not_keyed_but_identifier_is():
    keys = flatten({"code:text": ["Heart rate"], "name:exact": ["Hélène"],
                    "subject:identifier": ["http://ex.org|1"], "subject": ["Patient/1"]})
    assert keys == ["subject:identifier=http://ex.org|1", "subject=Patient/1"]


def test_composites_are_keyed_by_their_first_component():
    keys = flatten({"code-value-quantity": [{"0": "http://loinc.org|8867-4", "1": [{"l": 60.0, "h": 60.0}]}]})
    assert keys == ["code-value-quantity.0=http://loinc.org|8867-4"]


def test_booleans_and_numbers_are_encoded_in_keys():
    assert flatten({"active": [True], "count": [2]}) == ["active=true", "count=" + sortable_number(2)]


def test_is_keyed():
    assert is_keyed("gender") and is_keyed("date.l")
    assert is_keyed("subject:identifier") and is_keyed("subject:identifier.x")
    assert not is_keyed("code:text") and not is_keyed("name:exact")


# -- key_condition ---------------------------------------------------------------------------------
def test_equality_is_one_key():
    assert key_condition("gender", "female") == "gender=female"


def test_system_bar_is_a_range_over_that_system():
    key = key_condition("identifier", "http://ex.org|")
    assert key == KeyRange("identifier=http://ex.org|", "identifier=http://ex.org|" + TOP)
    assert key.low_closed and not key.high_closed
    assert key.low <= "identifier=http://ex.org|123" < key.high
    assert not key.low <= "identifier=http://ex.org.uk|123" < key.high


def test_bar_code_is_the_code_key():
    assert key_condition("identifier", "|123") == "identifier=123"


def test_gt_and_lt_are_open_ends():
    key = key_condition("n", {"$gt": 1, "$lt": 2})
    assert key == KeyRange("n=" + sortable_number(1), "n=" + sortable_number(2), False, False)


def test_gte_and_lte_are_closed_ends():
    key = key_condition("n", {"$gte": 1, "$lte": 2})
    assert key == KeyRange("n=" + sortable_number(1), "n=" + sortable_number(2), True, True)


def test_one_sided_condition_stays_inside_the_prefix():
    assert key_condition("d.l", {"$gte": day(2024, 1, 1)}) == KeyRange(
        "d.l=2024-01-01T00:00:00.000000Z", "d.l=" + TOP, True, False)
    assert key_condition("d.l", {"$lt": day(2024, 1, 1)}) == KeyRange(
        "d.l=", "d.l=2024-01-01T00:00:00.000000Z", True, False)


def test_string_prefix_condition_is_a_range():
    assert key_condition("name", {"$gte": "hel", "$lt": "hel" + TOP}) == KeyRange(
        "name=hel", "name=hel" + TOP, True, False)


def test_unkeyed_field_has_no_key():
    assert key_condition("code:text", "heart") is None
    assert key_condition("name:exact", {"$gte": "a"}) is None


def test_unknown_operator_or_value_has_no_key():
    assert key_condition("n", {"$ne": 1}) is None
    assert key_condition("n", {"$gt": None}) is None
    assert key_condition("n", None) is None


# -- search_conditions -----------------------------------------------------------------------------
def test_condition_on_a_plain_field_is_its_key():
    assert search_conditions("gender", "female") == ["gender=female"]
    assert search_conditions("code:text", "x") is None


def test_condition_on_high_ends_also_reads_low_ends_shifted_by_short_time():
    after = day(2024, 1, 1)
    keys = search_conditions("date.h", {"$gt": after})
    assert keys == [key_condition("date.h", {"$gt": after}),
                    key_condition("date.l", {"$gt": after - SHORT_TIME})]


def test_upper_bound_on_high_ends_is_not_shifted():
    before = day(2024, 1, 1)
    assert search_conditions("date.h", {"$lt": before})[1] == key_condition("date.l", {"$lt": before})


def test_short_range_found_by_a_condition_on_its_high_end():
    # 2023-12-31 (a day, keyed by l only) ends after 2023-12-31T12:00: the shifted l range holds it
    stored = flatten({"date": [{"l": day(2023, 12, 31), "h": day(2024, 1, 1)}]})
    ranges = search_conditions("date.h", {"$gt": datetime(2023, 12, 31, 12, tzinfo=UTC)})
    assert any(isinstance(r, KeyRange) and r.low < k < r.high for r in ranges for k in stored)


# -- prefixes --------------------------------------------------------------------------------------
def test_contained_prefix_and_prefixed():
    prefix = contained_prefix("Medication")
    assert prefix == "#Medication:"
    assert prefixed("code=x", prefix) == "#Medication:code=x"
    assert prefixed(KeyRange("a", "b", False, True), prefix) == KeyRange("#Medication:a", "#Medication:b", False, True)
