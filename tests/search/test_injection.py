"""Values that look like MongoDB query syntax are data (DESIGN: values reach MongoDB only as string or
number operands): `{"$where": "1"}`, `{"$gt": ""}`, `$regex`, `.*` match nothing, or exactly the
resources holding that literal text; never a 500. Parameter names with operator syntax are unknown
parameters (reported, or 400 when strict)."""

from __future__ import annotations

import pytest

from .support import entries, matches, observation, patient, system

NASTY = [
    '{"$where": "1"}', '{"$gt": ""}', '{"$ne": null}', '{"$regex": ".*"}', "$regex", "$where", ".*", "^.*$",
    "a.*", "[a-z]+", "\\", "\\\\", "'; return true; var x='", "this.a == this.a", "$gt", "{}", "[]", "null",
    "\x00", "%00", "a\nb", "ä" * 300, "x" * 5000, "$", "|", "||", "$$", "*",
]

# (type, parameter) pairs covering every parameter type and modifier family
PARAMS = [
    ("Patient", "identifier"), ("Patient", "gender"), ("Patient", "_id"), ("Patient", "_tag"),
    ("Patient", "name"), ("Patient", "family:exact"), ("Patient", "name:contains"), ("Patient", "given"),
    ("Patient", "identifier:of-type"), ("Observation", "code:text"), ("Observation", "code:not"),
    ("Observation", "subject"), ("Observation", "subject:identifier"), ("Observation", "subject:Patient"),
    ("Observation", "subject:Patient.name"), ("Observation", "subject.identifier"),
    ("Questionnaire", "url"), ("Questionnaire", "url:below"), ("Questionnaire", "url:above"), ("Patient", "_profile"),
    ("Patient", "_source"), ("Patient", "birthdate"), ("RiskAssessment", "probability"),
    ("Observation", "value-quantity"), ("Observation", "code-value-quantity"), ("Observation", "combo-code"),
    ("Patient", "_has:Observation:patient:code"), ("Patient", "_list"), ("Patient", "gender:missing"),
    ("Location", "near"), ("Patient", "_lastUpdated"), ("Observation", "code:in"), ("Observation", "code:below"),
]


@pytest.fixture(scope="module")
def literal(client_module):
    """Resources that hold some of the nasty strings literally, found by exact searches."""
    from .support import Data

    data = Data(client_module)
    s = system()
    made = {}
    for text in ['{"$gt": ""}', ".*", "$where", "\\"]:
        made[text] = data.create(patient(identifier=[{"system": s, "value": text}], name=[{"family": text}]))["id"]
    return data, s, made


@pytest.fixture(scope="module")
def client_module(base_url):
    import httpx

    with httpx.Client(base_url=base_url, timeout=60, headers={"Accept": "application/fhir+json"}) as c:
        yield c


@pytest.mark.parametrize("type_, param", PARAMS, ids=[f"{t}-{p}" for t, p in PARAMS])
def test_nasty_values_are_data(literal, type_, param):
    data, _, made = literal
    allowed = set(made.values()) if type_ == "Patient" else set()
    for value in NASTY:
        r = data.get(f"/{type_}", {param: value})
        assert r.status_code in (200, 400), (param, value, r.status_code, r.text[:300])
        body = r.json()
        if r.status_code == 400:
            assert body["resourceType"] == "OperationOutcome"
            continue
        found = set(matches(body))
        # at most the resources holding the literal text, never "everything"
        assert found <= allowed, (param, value, found)
        assert len(found) <= 2 or param == "gender:missing", (param, value, found)


@pytest.mark.parametrize("text", ['{"$gt": ""}', ".*", "$where", "\\"])
def test_literal_operator_text_matches_exactly_itself(literal, text):
    data, s, made = literal
    escaped = text.replace("\\", "\\\\").replace("$", "\\$").replace(",", "\\,").replace("|", "\\|")
    assert data.ids("/Patient", {"identifier": f"{s}|{escaped}"}) == {made[text]}
    assert data.ids("/Patient", {"family:exact": escaped}) == {made[text]}
    assert data.ids("/Patient", {"family": escaped}) == {made[text]} | (
        {made['{"$gt": ""}']} if text == "{" else set())


