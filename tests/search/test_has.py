"""Reverse chaining `_has` (R4 search.html#has): `_has:Type:reference:parameter=value`, nested
`_has`, OR values, AND by repetition, combined with other criteria and chains; malformed forms."""

from __future__ import annotations

import pytest

from .support import observation, patient, system


@pytest.fixture
def clinic(data):
    s = system()
    pats = {k: data.create(patient(name=[{"family": k}]))["id"] for k in ("anna", "bob", "carl", "dora")}

    def obs(who, code, status="final"):
        return data.create(observation((s, code), status=status,
                                       subject={"reference": f"Patient/{pats[who]}"}))["id"]

    o = {"anna-hb": obs("anna", "hb"), "anna-glu": obs("anna", "glu"), "bob-hb": obs("bob", "hb", "preliminary"),
         "carl-glu": obs("carl", "glu")}
    report = data.create({"resourceType": "DiagnosticReport", "status": "final", "code": {"text": "r"},
                          "result": [{"reference": f"Observation/{o['carl-glu']}"}]})["id"]
    data.create({"resourceType": "DiagnosticReport", "status": "registered", "code": {"text": "r"},
                 "result": [{"reference": f"Observation/{o['bob-hb']}"}]})
    return s, pats, o, report


def test_has(data, clinic):
    s, p, _, _ = clinic
    assert data.ids("/Patient", {"_has:Observation:patient:code": f"{s}|hb"}) == {p["anna"], p["bob"]}
    assert data.ids("/Patient", {"_has:Observation:subject:code": f"{s}|glu"}) == {p["anna"], p["carl"]}
    assert data.ids("/Patient", {"_has:Observation:patient:code": f"{s}|none"}) == set()


def test_has_or_and(data, clinic):
    s, p, _, _ = clinic
    assert data.ids("/Patient", {"_has:Observation:patient:code": f"{s}|hb,{s}|glu"}) == {p["anna"], p["bob"], p["carl"]}
    assert data.ids("/Patient", [("_has:Observation:patient:code", f"{s}|hb"),
                                 ("_has:Observation:patient:code", f"{s}|glu")]) == {p["anna"]}


def test_has_needs_one_resource_meeting_the_inner_criterion(data, clinic):
    s, p, _, _ = clinic
    # bob's hb is preliminary: `_has` with status=final and code=hb are two separate conditions
    assert data.ids("/Patient", {"_has:Observation:patient:status": "preliminary"}) == {p["bob"]}
    assert data.ids("/Patient", [("_has:Observation:patient:status", "final"),
                                 ("_has:Observation:patient:code", f"{s}|hb")]) == {p["anna"]}


def test_has_with_other_criteria(data, clinic):
    s, p, _, _ = clinic
    assert data.ids("/Patient", [("_has:Observation:patient:code", f"{s}|hb"), ("name", "bob")]) == {p["bob"]}
    assert data.ids("/Patient", [("_has:Observation:patient:code", f"{s}|glu"), ("name", "bob")]) == set()


def test_nested_has(data, clinic):
    _, p, _, report = clinic
    # patients with an observation that a final DiagnosticReport has among its results
    assert data.ids("/Patient", {"_has:Observation:patient:_has:DiagnosticReport:result:status": "final"}) == \
        {p["carl"]}
    assert data.ids("/Patient", {"_has:Observation:patient:_has:DiagnosticReport:result:status": "registered"}) == \
        {p["bob"]}
    assert data.ids("/Patient", {"_has:Observation:patient:_has:DiagnosticReport:result:_id": report}) == {p["carl"]}


def test_has_with_a_chain_inside(data, clinic):
    s, p, _, _ = clinic
    assert data.ids("/Patient", {"_has:Observation:patient:subject:Patient.name": "anna"}) == {p["anna"]}


@pytest.mark.parametrize("data", ["unchecked"], indirect=True)  # the report still refers to what is deleted
def test_has_ignores_deleted_resources(data, clinic):
    s, p, o, _ = clinic
    assert data.ids("/Patient", {"_has:Observation:patient:code": f"{s}|hb"}) == {p["anna"], p["bob"]}
    assert data.client.delete(f"/Observation/{o['bob-hb']}").status_code in (200, 204)
    assert data.ids("/Patient", {"_has:Observation:patient:code": f"{s}|hb"}) == {p["anna"]}


def test_has_on_another_type(data, clinic):
    s, _, o, report = clinic
    assert data.ids("/Observation", {"_has:DiagnosticReport:result:status": "final"}) == {o["carl-glu"]}


@pytest.mark.parametrize("name, value", [
    ("_has:Observation:patient", "x"),  # no parameter
    ("_has:Observation", "x"),
    ("_has:NotAType:patient:code", "x"),
    ("_has:Observation:code:code", "x"),  # code is not a reference parameter
    ("_has:Observation:nosuchref:code", "x"),
])
def test_malformed_has_is_400(data, name, value):
    r = data.get("/Patient", {name: value})
    assert r.status_code == 400, r.text
    assert r.json()["resourceType"] == "OperationOutcome"


def test_has_with_an_unknown_inner_parameter_is_refused(data):
    r = data.get("/Patient", {"_has:Observation:patient:nosuchparam": "x"})
    assert r.status_code == 400, r.text  # never silently "every patient with an observation"
