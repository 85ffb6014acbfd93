"""Search modifiers (R4 search.html#modifiers): `:missing` on every type, `:not`, `:text`,
`:of-type`, `:in`/`:not-in` (ValueSets from the R4 package and ones POSTed here), `:below`/
`:above` on hierarchical CodeSystems (v3-ActCode from the package, and one POSTed here);
unknown or inapplicable modifiers are refused. (`:exact`, `:contains` are in test_string,
`:identifier` and `:[type]` in test_reference, uri `:below`/`:above` in test_uri.)"""

from __future__ import annotations

import pytest

from .support import observation, patient, system, uid

ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
GENDER_VS = "http://hl7.org/fhir/ValueSet/administrative-gender"
V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"


# -- :missing ------------------------------------------------------------------------------------
@pytest.fixture
def sparse(data):
    """One Patient with everything, one with nothing but the tag."""
    s = system()
    org = data.create({"resourceType": "Organization", "name": "x"})
    full = data.create(patient(gender="male", birthDate="1970-01-01", name=[{"family": "Full"}],
                               identifier=[{"system": s, "value": "1"}],
                               managingOrganization={"reference": data.ref(org)}))
    empty = data.create(patient())
    return full["id"], empty["id"]


@pytest.mark.parametrize("param", [
    "gender", "identifier", "name", "family", "organization",
    "birthdate",
])
def test_missing(data, sparse, param):
    full, empty = sparse
    assert data.ids("/Patient", {f"{param}:missing": "true"}) == {empty}
    assert data.ids("/Patient", {f"{param}:missing": "false"}) == {full}


@pytest.mark.parametrize("kind", [
    "token", "uri", "quantity", "date",
])
def test_missing_other_types(data, kind):
    with_value = {
        "token": observation(category=[{"coding": [{"system": system(), "code": "c"}]}]),
        "uri": observation(meta={"profile": [f"http://example.org/{uid()}"]}),
        "quantity": observation(valueQuantity={"value": 1, "unit": "mg"}),
        "date": observation(effectiveDateTime="2020-01-01"),
    }[kind]
    param = {"token": "category", "uri": "_profile", "quantity": "value-quantity", "date": "date"}[kind]
    yes = data.create(with_value)["id"]
    no = data.create(observation())["id"]
    assert data.ids("/Observation", {f"{param}:missing": "true"}) == {no}
    assert data.ids("/Observation", {f"{param}:missing": "false"}) == {yes}


def test_missing_counts_references_to_contained_resources(data):
    contained = data.create(observation(contained=[{"resourceType": "Patient", "id": "p1"}],
                                        subject={"reference": "#p1"}))["id"]
    assert data.ids("/Observation", {"subject:missing": "false"}) == {contained}
    assert data.ids("/Observation", {"subject:missing": "true"}) == set()


def test_missing_counts_logical_references(data):
    logical = data.create(observation(subject={"identifier": {"system": system(), "value": "1"}}))["id"]
    assert data.ids("/Observation", {"subject:missing": "false"}) == {logical}
    assert data.ids("/Observation", {"subject:missing": "true"}) == set()


@pytest.mark.parametrize("value", ["yes", "", "TRUE", "1"])
def test_missing_takes_true_or_false(data, value):
    r = data.get("/Patient", {"gender:missing": value})
    assert r.status_code == 400, r.text


# -- :not ----------------------------------------------------------------------------------------
def test_not_includes_resources_without_a_value(data):
    m = data.create(patient(gender="male"))["id"]
    f = data.create(patient(gender="female"))["id"]
    o = data.create(patient(gender="other"))["id"]
    none = data.create(patient())["id"]
    assert data.ids("/Patient", {"gender:not": "male"}) == {f, o, none}
    assert data.ids("/Patient", {"gender:not": "male,female"}) == {o, none}  # not (male or female)
    assert data.ids("/Patient", [("gender:not", "male"), ("gender:not", "female")]) == {o, none}
    assert m not in data.ids("/Patient", {"gender:not": "male"})


