"""reference search (R4 search.html#reference, #chaining): `Type/id`, bare `id`, absolute URLs on
this server, canonicals (with and without `|version`), `:[type]`, `:identifier`; chained
parameters, typed chains, several levels, chains through deleted resources."""

from __future__ import annotations

import pytest

from .support import observation, patient, system, uid


@pytest.fixture
def world(data):
    u = uid("r")
    s = system()
    parent = data.create({"resourceType": "Organization", "name": f"{u}Parent"})
    org = data.create({"resourceType": "Organization", "name": f"{u}Org",
                       "partOf": {"reference": data.ref(parent)}})
    p = data.create(patient(name=[{"family": f"{u}Pat"}], identifier=[{"system": s, "value": "P1"}],
                            managingOrganization={"reference": data.ref(org)}))
    p2 = data.create(patient(name=[{"family": f"{u}Other"}]))
    loc = data.create({"resourceType": "Location", "name": f"{u}Pat-Loc"})
    o = {
        "p": data.create(observation(subject={"reference": data.ref(p)})),
        "loc": data.create(observation(subject={"reference": data.ref(loc)})),
        "p2": data.create(observation(subject={"reference": data.ref(p2)})),
        "ident": data.create(observation(subject={"identifier": {"system": s, "value": "MRN1"}})),
        "versioned": data.create(observation(subject={"reference": f"Patient/{p['id']}/_history/1"})),
        "elsewhere": data.create(observation(subject={"reference": f"http://elsewhere.example.org/fhir/Patient/{p['id']}"})),
    }
    return {"u": u, "s": s, "p": p, "p2": p2, "loc": loc, "org": org, "parent": parent,
            "o": {k: v["id"] for k, v in o.items()}}


def _obs(world, *names):
    return {world["o"][n] for n in names}


def test_type_and_id(data, world):
    assert data.ids("/Observation", {"subject": f"Patient/{world['p']['id']}"}) == \
        _obs(world, "p", "versioned")
    assert data.ids("/Observation", {"subject": f"Location/{world['loc']['id']}"}) == _obs(world, "loc")


def test_bare_id_looks_in_every_target_type(data, world):
    assert data.ids("/Observation", {"subject": world["p"]["id"]}) == _obs(world, "p", "versioned")
    assert data.ids("/Observation", {"subject": world["loc"]["id"]}) == _obs(world, "loc")


def test_absolute_url_of_this_server_in_the_query_is_the_relative_reference(data, world, base_url):
    assert data.ids("/Observation", {"subject": f"{base_url}/Patient/{world['p']['id']}"}) == \
        _obs(world, "p", "versioned")


def test_stored_absolute_url_on_this_server_is_the_same_reference(data, base_url):
    p = data.create(patient())
    absolute = data.create(observation(subject={"reference": f"{base_url}/Patient/{p['id']}"}))
    assert absolute["id"] in data.ids("/Observation", {"subject": f"{base_url}/Patient/{p['id']}"})
    assert absolute["id"] in data.ids("/Observation", {"subject": f"Patient/{p['id']}"})


def test_absolute_url_elsewhere_is_another_resource(data, world):
    url = f"http://elsewhere.example.org/fhir/Patient/{world['p']['id']}"
    assert data.ids("/Observation", {"subject": url}) == _obs(world, "elsewhere")


def test_type_modifier(data, world):
    pid, lid = world["p"]["id"], world["loc"]["id"]
    assert data.ids("/Observation", {"subject:Patient": pid}) == _obs(world, "p", "versioned")
    assert data.ids("/Observation", {"subject:Location": lid}) == _obs(world, "loc")
    assert data.ids("/Observation", {"subject:Group": pid}) == set()
    assert data.ids("/Observation", {"subject:Location": pid}) == set()


def test_type_modifier_outside_the_targets_is_400(data, world):
    r = data.get("/Observation", {"subject:Medication": world["p"]["id"]})
    assert r.status_code == 400, r.text


def test_parameter_restricted_to_one_type(data, world):
    # `patient` is Observation.subject.where(resolve() is Patient)
    assert data.ids("/Observation", {"patient": f"Patient/{world['p']['id']}"}) == \
        _obs(world, "p", "versioned")
    assert data.ids("/Observation", {"patient": world["p"]["id"]}) == _obs(world, "p", "versioned")
    assert data.ids("/Observation", {"patient": f"Location/{world['loc']['id']}"}) == set()


def test_identifier_modifier(data, world):
    s = world["s"]
    assert data.ids("/Observation", {"subject:identifier": f"{s}|MRN1"}) == _obs(world, "ident")
    assert data.ids("/Observation", {"subject:identifier": "MRN1"}) >= _obs(world, "ident")
    assert data.ids("/Observation", {"subject:identifier": f"{s}|P1"}) == set()  # not the target's identifier


