"""The reach of a request as one term: alternatives (one per scope) ORed, each an AND of terms;
indexed whenever every alternative drives on keys, or every one on ids."""

from __future__ import annotations

from fhir_server.search.reach import EVERYTHING, NOTHING, Reach, any_of
from fhir_server.search.terms import IDS, KEYS, SCAN, Term, Values, ids_term


def _keys(code: str, value: str) -> Term:
    return Term(KEYS, [f"{code}={value}"], lambda doc: value in doc.values.get(code, ()))


def _scan(code: str, value: str) -> Term:
    return Term(None, [], lambda doc: value in doc.values.get(code, ()), SCAN)


def test_alternatives_are_ored_and_their_terms_anded():
    term = any_of([[_keys("subject", "Patient/a"), _scan("category", "lab")], [_keys("subject", "Patient/b")]])
    assert term.field == KEYS and set(term.conditions) == {"subject=Patient/a", "subject=Patient/b"}
    assert term.match(Values("1", {"subject": ["Patient/a"], "category": ["lab"]}))
    assert not term.match(Values("2", {"subject": ["Patient/a"], "category": ["vital"]}))
    assert term.match(Values("3", {"subject": ["Patient/b"]}))
    assert not term.match(Values("4", {"subject": ["Patient/c"], "category": ["lab"]}))


def test_ids_alternatives_drive_on_ids_and_mixed_ones_scan():
    assert any_of([[ids_term({"a"})], [ids_term({"b"})]]).field == IDS
    mixed = any_of([[ids_term({"a"})], [_keys("subject", "Patient/a")]])
    assert mixed.field is None and mixed.match(Values("a", {}))
    assert any_of([[_scan("x", "1")], [_keys("x", "1")]]).field is None


def test_an_unrestricted_alternative_is_everything_and_none_is_nothing():
    assert any_of([[_keys("subject", "Patient/a")], []]) is None
    assert any_of([]) is NOTHING


def test_a_reach_builds_each_type_once():
    built = []
    reach = Reach(lambda type_: built.append(type_) or (NOTHING if type_ == "Binary" else None))
    assert reach.excludes("Binary") and reach.term("Patient") is None and reach.excludes("Binary")
    assert built == ["Binary", "Patient"]
    assert not EVERYTHING.restricted and EVERYTHING.sees("Binary", Values("x", {}))