def test_not_on_codings_with_systems(data):
    s = system()
    a = data.create(observation((s, "a")))["id"]
    b = data.create(observation((s, "b")))["id"]
    both = data.create(observation({"coding": [{"system": s, "code": "a"}, {"system": s, "code": "b"}]}))["id"]
    assert data.ids("/Observation", {"code:not": f"{s}|a"}) == {b}
    assert data.ids("/Observation", {"code:not": f"{system()}|a"}) == {a, b, both}


# -- :text ---------------------------------------------------------------------------------------
def test_text_searches_display_and_text(data):
    s = system()
    u = uid("t")
    by_text = data.create(observation({"text": f"{u} Blood pressure"}))["id"]
    by_display = data.create(observation({"coding": [{"system": s, "code": "x", "display": f"{u} Blóod gas"}]}))["id"]
    data.create(observation({"coding": [{"system": s, "code": f"{u}blood"}]}))
    assert data.ids("/Observation", {"code:text": f"{u} blood"}) == {by_text, by_display}
    assert data.ids("/Observation", {"code:text": f"{u} BLOOD PRESS"}) == {by_text}
    assert data.ids("/Observation", {"code:text": f"{u} gas"}) == set()


# -- :of-type ------------------------------------------------------------------------------------
def test_of_type(data):
    s = system()
    mr = data.create(patient(identifier=[{"system": s, "value": "42",
                                          "type": {"coding": [{"system": V2_0203, "code": "MR"}]}}]))["id"]
    dl = data.create(patient(identifier=[{"system": s, "value": "42",
                                          "type": {"coding": [{"system": V2_0203, "code": "DL"}]}}]))["id"]
    assert data.ids("/Patient", {"identifier:of-type": f"{V2_0203}|MR|42"}) == {mr}
    assert data.ids("/Patient", {"identifier:of-type": f"{V2_0203}|DL|42"}) == {dl}
    assert data.ids("/Patient", {"identifier:of-type": f"{V2_0203}|MR|43"}) == set()
    r = data.get("/Patient", {"identifier:of-type": f"{V2_0203}|MR"})
    assert r.status_code == 400, r.text


# -- :in / :not-in -------------------------------------------------------------------------------
@pytest.fixture
def hierarchy(data, client):
    """A CodeSystem root > mid > leaf (nested concepts) and `other` subsumed by root via a
    `parent` property; Observations coded with each; ValueSets over it."""
    url = f"http://example.org/{uid('cs')}/CodeSystem"
    cs = {"resourceType": "CodeSystem", "url": url, "status": "active", "content": "complete",
          "hierarchyMeaning": "is-a",
          "concept": [{"code": "root", "concept": [{"code": "mid", "concept": [{"code": "leaf"}]}]},
                      {"code": "other", "property": [{"code": "parent", "valueCode": "root"}]},
                      {"code": "alone"}],
          "property": [{"code": "parent", "type": "code"}]}
    assert client.post("/CodeSystem", json=cs).status_code == 201
    obs = {c: data.create(observation((url, c)))["id"] for c in ("root", "mid", "leaf", "other", "alone")}
    enumerated = f"http://example.org/{uid('vs')}/ValueSet/enumerated"
    by_filter = f"http://example.org/{uid('vs')}/ValueSet/filter"
    for vs in ({"resourceType": "ValueSet", "url": enumerated, "status": "active",
                "compose": {"include": [{"system": url, "concept": [{"code": "leaf"}, {"code": "alone"}]}]}},
               {"resourceType": "ValueSet", "url": by_filter, "status": "active",
                "compose": {"include": [{"system": url, "filter": [{"property": "concept", "op": "is-a",
                                                                    "value": "mid"}]}]}}):
        assert client.post("/ValueSet", json=vs).status_code == 201
    return url, enumerated, by_filter, obs


def test_in_and_not_in_with_posted_value_sets(data, hierarchy):
    _, enumerated, by_filter, obs = hierarchy
    assert data.ids("/Observation", {"code:in": enumerated}) == {obs["leaf"], obs["alone"]}
    assert data.ids("/Observation", {"code:in": by_filter}) == {obs["mid"], obs["leaf"]}
    assert data.ids("/Observation", {"code:not-in": enumerated}) == {obs["root"], obs["mid"], obs["other"]}
    assert data.ids("/Observation", {"code:in": f"{enumerated},{by_filter}"}) == {obs["mid"], obs["leaf"], obs["alone"]}


