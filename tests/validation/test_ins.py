"""The INS checks as pure functions (validation/ins.py): the NIR key, and what the NIR says of the
sex and the year and month of birth against a Patient's gender and birthDate. Through HTTP:
tests/coordination/test_identity_vigilance.py."""

from __future__ import annotations

import pytest

from fhir_server.validation.ins import disagreements, nir_key, nir_problem, retired_duplicate


def nir(sex: str, yy: str, mm: str, place: str = "75056", order: str = "123") -> str:
    body = f"{sex}{yy}{mm}{place}{order}"
    return f"{body}{nir_key(body):02d}"


def elements(found: list[tuple[str, str]]) -> list[str]:
    return [element for element, _ in found]


def test_the_reported_man_of_1950_with_a_nir_saying_woman_1979():
    found = disagreements(nir("2", "79", "05"), "male", "1950-05-01")
    assert elements(found) == ["gender", "birthDate"]
    assert "says female" in found[0][1] and "ending in 79" in found[1][1]


def test_agreeing_traits_are_silent():
    assert disagreements(nir("1", "50", "03"), "male", "1950-03-04") == []
    assert disagreements(nir("2", "05", "12"), "female", "2005-12") == []
    assert disagreements(nir("1", "50", "03"), "male", "1950") == []  # no month to compare


@pytest.mark.parametrize(("sex", "gender"), [("1", "male"), ("3", "male"), ("7", "male"),
                                              ("2", "female"), ("4", "female"), ("8", "female")])
def test_odd_is_male_even_is_female_for_every_kind_of_number(sex, gender):
    other = "female" if gender == "male" else "male"
    assert disagreements(nir(sex, "80", "01"), gender, "1980-01-02") == []
    assert elements(disagreements(nir(sex, "80", "01"), other, "1980-01-02")) == ["gender"]


def test_other_and_unknown_gender_claim_nothing():
    for gender in ("other", "unknown", None):
        assert disagreements(nir("1", "80", "01"), gender, "1980-01-02") == []


def test_a_wrong_month_is_named():
    found = disagreements(nir("1", "80", "01"), "male", "1980-02-02")
    assert elements(found) == ["birthDate"] and "month 01" in found[0][1]


@pytest.mark.parametrize("month", ["20", "30", "42", "50", "99"])
def test_pseudo_months_say_nothing_of_the_month(month):
    assert disagreements(nir("1", "80", month), "male", "1980-07-14") == []
    assert elements(disagreements(nir("1", "80", month), "male", "1981-07-14")) == ["birthDate"]


def test_foreign_born_and_corsican_numbers_are_well_formed():
    assert nir_problem(nir("3", "90", "50", "99134")) is None  # born abroad (99 + country), registering
    assert nir_problem(nir("4", "90", "50", "99134")) is None
    corsica = "180012A004123"  # the department 2A, written with its letter
    assert nir_problem(f"{corsica}{nir_key(corsica):02d}") is None
    assert nir_problem(nir("5", "90", "01")) is not None  # 5 is no sex digit


def test_a_duplicate_is_inactive_and_replaced_by_a_patient():
    marked = {"active": False, "link": [{"type": "replaced-by", "other": {"reference": "Patient/kept"}}]}
    assert retired_duplicate(marked)
    assert not retired_duplicate({**marked, "active": True})
    assert not retired_duplicate({**marked, "link": [{"type": "seealso", "other": {"reference": "Patient/x"}}]})
    assert not retired_duplicate({**marked, "link": [{"type": "replaced-by",
                                                        "other": {"reference": "RelatedPerson/x"}}]})
