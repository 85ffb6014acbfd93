"""token search (R4 search.html#token): Coding, CodeableConcept, Identifier, ContactPoint, code,
boolean; `[system]|[code]`, `[code]`, `|[code]`, `[system]|`; OR with `,`, AND by repetition;
escaping of `,` and `|`; `_id`."""

from __future__ import annotations

import pytest

from .support import observation, patient, system


@pytest.fixture
def coded(data):
    """Observations coded in two systems, one code without a system."""
    s1, s2 = system(), system()
    made = {
        "a": data.create(observation({"coding": [{"system": s1, "code": "A"}]})),
        "b": data.create(observation({"coding": [{"system": s2, "code": "A"}]})),
        "c": data.create(observation({"coding": [{"code": "A"}]})),
        "ab": data.create(observation({"coding": [{"system": s1, "code": "A"}, {"system": s1, "code": "B"}]})),
        "b2": data.create(observation({"coding": [{"system": s1, "code": "B"}]})),
        "text": data.create(observation({"text": "only text"})),
    }
    return s1, s2, {k: v["id"] for k, v in made.items()}


def test_system_and_code(data, coded):
    s1, s2, ids = coded
    assert data.ids("/Observation", {"code": f"{s1}|A"}) == {ids["a"], ids["ab"]}
    assert data.ids("/Observation", {"code": f"{s2}|A"}) == {ids["b"]}


def test_code_alone_matches_any_system(data, coded):
    _, _, ids = coded
    assert data.ids("/Observation", {"code": "A"}) == {ids["a"], ids["b"], ids["c"], ids["ab"]}


def test_bar_code_matches_codes_without_system(data, coded):
    _, _, ids = coded
    assert data.ids("/Observation", {"code": "|A"}) == {ids["c"]}


def test_system_bar_matches_any_code_of_the_system(data, coded):
    s1, s2, ids = coded
    assert data.ids("/Observation", {"code": f"{s1}|"}) == {ids["a"], ids["ab"], ids["b2"]}
    assert data.ids("/Observation", {"code": f"{s2}|"}) == {ids["b"]}


def test_no_match_for_unknown_code_or_system(data, coded):
    s1, _, _ = coded
    assert data.ids("/Observation", {"code": f"{s1}|Z"}) == set()
    assert data.ids("/Observation", {"code": f"{system()}|A"}) == set()
    assert data.ids("/Observation", {"code": "a"}) == set()  # codes compare exactly


def test_comma_is_or(data, coded):
    s1, s2, ids = coded
    assert data.ids("/Observation", {"code": f"{s2}|A,{s1}|B"}) == {ids["b"], ids["ab"], ids["b2"]}


def test_repetition_is_and(data, coded):
    s1, _, ids = coded
    assert data.ids("/Observation", [("code", f"{s1}|A"), ("code", f"{s1}|B")]) == {ids["ab"]}


def test_identifier(data):
    s = system()
    p1 = data.create(patient(identifier=[{"system": s, "value": "123"}]))
    p2 = data.create(patient(identifier=[{"system": system(), "value": "123"}]))
    p3 = data.create(patient(identifier=[{"value": "123"}]))
    assert data.ids("/Patient", {"identifier": f"{s}|123"}) == {p1["id"]}
    assert data.ids("/Patient", {"identifier": "123"}) == {p1["id"], p2["id"], p3["id"]}
    assert data.ids("/Patient", {"identifier": "|123"}) == {p3["id"]}
    assert data.ids("/Patient", {"identifier": f"{s}|12"}) == set()  # no prefix matching on tokens


