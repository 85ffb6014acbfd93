"""Conditional create, update and delete with any search parameter (R4 http.html#ccreate,
#cond-update, #3.1.0.7.1): the condition is a search, so every parameter type, modifier, chain and
`_has` works there; 0 / 1 / several matches → create 201 / 200 (existing) / 412, update 201 /
200 / 412, delete 200-204 (nothing or the one) / 412."""

from __future__ import annotations

from urllib.parse import urlencode

import pytest

from .support import observation, patient, system, uid


def _q(data, params):
    return urlencode(list(params.items()) + [("_tag", data.tag)], safe="|:$")


@pytest.fixture
def people(data):
    u = uid("c")
    s = system()
    org = data.create({"resourceType": "Organization", "name": f"{u}org"})
    one = data.create(patient(name=[{"family": f"{u}one"}], birthDate="1981-02-03", gender="female",
                              identifier=[{"system": s, "value": "1"}],
                              managingOrganization={"reference": data.ref(org)}))
    two_a = data.create(patient(name=[{"family": f"{u}two"}], birthDate="1990-01-01", gender="male"))
    two_b = data.create(patient(name=[{"family": f"{u}two"}], birthDate="1990-06-01", gender="male"))
    data.create(observation(subject={"reference": data.ref(one)}, code={"coding": [{"system": s, "code": "x"}]}))
    return u, s, {"one": one, "two_a": two_a, "two_b": two_b, "org": org}


# conditions meeting exactly `one`, by parameter type
ONE = {
    "token": lambda u, s, p: {"identifier": f"{s}|1"},
    "string": lambda u, s, p: {"family": f"{u}one"},
    "string-exact": lambda u, s, p: {"family:exact": f"{u}one"},
    "date": lambda u, s, p: {"birthdate": "1981-02"},
    "date-prefix": lambda u, s, p: {"birthdate": "lt1985"},
    "reference": lambda u, s, p: {"organization": f"Organization/{p['org']['id']}"},
    "chain": lambda u, s, p: {"organization.name": f"{u}org"},
    "has": lambda u, s, p: {"_has:Observation:patient:code": f"{s}|x"},
    "id": lambda u, s, p: {"_id": p["one"]["id"]},
    "and": lambda u, s, p: {"gender": "female", "family": u},
    "missing": lambda u, s, p: {"identifier:missing": "false"},
}
# conditions meeting both `two_*`
SEVERAL = {
    "string": lambda u, s, p: {"family": f"{u}two"},
    "date": lambda u, s, p: {"birthdate": "1990"},
    "token": lambda u, s, p: {"gender": "male"},
    "or": lambda u, s, p: {"_id": f"{p['two_a']['id']},{p['two_b']['id']}"},
}
NONE = {
    "token": lambda u, s, p: {"identifier": f"{s}|2"},
    "string": lambda u, s, p: {"family": f"{u}three"},
    "date": lambda u, s, p: {"birthdate": "2001"},
    "chain": lambda u, s, p: {"organization.name": f"{u}nothing"},
    "has": lambda u, s, p: {"_has:Observation:patient:code": f"{s}|y"},
}


@pytest.mark.parametrize("kind", sorted(ONE))
def test_conditional_create_one_match_returns_it(data, people, kind):
    u, s, p = people
    cond = _q(data, ONE[kind](u, s, p))
    r = data.client.post("/Patient", json=data.tagged(patient()), headers={"If-None-Exist": cond})
    assert r.status_code == 200, (cond, r.text)
    assert r.json()["id"] == p["one"]["id"]


@pytest.mark.parametrize("kind", sorted(NONE))
def test_conditional_create_no_match_creates(data, people, kind):
    u, s, p = people
    cond = _q(data, NONE[kind](u, s, p))
    r = data.client.post("/Patient", json=data.tagged(patient()), headers={"If-None-Exist": cond})
    assert r.status_code == 201, (cond, r.text)
    assert r.json()["id"] not in {v["id"] for v in p.values()}


