"""Conditions never match "everything" (issue 14): a parameter a search would ignore — unknown,
with an unsupported modifier, a result parameter such as `_sort` or `_count`, an empty value or
alternative, a chain or `_has` that means nothing — makes a conditional create, update, delete
or patch a 400 naming it, also with `Prefer: handling=lenient`, also inside a batch or a
transaction and in a transaction's conditional reference; and nothing is written or deleted."""

from __future__ import annotations

import base64
import json

import pytest

from .support import assert_outcome, identifier_system, patient

LENIENT = {"Prefer": "handling=lenient"}
JSON_PATCH = [{"op": "replace", "path": "/active", "value": False}]

# (condition, text the answer must name); `{s}` is the victim's identifier system.
BAD = [
    ("foo=bar", "foo"),
    ("identifier={s}|1&foo=bar", "foo"),
    ("identifier:nonsense={s}|1", ":nonsense"),
    ("identifier={s}|1&_sort=name", "_sort"),
    ("identifier={s}|1&_count=1", "_count"),
    ("identifier={s}|1&_include=Patient:link", "_include"),
    ("identifier={s}|1&_summary=true", "_summary"),
    ("identifier={s}|1&_elements=id", "_elements"),
    ("identifier={s}|1&_total=accurate", "_total"),
    ("_count=1", "_count"),
    ("identifier={s}|1,", "identifier"),
    ("identifier={s}|1&active=", "active"),
    ("general-practitioner.foo=bar", "general-practitioner.foo"),
    ("_has:Observation:subject:foo=bar", "foo"),
]
IDS = [condition.split("=")[0] + ("," if condition.endswith(",") else "") for condition, _ in BAD]


@pytest.fixture
def victim(client):
    """A patient every bad condition would have matched had its bad part been ignored."""
    system = identifier_system()
    r = client.post("/Patient", json=patient(identifier=[{"system": system, "value": "1"}], active=True))
    assert r.status_code == 201, r.text
    return r.json()


def _unchanged(client, victim) -> None:
    """The victim is as it was and no other patient carries its system: nothing was written."""
    system = victim["identifier"][0]["system"]
    found = client.get("/Patient", params={"identifier": f"{system}|", "_count": "10"}).json()
    assert [e["resource"] for e in found.get("entry", []) if e["search"]["mode"] == "match"] == [victim]


def _names(outcome: dict, text: str) -> None:
    diagnostics = " | ".join(i.get("diagnostics", "") for i in outcome["issue"])
    assert text in diagnostics, diagnostics


def _body(victim, **fields):
    return patient(identifier=victim["identifier"], **fields)


def _direct(client, kind: str, query: str, victim):
    if kind == "create":
        return client.post("/Patient", json=_body(victim), headers={"If-None-Exist": query, **LENIENT})
    if kind == "update":
        return client.put(f"/Patient?{query}", json=_body(victim, active=False), headers=LENIENT)
    if kind == "delete":
        return client.delete(f"/Patient?{query}", headers=LENIENT)
    return client.patch(f"/Patient?{query}", content=json.dumps(JSON_PATCH),
                        headers={"Content-Type": "application/json-patch+json", **LENIENT})


@pytest.mark.parametrize(("condition", "named"), BAD, ids=IDS)
@pytest.mark.parametrize("kind", ["create", "update", "delete", "patch"])
def test_a_condition_that_would_ignore_a_parameter_is_400(client, victim, kind, condition, named):
    query = condition.format(s=victim["identifier"][0]["system"])
    outcome = assert_outcome(_direct(client, kind, query, victim), 400)
    _names(outcome, named)
    _unchanged(client, victim)


@pytest.mark.parametrize("kind", ["create", "update", "delete", "patch"])
def test_an_empty_condition_is_400(client, victim, kind):
    if kind == "create":
        r = client.post("/Patient", json=_body(victim), headers={"If-None-Exist": "", **LENIENT})
    else:
        r = _direct(client, kind, "", victim)
    assert_outcome(r, 400)
    _unchanged(client, victim)