def test_regex_looking_values_do_not_match_by_pattern(literal):
    data, s, made = literal
    # `.*` as a regex would match every family; as data it matches the one family starting with `.*`
    assert data.ids("/Patient", {"family": ".*"}) == {made[".*"]}
    assert data.ids("/Patient", {"name:contains": "*"}) == {made[".*"]}
    assert data.ids("/Patient", {"identifier": f"{s}|.*"}) == {made[".*"]}
    assert data.ids("/Patient", {"identifier": f"{s}|{{\"$gt\": \"\"}}"}) == {made['{"$gt": ""}']}


def test_without_tag_nothing_but_literals(literal):
    data, s, made = literal
    for value in ('{"$gt": ""}', '{"$ne": null}', "$where", '{"$regex": ".*"}'):
        r = data.get("/Patient", {"identifier": value}, tagged=False)
        assert r.status_code == 200, r.text
        for entry in entries(r.json(), "match"):
            assert any(i.get("value") == value for i in entry["resource"].get("identifier", [])), entry


@pytest.mark.parametrize("name", ["name[$ne]", "$where", "identifier[$gt]", "_id[$regex]", "name.$gt",
                                  "{\"$gt\":\"\"}"])
def test_operator_looking_parameter_names_are_unknown_parameters(literal, name):
    data, _, _ = literal
    r = data.get("/Patient", {name: "x"})
    assert r.status_code in (200, 400), r.text
    if r.status_code == 200:
        outcome = entries(r.json(), "outcome")
        assert outcome, f"{name} was neither refused nor reported"
    strict = data.get("/Patient", {name: "x"}, headers={"Prefer": "handling=strict"})
    assert strict.status_code == 400, strict.text


@pytest.mark.parametrize("param, value", [
    ("_sort", '{"$gt": ""}'), ("_sort", "$where"), ("_include", '{"$gt": ""}'), ("_include", "Patient:$where"),
    ("_revinclude", "$where:x"), ("_count", '{"$gt": 1}'), ("_summary", "$where"), ("_total", "$gt"),
    ("_type", '{"$gt": ""}'), ("_elements", "$where,{\"$gt\":1}"), ("_page", '{"$gt": ""}'),
    ("_page", "$where.0"), ("_contained", "$where"),
])
def test_nasty_result_parameters_never_500(literal, param, value):
    data, _, _ = literal
    for path in ("/Patient", ""):
        r = data.get(path, {param: value})
        assert r.status_code < 500, (path, param, value, r.status_code, r.text[:300])
        assert r.json()["resourceType"] in ("Bundle", "OperationOutcome")


def test_nasty_values_in_post_search_body(literal):
    data, _, made = literal
    r = data.client.post("/Patient/_search", data={"identifier": '{"$gt": ""}', "name": "$where",
                                                   "_tag": data.tag})
    assert r.status_code == 200, r.text
    assert matches(r.json()) == []
    r = data.client.post("/Patient/_search", data={"family:exact": '{"$gt": ""}', "_tag": data.tag})
    assert matches(r.json()) == [made['{"$gt": ""}']]


def test_nasty_ids_in_compartments_and_chains(literal):
    data, _, _ = literal
    for path in ("/Patient/$where/Observation", "/Patient/.*/Observation", '/Patient/{"$gt":""}/Observation'):
        r = data.get(path)
        assert r.status_code in (200, 400, 404), (path, r.text)
        if r.status_code == 200:
            assert matches(r.json()) == []


def test_conditional_create_with_operator_values_does_not_match_everything(client_module):
    from .support import Data

    data, s = Data(client_module), system()
    data.create(patient(identifier=[{"system": s, "value": "ordinary"}]))
    for condition in ('identifier={"$gt": ""}', 'identifier={"$ne": null}', "identifier=$regex",
                      'identifier:not={"$gt": ""}'):
        r = data.client.post("/Patient", json=data.tagged(patient(identifier=[{"system": s, "value": "new"}])),
                             headers={"If-None-Exist": f"{condition}&_tag={data.tag}"})
        if condition.startswith("identifier:not"):  # every tagged patient: the ordinary one, and those created
            assert r.status_code in (200, 412), r.text
        else:
            assert r.status_code == 201, (condition, r.text)  # created: nothing matched


def test_nasty_observation_values(literal):
    data, _, _ = literal
    obs = data.create(observation(valueString='{"$where": "sleep(1000)"}'))
    assert data.ids("/Observation", {"value-string": '{"$where"'}) == {obs["id"]}
    assert data.ids("/Observation", {"value-string": '{"$gt"'}) == set()
