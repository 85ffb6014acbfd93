"""string search (R4 search.html#string): starts-with, case- and accent-insensitive by default;
`:exact`; `:contains`; HumanName and Address parts; OR, AND and escaping."""

from __future__ import annotations

import pytest

from .support import patient, uid


@pytest.fixture
def people(data):
    u = uid("z")  # a unique stem so that names from other tests cannot match
    made = {
        "helene": data.create(patient(name=[{"family": f"{u}Dâubigné", "given": ["Hélène", "Marie"]}])),
        "helen": data.create(patient(name=[{"family": f"{u}Dupont", "given": ["Helen"]}])),
        "lena": data.create(patient(name=[{"family": f"{u}Martin", "given": ["Lena"]}])),
        "text": data.create(patient(name=[{"text": f"{u} Smith, John"}])),
    }
    return u, {k: v["id"] for k, v in made.items()}


def test_starts_with_case_and_accent_insensitive(data, people):
    _, ids = people
    assert data.ids("/Patient", {"given": "helen"}) == {ids["helene"], ids["helen"]}
    assert data.ids("/Patient", {"given": "HÉLÈNE"}) == {ids["helene"]}
    assert data.ids("/Patient", {"given": "hélène"}) == {ids["helene"]}


def test_ligatures_are_written_out(data):
    u = uid("z")
    laetitia = data.create(patient(name=[{"family": f"{u}Cœurdevey", "given": ["Lætitia"]}]))["id"]
    assert data.ids("/Patient", {"given": "laetitia"}) == {laetitia}
    assert data.ids("/Patient", {"given": "Lætitia"}) == {laetitia}
    assert data.ids("/Patient", {"family": f"{u}coeur"}) == {laetitia}
    assert data.ids("/Patient", {"given:exact": "Laetitia"}) == set()  # exact stays exact


def test_default_is_not_contains(data, people):
    _, ids = people
    assert data.ids("/Patient", {"given": "lene"}) == set()
    assert data.ids("/Patient", {"given": "ena"}) == set()


def test_name_matches_any_part(data, people):
    u, ids = people
    assert data.ids("/Patient", {"name": u.upper()}) == set(ids.values())
    assert data.ids("/Patient", {"name": f"{u}daubigne"}) == {ids["helene"]}
    assert data.ids("/Patient", {"name": "marie"}) >= {ids["helene"]}
    assert data.ids("/Patient", {"family": f"{u}dup"}) == {ids["helen"]}
    assert data.ids("/Patient", {"family": "helen"}) == set()  # family only


def test_exact_is_case_and_accent_sensitive_and_whole(data, people):
    u, ids = people
    assert data.ids("/Patient", {"given:exact": "Hélène"}) == {ids["helene"]}
    assert data.ids("/Patient", {"given:exact": "hélène"}) == set()
    assert data.ids("/Patient", {"given:exact": "Helene"}) == set()
    assert data.ids("/Patient", {"given:exact": "Hél"}) == set()
    assert data.ids("/Patient", {"family:exact": f"{u}Dupont"}) == {ids["helen"]}


def test_contains(data, people):
    u, ids = people
    assert data.ids("/Patient", {"given:contains": "ELEN"}) == {ids["helene"], ids["helen"]}
    assert data.ids("/Patient", {"given:contains": "len"}) == {ids["helene"], ids["helen"], ids["lena"]}
    assert data.ids("/Patient", {"given:contains": "lène"}) == {ids["helene"]}
    assert data.ids("/Patient", {"given:contains": "ena"}) == {ids["lena"]}
    assert data.ids("/Patient", {"family:contains": "bign"}) == {ids["helene"]}
    assert data.ids("/Patient", {"name:contains": "smith"}) == {ids["text"]}


def test_or_and(data, people):
    _, ids = people
    assert data.ids("/Patient", {"given": "lena,helen"}) == {ids["lena"], ids["helene"], ids["helen"]}
    assert data.ids("/Patient", [("given", "helen"), ("given", "marie")]) == {ids["helene"]}
    assert data.ids("/Patient", [("given", "lena"), ("given", "helen")]) == set()


def test_escaped_comma(data):
    u = uid("c")
    comma = data.create(patient(name=[{"family": f"{u},Jr"}]))
    plain = data.create(patient(name=[{"family": f"{u}Jr"}]))
    assert data.ids("/Patient", {"family": f"{u}\\,J"}) == {comma["id"]}
    assert data.ids("/Patient", {"family:exact": f"{u}\\,Jr"}) == {comma["id"]}
    # without the backslash the comma separates alternatives: `u` and `Jr`
    assert data.ids("/Patient", {"family": f"{u},Jr"}) == {comma["id"], plain["id"]}


def test_address_parts(data):
    u = uid("a")
    home = data.create(patient(address=[{"line": [f"12 rue {u}"], "city": f"{u}Lyon", "postalCode": "69001",
                                         "country": "FR"}]))
    data.create(patient(address=[{"city": f"{u}Paris", "postalCode": "75001"}]))
    assert data.ids("/Patient", {"address-city": f"{u}lyon"}) == {home["id"]}
    assert data.ids("/Patient", {"address": f"{u}ly"}) == {home["id"]}
    assert data.ids("/Patient", {"address:contains": f"rue {u}"}) == {home["id"]}
    assert data.ids("/Patient", {"address-postalcode": "6900"}) == {home["id"]}
    assert data.ids("/Patient", {"address-city": "lyon"}) == set()


def test_string_on_plain_element(data):
    u = uid("o")
    org = data.create({"resourceType": "Organization", "name": f"{u} Hôpital Édouard Herriot",
                       "alias": [f"{u}HEH"]})
    assert data.ids("/Organization", {"name": f"{u} hopital"}) == {org["id"]}
    assert data.ids("/Organization", {"name": f"{u}heh"}) == {org["id"]}  # Organization.name | alias
    assert data.ids("/Organization", {"name:contains": "edouard"}) == {org["id"]}


def test_trailing_space_is_part_of_the_value(data):
    u = uid("w")
    spaced = data.create(patient(name=[{"family": f"{u}ab cd"}]))
    joined = data.create(patient(name=[{"family": f"{u}abcd"}]))
    assert data.ids("/Patient", {"family": f"{u}ab "}) == {spaced["id"]}
    assert joined["id"] not in data.ids("/Patient", {"family": f"{u}ab "})