def test_in_with_an_unknown_value_set_is_400(data):
    r = data.get("/Observation", {"code:in": f"http://example.org/{uid()}/ValueSet/none"})
    assert r.status_code == 400, r.text


def test_in_with_a_package_value_set_on_codings(data):
    s = "http://hl7.org/fhir/administrative-gender"
    f = data.create(observation(valueCodeableConcept={"coding": [{"system": s, "code": "female"}]}))["id"]
    data.create(observation(valueCodeableConcept={"coding": [{"system": system(), "code": "female"}]}))
    assert data.ids("/Observation", {"value-concept:in": GENDER_VS}) == {f}


def test_in_with_the_administrative_gender_value_set(data):
    m = data.create(patient(gender="male"))["id"]
    f = data.create(patient(gender="female"))["id"]
    none = data.create(patient())["id"]
    assert data.ids("/Patient", {"gender:in": GENDER_VS}) == {m, f}
    assert data.ids("/Patient", {"gender:not-in": GENDER_VS}) == {none}


# -- :below / :above -----------------------------------------------------------------------------
def test_below_and_above_on_a_posted_code_system(data, hierarchy):
    url, _, _, obs = hierarchy
    assert data.ids("/Observation", {"code:below": f"{url}|root"}) == \
        {obs["root"], obs["mid"], obs["leaf"], obs["other"]}
    assert data.ids("/Observation", {"code:below": f"{url}|mid"}) == {obs["mid"], obs["leaf"]}
    assert data.ids("/Observation", {"code:below": f"{url}|leaf"}) == {obs["leaf"]}
    assert data.ids("/Observation", {"code:above": f"{url}|leaf"}) == {obs["root"], obs["mid"], obs["leaf"]}
    assert data.ids("/Observation", {"code:above": f"{url}|other"}) == {obs["root"], obs["other"]}
    assert data.ids("/Observation", {"code:above": f"{url}|alone"}) == {obs["alone"]}


def test_below_and_above_on_v3_act_code_from_the_package(data):
    def encounter(code):
        return data.create({"resourceType": "Encounter", "status": "finished",
                            "class": {"system": ACT_CODE, "code": code}})["id"]

    enc = {c: encounter(c) for c in ("IMP", "ACUTE", "NONAC", "AMB")}
    assert data.ids("/Encounter", {"class:below": f"{ACT_CODE}|IMP"}) == {enc["IMP"], enc["ACUTE"], enc["NONAC"]}
    assert data.ids("/Encounter", {"class:below": f"{ACT_CODE}|_ActEncounterCode"}) == set(enc.values())
    assert data.ids("/Encounter", {"class:above": f"{ACT_CODE}|ACUTE"}) == {enc["IMP"], enc["ACUTE"]}
    assert data.ids("/Encounter", {"class:above": f"{ACT_CODE}|AMB"}) == {enc["AMB"]}


@pytest.mark.parametrize("value", [f"http://example.org/{uid()}/unknown|x", "nosystem", f"{ACT_CODE}|NOSUCHCODE"])
def test_below_that_cannot_be_answered_is_400(data, value):
    r = data.get("/Encounter", {"class:below": value})
    assert r.status_code == 400, r.text


# -- refused modifiers ---------------------------------------------------------------------------
@pytest.mark.parametrize("param, value", [
    ("gender:foo", "male"), ("birthdate:exact", "1970"), ("gender:contains", "ma"), ("name:below", "x"),
    ("_id:exact", "x"), ("probability:missing", "maybe"),
])
def test_unknown_or_inapplicable_modifiers_are_400(data, param, value):
    type_ = "RiskAssessment" if param.startswith("probability") else "Patient"
    r = data.get(f"/{type_}", {param: value})
    assert r.status_code == 400, r.text
    assert r.json()["resourceType"] == "OperationOutcome"
