"""System-level search (`GET [base]?_type=…`, `POST [base]/_search`), compartment search
(`GET Patient/123/Observation`, `Patient/123/*`), and the parameters of every resource: `_id`,
`_lastUpdated`, `_tag`, `_profile`, `_security`, `_source`, `_list` (R4 search.html#all)."""

from __future__ import annotations

import pytest

from .support import matches, observation, patient, system, uid


@pytest.fixture
def mixed(data):
    p = data.create(patient(name=[{"family": "sys"}]))
    o = data.create(observation(subject={"reference": data.ref(p)}))
    org = data.create({"resourceType": "Organization", "name": "sys"})
    return {"p": data.ref(p), "o": data.ref(o), "org": data.ref(org)}


def test_system_search_over_every_type(data, mixed):
    assert data.ids("", {}) == set(mixed.values())


def test_system_search_with_type(data, mixed):
    assert data.ids("", {"_type": "Patient,Observation"}) == {mixed["p"], mixed["o"]}
    assert data.ids("", {"_type": "Organization"}) == {mixed["org"]}
    assert data.ids("", {"_type": "Patient", "name": "sys"}) == {mixed["p"]}


def test_system_search_with_type_specific_parameter_needs_type(data, mixed):
    r = data.get("", {"name": "sys"})
    assert r.status_code == 400, r.text


def test_system_search_with_unknown_type_is_400(data):
    r = data.get("", {"_type": "Patient,NotAType"})
    assert r.status_code == 400, r.text


def test_system_search_entries(data, mixed, base_url):
    bundle = data.bundle("", {})
    assert bundle["type"] == "searchset" and bundle["total"] == 3
    for entry in bundle["entry"]:
        res = entry["resource"]
        assert entry["fullUrl"] == f"{base_url}/{res['resourceType']}/{res['id']}"


def test_post_system_search(data, mixed):
    r = data.client.post("/_search", data={"_type": "Patient,Organization", "_tag": data.tag})
    assert r.status_code == 200, r.text
    assert set(matches(r.json(), typed=True)) == {mixed["p"], mixed["org"]}


def test_id_across_types(data):
    same = uid("same")
    p = data.create(patient(id=same))
    o = data.create(observation(id=same))
    assert data.ids("", {"_id": same}) == {data.ref(p), data.ref(o)}
    assert data.ids("/Patient", {"_id": same}) == {same}


def test_last_updated_at_system_level(data, mixed):
    newest = max(data.client.get(f"/{r}").json()["meta"]["lastUpdated"] for r in mixed.values())
    latest = data.create_later(patient(), newest)
    stamp = latest["meta"]["lastUpdated"]
    assert data.ids("", {"_lastUpdated": f"ge{stamp}"}) == {data.ref(latest)}
    assert data.ids("", {"_lastUpdated": f"lt{stamp}"}) == set(mixed.values())


def test_tag_profile_security_source(data):
    s = system()
    u = uid("m")
    a = data.create(patient(meta={"tag": [{"system": s, "code": "a"}], "profile": [f"http://example.org/{u}/p"],
                                  "security": [{"system": s, "code": "R"}], "source": f"urn:{u}:src"}))
    b = data.create(observation(meta={"tag": [{"system": s, "code": "b"}], "security": [{"system": s, "code": "N"}]}))
    assert data.ids("", {"_tag": f"{s}|a"}) == {data.ref(a)}
    assert data.ids("", {"_tag": f"{s}|a,{s}|b"}) == {data.ref(a), data.ref(b)}
    assert data.ids("", {"_tag": f"{s}|"}) == {data.ref(a), data.ref(b)}
    assert data.ids("", {"_profile": f"http://example.org/{u}/p"}) == {data.ref(a)}
    assert data.ids("", {"_security": f"{s}|N"}) == {data.ref(b)}
    assert data.ids("", {"_source": f"urn:{u}:src"}) == {data.ref(a)}
    assert data.ids("", {"_tag:not": f"{s}|a", "_type": "Patient,Observation"}) == {data.ref(b)}


def test_list(data, client):
    a = data.create(patient())
    b = data.create(patient())
    o = data.create(observation())
    lst = data.create({"resourceType": "List", "status": "current", "mode": "working",
                       "entry": [{"item": {"reference": data.ref(a)}}, {"item": {"reference": data.ref(o)}}]})
    assert data.ids("/Patient", {"_list": lst["id"]}) == {a["id"]}
    assert data.ids("/Observation", {"_list": lst["id"]}) == {o["id"]}
    assert data.ids("", {"_list": lst["id"]}) == {data.ref(a), data.ref(o)}
    assert b["id"] not in data.ids("/Patient", {"_list": lst["id"]})
    assert data.ids("/Patient", {"_list": "no-such-list"}) == set()


# -- compartments -------------------------------------------------------------------------------
@pytest.fixture
def chart(data):
    p = data.create(patient())
    other = data.create(patient())
    pr = data.create({"resourceType": "Practitioner"})
    enc = data.create({"resourceType": "Encounter", "status": "finished",
                       "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
                       "subject": {"reference": data.ref(p)}})
    s = system()
    made = {
        "subject": data.create(observation((s, "a"), subject={"reference": data.ref(p)},
                                           encounter={"reference": data.ref(enc)})),
        "performer": data.create(observation((s, "b"), subject={"reference": data.ref(other)},
                                             performer=[{"reference": data.ref(p)}])),
        "by_practitioner": data.create(observation((s, "c"), subject={"reference": data.ref(other)},
                                                   performer=[{"reference": data.ref(pr)}])),
        "plan": data.create({"resourceType": "CarePlan", "status": "active", "intent": "plan",
                             "subject": {"reference": data.ref(p)}}),
        "enc": enc,
    }
    return s, p, other, pr, {k: v["id"] for k, v in made.items()}


def test_patient_compartment(data, chart):
    s, p, _, _, ids = chart
    assert data.ids(f"/Patient/{p['id']}/Observation") == {ids["subject"], ids["performer"]}
    assert data.ids(f"/Patient/{p['id']}/CarePlan") == {ids["plan"]}
    assert data.ids(f"/Patient/{p['id']}/Observation", {"code": f"{s}|b"}) == {ids["performer"]}


def test_patient_compartment_all_types(data, chart):
    _, p, _, _, ids = chart
    bundle = data.bundle(f"/Patient/{p['id']}/*")
    assert set(matches(bundle, typed=True)) == {
        f"Observation/{ids['subject']}", f"Observation/{ids['performer']}", f"CarePlan/{ids['plan']}",
        f"Encounter/{ids['enc']}"}


def test_other_compartments(data, chart):
    _, _, other, pr, ids = chart
    assert data.ids(f"/Practitioner/{pr['id']}/Observation") == {ids["by_practitioner"]}
    assert data.ids(f"/Encounter/{ids['enc']}/Observation") == {ids["subject"]}
    assert data.ids(f"/Patient/{other['id']}/Observation") == {ids["performer"], ids["by_practitioner"]}


def test_compartment_of_an_unknown_patient_is_empty(data, chart):
    assert data.ids("/Patient/no-such-patient/Observation") == set()


@pytest.mark.parametrize("path, statuses", [
    ("/Patient/x/NotAType", (404, 400)),
    ("/Observation/x/Patient", (404, 400)),  # Observation defines no compartment
    ("/Patient/x/Organization", (400, 404)),  # Organization is not in the Patient compartment
])
def test_invalid_compartments(data, path, statuses):
    r = data.get(path)
    assert r.status_code in statuses, r.text
    assert r.json()["resourceType"] == "OperationOutcome"