@pytest.mark.parametrize("kind", sorted(SEVERAL))
def test_conditional_create_several_matches_is_412(data, people, kind):
    u, s, p = people
    cond = _q(data, SEVERAL[kind](u, s, p))
    before = data.ids("/Patient")
    r = data.client.post("/Patient", json=data.tagged(patient()), headers={"If-None-Exist": cond})
    assert r.status_code == 412, (cond, r.text)
    assert r.json()["resourceType"] == "OperationOutcome"
    assert data.ids("/Patient") == before


@pytest.mark.parametrize("kind", sorted(ONE))
def test_conditional_update_one_match_updates_it(data, people, kind):
    u, s, p = people
    cond = _q(data, ONE[kind](u, s, p))
    body = dict(p["one"])
    body.pop("meta")
    body["active"] = True
    r = data.client.put(f"/Patient?{cond}", json=data.tagged(body))
    assert r.status_code == 200, (cond, r.text)
    assert r.json()["id"] == p["one"]["id"] and r.json()["meta"]["versionId"] == "2"
    assert data.client.get(f"/Patient/{p['one']['id']}").json()["active"] is True


@pytest.mark.parametrize("kind", sorted(NONE))
def test_conditional_update_no_match_creates(data, people, kind):
    u, s, p = people
    cond = _q(data, NONE[kind](u, s, p))
    r = data.client.put(f"/Patient?{cond}", json=data.tagged(patient(active=False)))
    assert r.status_code == 201, (cond, r.text)
    assert r.json()["id"] not in {v["id"] for v in p.values()}


@pytest.mark.parametrize("kind", sorted(SEVERAL))
def test_conditional_update_several_matches_is_412(data, people, kind):
    u, s, p = people
    cond = _q(data, SEVERAL[kind](u, s, p))
    r = data.client.put(f"/Patient?{cond}", json=data.tagged(patient(active=True)))
    assert r.status_code == 412, (cond, r.text)
    for key in ("two_a", "two_b"):
        assert data.client.get(f"/Patient/{p[key]['id']}").json()["meta"]["versionId"] == "1"


@pytest.mark.parametrize("kind", ["token", "chain", "has", "date"])
def test_conditional_delete_one_match(data, people, kind):
    u, s, p = people
    cond = _q(data, ONE[kind](u, s, p))
    # the match has an Observation (what `_has` finds): it goes too, or the delete is a 409
    r = data.client.delete(f"/Patient?{cond}&_cascade=delete")
    assert r.status_code in (200, 204), (cond, r.text)
    assert data.client.get(f"/Patient/{p['one']['id']}").status_code == 410
    assert data.client.get(f"/Patient/{p['two_a']['id']}").status_code == 200


@pytest.mark.parametrize("kind", sorted(SEVERAL))
def test_conditional_delete_several_matches_is_412(data, people, kind):
    u, s, p = people
    cond = _q(data, SEVERAL[kind](u, s, p))
    r = data.client.delete(f"/Patient?{cond}")
    assert r.status_code == 412, (cond, r.text)
    assert data.client.get(f"/Patient/{p['two_a']['id']}").status_code == 200
    assert data.client.get(f"/Patient/{p['two_b']['id']}").status_code == 200


def test_conditional_delete_no_match_deletes_nothing(data, people):
    u, s, p = people
    before = data.ids("/Patient")
    r = data.client.delete(f"/Patient?{_q(data, NONE['string'](u, s, p))}")
    assert r.status_code in (200, 204, 404), r.text
    assert data.ids("/Patient") == before


@pytest.mark.parametrize("condition", ["nosuchparam=1", "family:nosuchmodifier=x", "birthdate=notadate",
                                       "organization.nosuch=x"])
def test_conditions_that_mean_nothing_are_400(data, people, condition):
    r = data.client.post("/Patient", json=data.tagged(patient()),
                         headers={"If-None-Exist": f"{condition}&_tag={data.tag.replace('|', '%7C')}"})
    assert r.status_code == 400, (condition, r.text)
    r = data.client.put(f"/Patient?{condition}", json=data.tagged(patient()))
    assert r.status_code == 400, (condition, r.text)
    r = data.client.delete(f"/Patient?{condition}")
    assert r.status_code == 400, (condition, r.text)
