"""search/execute.py: the planner picks the driving term, `selection` turns it into what storage
reads."""

from __future__ import annotations

from datetime import UTC, datetime

from fhir_server.search.execute import MAX_DRIVING_CONDITIONS, _merged_ranges, plan, selection
from fhir_server.search.keys import key_condition, search_conditions
from fhir_server.search.terms import EXACT, IDS, KEYS, PREFIX, RANGE, SCAN, Bounds, Term, Values
from fhir_server.storage.records import Ids, KeyRange, Keys


def anything(doc):
    return True


def term(field, conditions, rank=EXACT, bounds=None, match=anything):
    return Term(field, list(conditions), match, rank, bounds)


def day(y, m, d):
    return datetime(y, m, d, tzinfo=UTC)


# -- plan ------------------------------------------------------------------------------------------
def test_plan_picks_the_cheapest_indexed_term():
    gender = term("gender", ["female"])
    name = term("name", [{"$gte": "dur", "$lt": "dur\U0010ffff"}], PREFIX)
    birth = term("birthdate.l", [{"$gte": day(1970, 1, 1)}], RANGE)
    assert plan([birth, name, gender]) is gender


def test_cost_counts_the_conditions():
    many = term("gender", ["female", "male", "other", "unknown"])  # 0 + 4
    prefix = term("name", [{"$gte": "dur", "$lt": "dur\U0010ffff"}], PREFIX)  # 10 + 1
    assert plan([prefix, many]) is many
    assert plan([prefix, term("gender", ["x"] * 11)]) is prefix


def test_first_of_equal_costs_wins():
    a, b = term("gender", ["female"]), term("active", ["true"])
    assert plan([a, b]) is a


def test_unindexed_terms_never_drive():
    scan = term(None, [], SCAN)
    keyed = term("gender", ["female"], RANGE)
    assert plan([scan, keyed]) is keyed


def test_no_indexed_term_means_a_scan():
    assert plan([]) is None
    assert plan([term(None, [], SCAN)]) is None


def test_indexed_term_without_conditions_does_not_drive():
    assert plan([term("gender", [])]) is None  # e.g. a chain that found nothing


def test_term_on_an_unkeyed_field_does_not_drive():
    assert plan([term("code:text", ["heart"])]) is None
    assert plan([term("value", [{"$ne": 1}])]) is None


def test_keyed_only_skips_id_terms():
    ids = term(IDS, ["a"])
    keys = term("gender", ["female"], RANGE)
    assert plan([ids, keys]) is ids
    assert plan([ids, keys], keyed_only=True) is keys
    assert plan([ids], keyed_only=True) is None


def test_too_many_conditions_make_a_scan_cheaper():
    assert plan([term(IDS, [str(i) for i in range(MAX_DRIVING_CONDITIONS + 1)])]) is None
    at_limit = term(IDS, [str(i) for i in range(MAX_DRIVING_CONDITIONS)])
    assert plan([at_limit]) is at_limit


def test_ids_and_keys_terms_drive_whatever_their_conditions_look_like():
    keys = term(KEYS, [KeyRange("subject.", "subject=\U0010ffff")], RANGE)
    assert plan([keys]) is keys


# -- merged ranges ---------------------------------------------------------------------------------
def range_terms(match_low=anything, match_high=anything):
    low = term("birthdate.h", [{"$gte": day(1970, 1, 1)}], RANGE,
               Bounds("birthdate", low=day(1969, 12, 31)), match_low)
    high = term("birthdate.l", [{"$lt": day(1980, 1, 1)}], RANGE,
                Bounds("birthdate", high=day(1980, 1, 1)), match_high)
    return low, high


def test_two_range_terms_on_one_parameter_merge_into_one_bounded_range():
    low, high = range_terms()
    driver = plan([low, high])
    assert driver not in (low, high)
    assert driver.field == KEYS and driver.rank == PREFIX
    assert driver.conditions == [key_condition("birthdate.l", {"$gte": day(1969, 12, 31), "$lte": day(1980, 1, 1)})]
    assert driver.conditions[0].low_closed and driver.conditions[0].high_closed


def test_merged_range_matches_what_both_terms_match():
    low, high = range_terms(match_low=lambda d: d.id != "old", match_high=lambda d: d.id != "young")
    (merged,) = _merged_ranges([low, high])
    assert merged.match(Values("ok", {}))
    assert not merged.match(Values("old", {}))
    assert not merged.match(Values("young", {}))


def test_merged_range_reads_long_ranges_by_their_high_end_when_a_term_needs_it():
    low = term("date.h", [{"$gt": day(2024, 1, 1)}], RANGE,
               Bounds("date", low=day(2023, 12, 31), h_low=day(2024, 1, 1)))
    high = term("date.l", [{"$lt": day(2025, 1, 1)}], RANGE, Bounds("date", high=day(2025, 1, 1)))
    (merged,) = _merged_ranges([low, high])
    assert merged.conditions[1] == key_condition("date.h", {"$gt": day(2024, 1, 1)})
    assert len(merged.conditions) == 2


def test_range_terms_on_different_parameters_do_not_merge():
    low = term("a.h", [{"$gte": 1}], RANGE, Bounds("a", low=1))
    high = term("b.l", [{"$lt": 2}], RANGE, Bounds("b", high=2))
    assert _merged_ranges([low, high]) == []


def test_range_terms_open_on_the_same_side_do_not_merge():
    a = term("a.l", [{"$gte": 1}], RANGE, Bounds("a", low=1))
    b = term("a.l", [{"$gte": 2}], RANGE, Bounds("a", low=2))
    assert _merged_ranges([a, b]) == []
    assert _merged_ranges([a]) == []


def test_merged_range_takes_the_tightest_bounds():
    terms = [term("n.l", [{"$gte": v}], RANGE, Bounds("n", low=v)) for v in (1, 3)] + \
            [term("n.l", [{"$lte": v}], RANGE, Bounds("n", high=v)) for v in (9, 7)]
    (merged,) = _merged_ranges(terms)
    assert merged.conditions == [key_condition("n.l", {"$gte": 3, "$lte": 7})]


# -- selection -------------------------------------------------------------------------------------
def test_selection_of_no_driver_is_the_whole_type():
    assert selection(None) is None


def test_selection_by_ids():
    assert selection(term(IDS, ["a", "b"])) == Ids(("a", "b"))


def test_selection_by_keys_as_they_are():
    ranged = KeyRange("x.", "x=\U0010ffff")
    assert selection(term(KEYS, ["gender=female", ranged])) == Keys(("gender=female", ranged))


def test_selection_by_field_conditions():
    assert selection(term("gender", ["female", "male"])) == Keys(("gender=female", "gender=male"))


def test_selection_on_high_ends_reads_low_ends_too():
    condition = {"$gt": day(2024, 1, 1)}
    assert selection(term("date.h", [condition], RANGE)) == Keys(tuple(search_conditions("date.h", condition)))
