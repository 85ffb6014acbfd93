"""`:not` on reference parameters, which R4 defines for tokens only: given the token's meaning
(resources with no value among those asked for, those with no value at all included), so that
`Communication?recipient=X&read-by:not=X` answers "unread for X"."""

from __future__ import annotations

from .support import observation, patient


def _world(data):
    p, q = data.create(patient())["id"], data.create(patient())["id"]
    ids = {
        "p": data.create(observation(subject={"reference": f"Patient/{p}"}))["id"],
        "q": data.create(observation(subject={"reference": f"Patient/{q}"}))["id"],
        "none": data.create(observation())["id"],
        "versioned": data.create(observation(subject={"reference": f"Patient/{p}/_history/1"}))["id"],
    }
    return p, q, ids


def test_not_keeps_resources_without_that_reference_and_without_any(data):
    p, q, ids = _world(data)
    assert data.ids("/Observation", {"subject:not": f"Patient/{p}"}) == {ids["q"], ids["none"]}
    assert data.ids("/Observation", {"subject:not": f"Patient/{q}"}) == {ids["p"], ids["none"], ids["versioned"]}


def test_not_of_several_values_is_none_of_them(data):
    p, q, ids = _world(data)
    assert data.ids("/Observation", {"subject:not": f"Patient/{p},Patient/{q}"}) == {ids["none"]}
    assert data.ids("/Observation", [("subject:not", f"Patient/{p}"), ("subject:not", f"Patient/{q}")]) == \
        {ids["none"]}


def test_not_takes_the_forms_of_a_reference(data, base_url):
    p, _, ids = _world(data)
    assert data.ids("/Observation", {"subject:not": p}) == data.ids("/Observation", {"subject:not": f"Patient/{p}"})
    assert data.ids("/Observation", {"subject:not": f"{base_url}/Patient/{p}"}) == \
        data.ids("/Observation", {"subject:not": f"Patient/{p}"})
    assert ids["p"] not in data.ids("/Observation", {"subject:not": p})


def test_not_combined_with_a_positive_criterion(data):
    p, q, ids = _world(data)
    assert data.ids("/Observation", {"subject": f"Patient/{p}", "subject:not": f"Patient/{q}"}) == \
        {ids["p"], ids["versioned"]}
    assert data.ids("/Observation", {"subject": f"Patient/{p}", "subject:not": f"Patient/{p}"}) == set()


def test_not_cannot_be_chained(data):
    r = data.get("/Observation", {"subject:not.name": "x"})
    assert r.status_code == 400, r.text