def test_if_none_exist_on_another_type_is_400(client, victim):
    system = victim["identifier"][0]["system"]
    r = client.post("/Patient", json=_body(victim), headers={"If-None-Exist": f"Observation?identifier={system}|1"})
    _names(assert_outcome(r, 400), "Observation")
    ok = client.post("/Patient", json=_body(victim), headers={"If-None-Exist": f"Patient?identifier={system}|1"})
    assert ok.status_code == 200 and ok.json()["id"] == victim["id"]
    _unchanged(client, victim)


# -- the same inside bundles --------------------------------------------------------------------

def _entries(query: str, victim) -> list[dict]:
    patch = {"resourceType": "Binary", "contentType": "application/json-patch+json",
             "data": base64.b64encode(json.dumps(JSON_PATCH).encode()).decode()}
    return [
        {"resource": _body(victim), "request": {"method": "POST", "url": "Patient", "ifNoneExist": query}},
        {"resource": _body(victim, active=False), "request": {"method": "PUT", "url": f"Patient?{query}"}},
        {"request": {"method": "DELETE", "url": f"Patient?{query}"}},
        {"resource": patch, "request": {"method": "PATCH", "url": f"Patient?{query}"}},
    ]


def _bundle(client, kind: str, entries: list[dict]):
    return client.post("", json={"resourceType": "Bundle", "type": kind, "entry": entries},
                       headers={"Content-Type": "application/fhir+json", **LENIENT})


@pytest.mark.parametrize(("condition", "named"), BAD, ids=IDS)
def test_batch_entries_with_such_conditions_are_400(client, victim, condition, named):
    query = condition.format(s=victim["identifier"][0]["system"])
    r = _bundle(client, "batch", _entries(query, victim))
    assert r.status_code == 200, r.text
    for item in r.json()["entry"]:
        assert item["response"]["status"].startswith("400"), item
        _names(item["response"]["outcome"], named)
    _unchanged(client, victim)


@pytest.mark.parametrize(("condition", "named"), BAD, ids=IDS)
@pytest.mark.parametrize("index", [0, 1, 2, 3], ids=["create", "update", "delete", "patch"])
def test_a_transaction_with_such_a_condition_is_400_and_writes_nothing(client, victim, condition, named, index):
    query = condition.format(s=victim["identifier"][0]["system"])
    marker = identifier_system()
    other = {"resource": patient(identifier=[{"system": marker, "value": "x"}]),
             "request": {"method": "POST", "url": "Patient"}}
    _names(assert_outcome(_bundle(client, "transaction", [other, _entries(query, victim)[index]]), 400), named)
    _unchanged(client, victim)
    assert client.get("/Patient", params={"identifier": f"{marker}|"}).json().get("total") == 0


@pytest.mark.parametrize(("condition", "named"), BAD, ids=IDS)
def test_a_conditional_reference_with_such_a_condition_is_400(client, victim, condition, named):
    query = condition.format(s=victim["identifier"][0]["system"])
    marker = identifier_system()
    observation = {"resourceType": "Observation", "status": "final", "code": {"text": "weight"},
                   "identifier": [{"system": marker, "value": "x"}], "subject": {"reference": f"Patient?{query}"}}
    r = _bundle(client, "transaction", [{"resource": observation, "request": {"method": "POST", "url": "Observation"}}])
    _names(assert_outcome(r, 400), named)
    assert client.get("/Observation", params={"identifier": f"{marker}|"}).json().get("total") == 0
    # the same reference with a restricting condition resolves to the victim
    system = victim["identifier"][0]["system"]
    observation["subject"]["reference"] = f"Patient?identifier={system}|1"
    r = _bundle(client, "transaction", [{"resource": observation, "request": {"method": "POST", "url": "Observation"}}])
    assert r.status_code == 200, r.text
    stored = client.get("/Observation", params={"identifier": f"{marker}|"}).json()["entry"][0]["resource"]
    assert stored["subject"]["reference"] == f"Patient/{victim['id']}"


def test_an_empty_if_none_exist_in_a_bundle_entry_is_400(client, victim):
    entry = {"resource": _body(victim), "request": {"method": "POST", "url": "Patient", "ifNoneExist": ""}}
    r = _bundle(client, "batch", [entry])
    assert r.status_code in (200, 400), r.text
    if r.status_code == 200:  # refused as the entry's answer
        assert r.json()["entry"][0]["response"]["status"].startswith("400"), r.text
    assert_outcome(_bundle(client, "transaction", [entry]), 400)
    _unchanged(client, victim)