def test_escaped_comma_and_bar_in_values(data):
    s = system()
    comma = data.create(patient(identifier=[{"system": s, "value": "a,b"}]))
    bar = data.create(patient(identifier=[{"system": s, "value": "a|b"}]))
    dollar = data.create(patient(identifier=[{"system": s, "value": "a$b"}]))
    a = data.create(patient(identifier=[{"system": s, "value": "a"}]))
    b = data.create(patient(identifier=[{"system": s, "value": "b"}]))
    assert data.ids("/Patient", {"identifier": f"{s}|a\\,b"}) == {comma["id"]}
    assert data.ids("/Patient", {"identifier": f"{s}|a\\|b"}) == {bar["id"]}
    assert data.ids("/Patient", {"identifier": f"{s}|a\\$b"}) == {dollar["id"]}
    assert data.ids("/Patient", {"identifier": f"{s}|a$b"}) == {dollar["id"]}  # `$` only splits composites
    # unescaped, the comma separates two values
    assert data.ids("/Patient", {"identifier": f"{s}|a,{s}|b"}) == {a["id"], b["id"]}


def test_boolean(data):
    yes = data.create(patient(active=True))
    no = data.create(patient(active=False))
    unset = data.create(patient())
    assert data.ids("/Patient", {"active": "true"}) == {yes["id"]}
    assert data.ids("/Patient", {"active": "false"}) == {no["id"]}
    assert unset["id"] not in data.ids("/Patient", {"active": "true,false"})


def test_code_element(data):
    f = data.create(patient(gender="female"))
    m = data.create(patient(gender="male"))
    assert data.ids("/Patient", {"gender": "female"}) == {f["id"]}
    assert data.ids("/Patient", {"gender": "male,other"}) == {m["id"]}


def test_contact_point(data):
    p = data.create(patient(telecom=[{"system": "phone", "value": "+33 1 23 45 67 89"},
                                     {"system": "email", "value": "x@example.org"}]))
    other = data.create(patient(telecom=[{"system": "email", "value": "+33 1 23 45 67 89"}]))
    assert data.ids("/Patient", {"telecom": "+33 1 23 45 67 89"}) == {p["id"], other["id"]}
    assert data.ids("/Patient", {"phone": "+33 1 23 45 67 89"}) == {p["id"]}
    assert data.ids("/Patient", {"email": "x@example.org"}) == {p["id"]}
    assert data.ids("/Patient", {"email": "+33 1 23 45 67 89"}) == {other["id"]}


def test_underscore_id(data):
    a = data.create(patient())
    b = data.create(patient())
    data.create(patient())
    assert data.ids("/Patient", {"_id": a["id"]}) == {a["id"]}
    assert data.ids("/Patient", {"_id": f"{a['id']},{b['id']}"}) == {a["id"], b["id"]}
    assert data.ids("/Patient", {"_id": "no-such-id"}) == set()


def test_token_on_a_choice_element(data):
    s = system()
    concept = data.create(observation(valueCodeableConcept={"coding": [{"system": s, "code": "pos"}]}))
    data.create(observation(valueString="pos"))
    assert data.ids("/Observation", {"value-concept": f"{s}|pos"}) == {concept["id"]}
    assert data.ids("/Observation", {"value-concept": "pos"}) == {concept["id"]}


def test_tag_security_and_profile_by_token_and_uri(data):
    s = system()
    tagged = data.create(patient(meta={"tag": [{"system": s, "code": "t1"}],
                                       "security": [{"system": s, "code": "R"}],
                                       "profile": [f"{s}/profile"]}))
    data.create(patient())
    assert data.ids("/Patient", {"_tag": f"{s}|t1"}) == {tagged["id"]}
    assert data.ids("/Patient", {"_security": f"{s}|R"}) == {tagged["id"]}
    assert data.ids("/Patient", {"_profile": f"{s}/profile"}) == {tagged["id"]}
    assert data.ids("/Patient", {"_security": "R"}) == {tagged["id"]}


def test_invalid_bar_forms_find_nothing_or_refuse(data, coded):
    # `|` alone: neither system nor code — whatever the server does, never everything
    r = data.get("/Observation", {"code": "|"})
    assert r.status_code in (200, 400), r.text
    if r.status_code == 200:
        assert not [e for e in r.json().get("entry", []) if e["search"]["mode"] == "match"]