def test_or_and(data, world):
    pid, lid = world["p"]["id"], world["loc"]["id"]
    assert data.ids("/Observation", {"subject": f"Patient/{pid},Location/{lid}"}) == \
        _obs(world, "p", "versioned", "loc")
    assert data.ids("/Observation", [("subject", f"Patient/{pid}"), ("subject", f"Location/{lid}")]) == set()


def test_chain(data, world):
    u = world["u"]
    assert data.ids("/Observation", {"subject:Patient.name": f"{u}Pat"}) == _obs(world, "p", "versioned")
    assert data.ids("/Observation", {"subject:Patient.name": f"{u}Other"}) == _obs(world, "p2")
    assert data.ids("/Observation", {"subject:Location.name": f"{u}Pat"}) == _obs(world, "loc")


def test_untyped_chain_goes_through_every_target_with_the_parameter(data, world):
    u = world["u"]
    # Patient.name and Location.name both start with `<u>Pat`
    assert data.ids("/Observation", {"subject.name": f"{u}Pat"}) == _obs(world, "p", "versioned", "loc")


def test_chain_with_token_and_modifier(data, world):
    s = world["s"]
    assert data.ids("/Observation", {"subject:Patient.identifier": f"{s}|P1"}) == \
        _obs(world, "p", "versioned")
    assert data.ids("/Observation", {"subject:Patient.name:exact": f"{world['u']}Pat"}) == \
        _obs(world, "p", "versioned")
    assert data.ids("/Observation", {"subject:Patient.name:exact": f"{world['u']}pat"}) == set()


def test_multi_level_chains(data, world):
    u = world["u"]
    mine = _obs(world, "p", "versioned")
    assert data.ids("/Observation", {"subject:Patient.organization.name": f"{u}Org"}) == mine
    assert data.ids("/Observation", {"subject:Patient.organization.partof.name": f"{u}Parent"}) == mine
    assert data.ids("/Observation", {"subject:Patient.organization.partof.name": f"{u}Org"}) == set()
    assert data.ids("/Patient", {"organization.partof.name": f"{u}Parent"}) == {world["p"]["id"]}
    assert data.ids("/Observation", {"subject:Patient.organization.partof._id": world["parent"]["id"]}) == mine


def test_chains_are_and_with_other_criteria(data, world):
    u = world["u"]
    assert data.ids("/Observation", [("subject:Patient.name", f"{u}Pat"), ("subject:Patient.name", f"{u}Other")]) \
        == set()
    assert data.ids("/Observation", {"subject:Patient.name": f"{u}Pat,{u}Other"}) == \
        _obs(world, "p", "versioned", "p2")


@pytest.mark.parametrize("data", ["unchecked"], indirect=True)  # the observations still refer to what is deleted
def test_chain_through_a_deleted_resource_finds_nothing(data, world):
    u = world["u"]
    assert data.ids("/Observation", {"subject:Patient.name": f"{u}Other"}) == _obs(world, "p2")
    assert data.client.delete(f"/Patient/{world['p2']['id']}").status_code in (200, 204)
    assert data.ids("/Observation", {"subject:Patient.name": f"{u}Other"}) == set()


def test_chain_on_a_non_reference_parameter_is_400(data, world):
    r = data.get("/Observation", {"code.name": "x"})
    assert r.status_code == 400, r.text


def test_chain_to_an_unknown_parameter(data, world):
    lenient = data.bundle("/Observation", {"subject:Patient.nosuchparam": "x"})
    outcomes = [e for e in lenient.get("entry", []) if e["search"]["mode"] == "outcome"]
    assert outcomes and "nosuchparam" in str(outcomes[0]["resource"])
    self_link = next(lk["url"] for lk in lenient["link"] if lk["relation"] == "self")
    assert "nosuchparam" not in self_link
    strict = data.get("/Observation", {"subject:Patient.nosuchparam": "x"}, headers={"Prefer": "handling=strict"})
    assert strict.status_code == 400, strict.text


def _questionnaire_responses(data):
    u = uid("q")
    url = f"http://example.org/fhir/Questionnaire/{u}"

    def qr(canonical):
        return data.create({"resourceType": "QuestionnaireResponse", "status": "completed",
                            "questionnaire": canonical})["id"]

    return url, {"plain": qr(url), "v1": qr(f"{url}|1.0"), "v2": qr(f"{url}|2.0"), "longer": qr(f"{url}x")}


def test_canonical_references(data):
    url, ids = _questionnaire_responses(data)
    assert data.ids("/QuestionnaireResponse", {"questionnaire": url}) == {ids["plain"], ids["v1"], ids["v2"]}
    assert ids["v2"] in data.ids("/QuestionnaireResponse", {"questionnaire": f"{url}|2.0"})


def test_canonical_with_version_finds_only_that_version(data):
    url, ids = _questionnaire_responses(data)
    assert ids["v1"] not in data.ids("/QuestionnaireResponse", {"questionnaire": f"{url}|2.0"})
    assert data.ids("/QuestionnaireResponse", {"questionnaire": f"{url}|1.0"}) == {ids["v1"]}
