"""Provenance of writes through HTTP, with tokens from a real OpenID provider: every create,
update, patch and delete by an identified user or client records a Provenance in the same
database transaction (a failed write leaves none); `X-Provenance` is honoured and checked."""

from __future__ import annotations

import json

import pytest

from tests.oidc.provider import Client
from tests.robustness.support import fail_point, mongo
from tests.security.conftest import bearer

# the records written here belong to no care team: what is tested is the trail, not the équipe de soins rule
SERVER_ENV = {"FHIR_EMBEDDED_TEST_COMMANDS": "1", "FHIR_ACCESS_RULE": "scopes"}
CLIENTS = [
    Client("ehr", scope=["user/*.cruds"], claims={"fhirUser": "Practitioner/gp-prov"}),
    Client("nurse-app", scope=["user/*.cruds"], claims={"fhirUser": "PractitionerRole/nurse-role",
                                                        "purpose_of_use": "BTG"}),
    Client("sync", scope=["system/*.cruds"]),
]


@pytest.fixture(scope="module")
def ehr(provider) -> dict[str, str]:
    return bearer(provider.token("ehr", scope="user/*.cruds"))


@pytest.fixture(scope="module")
def sync(provider) -> dict[str, str]:
    return bearer(provider.token("sync", scope="system/*.cruds"))


def provenances(http, headers, target: str) -> list[dict]:
    bundle = http.get("/Provenance", params={"target": target, "_count": 100}, headers=headers).json()
    return [e["resource"] for e in bundle.get("entry", ())]


def all_provenance_ids(http, headers) -> set[str]:
    bundle = http.get("/Provenance", params={"_count": 1000, "_elements": "id"}, headers=headers).json()
    return {e["resource"]["id"] for e in bundle.get("entry", ())}


def agent(provenance: dict, code: str) -> dict:
    return next(a for a in provenance["agent"] if a["type"]["coding"][0]["code"] == code)


def activity(provenance: dict) -> str | None:
    return (provenance.get("activity") or {}).get("coding", [{}])[0].get("code")


def test_each_write_records_who_did_what_to_which_version(http, ehr):
    created = http.post("/Patient", json={"resourceType": "Patient", "name": [{"family": "Prov"}]}, headers=ehr)
    assert created.status_code == 201
    patient = created.json()
    key = f"Patient/{patient['id']}"
    [first] = provenances(http, ehr, key)
    assert first["target"] == [{"reference": f"{key}/_history/1"}]
    assert first["recorded"] == patient["meta"]["lastUpdated"]
    assert activity(first) == "CREATE"
    assert agent(first, "author")["who"] == {"reference": "Practitioner/gp-prov"}
    assert agent(first, "performer")["who"]["identifier"] == {"system": "urn:ietf:params:oauth:client-id",
                                                               "value": "ehr"}
    http.put(f"/{key}", json={**patient, "active": True}, headers=ehr).raise_for_status()
    http.patch(f"/{key}", content=json.dumps([{"op": "replace", "path": "/active", "value": False}]),
               headers={**ehr, "Content-Type": "application/json-patch+json"}).raise_for_status()
    http.delete(f"/{key}", headers=ehr).raise_for_status()
    found = {p["target"][0]["reference"]: activity(p) for p in provenances(http, ehr, key)}
    assert found == {f"{key}/_history/1": "CREATE", f"{key}/_history/2": "UPDATE",
                     f"{key}/_history/3": "UPDATE", f"{key}/_history/4": "DELETE"}


def test_a_backend_service_is_named_as_the_client_with_no_user(http, sync):
    created = http.post("/Patient", json={"resourceType": "Patient"}, headers=sync).json()
    [provenance] = provenances(http, sync, f"Patient/{created['id']}")
    assert [a["type"]["coding"][0]["code"] for a in provenance["agent"]] == ["performer"]


def test_a_practitioner_role_acts_on_behalf_of_its_organization(http, provider, sync):
    organization = http.post("/Organization", json={"resourceType": "Organization", "name": "MSP Test"},
                             headers=sync).json()
    role = {"resourceType": "PractitionerRole", "id": "nurse-role",
            "organization": {"reference": f"Organization/{organization['id']}"}}
    assert http.put("/PractitionerRole/nurse-role", json=role, headers=sync).status_code in (200, 201)
    nurse = bearer(provider.token("nurse-app", scope="user/*.cruds"))
    created = http.post("/Patient", json={"resourceType": "Patient"}, headers=nurse).json()
    [provenance] = provenances(http, nurse, f"Patient/{created['id']}")
    author = agent(provenance, "author")
    assert author["who"] == {"reference": "PractitionerRole/nurse-role"}
    assert author["onBehalfOf"] == {"reference": f"Organization/{organization['id']}"}
    assert provenance["reason"][0]["coding"][0]["code"] == "BTG"


def test_a_transaction_has_one_provenance_for_all_its_writes(http, ehr):
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:p1", "request": {"method": "POST", "url": "Patient"},
         "resource": {"resourceType": "Patient"}},
        {"request": {"method": "POST", "url": "Observation"}, "resource": {
            "resourceType": "Observation", "status": "final", "code": {"text": "t"},
            "subject": {"reference": "urn:uuid:p1"}}}]}
    result = http.post("/", json=bundle, headers=ehr).json()
    keys = [e["response"]["location"] for e in result["entry"]]
    [provenance] = provenances(http, ehr, keys[0].split("/_history")[0])
    assert sorted(t["reference"] for t in provenance["target"]) == sorted(keys)
    assert activity(provenance) == "CREATE"


def test_a_failed_write_leaves_no_provenance(http, ehr, secured):
    patient = http.post("/Patient", json={"resourceType": "Patient"}, headers=ehr).json()
    before = all_provenance_ids(http, ehr)
    key = f"/Patient/{patient['id']}"
    assert http.put(key, json=patient, headers={**ehr, "If-Match": 'W/"9"'}).status_code == 412
    assert http.post("/Patient", json={"resourceType": "Patient", "birthDate": "soon"}, headers=ehr).status_code == 400
    failing = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"request": {"method": "POST", "url": "Patient"}, "resource": {"resourceType": "Patient"}},
        {"request": {"method": "PUT", "url": key, "ifMatch": 'W/"7"'}, "resource": patient}]}
    assert http.post("/", json=failing, headers=ehr).status_code == 412
    assert all_provenance_ids(http, ehr) == before
    assert http.get(key, headers=ehr).json()["meta"]["versionId"] == "1"


def test_the_write_and_its_provenance_commit_together(http, ehr, secured):
    """The n-th insert the server sends fails (the resource's, the Provenance's, the history's,
    or now and then one of the audit trail's): either both are stored or neither."""
    failures = 0
    with mongo(secured) as client:
        for n in range(4):
            patients = http.get("/Patient", params={"_summary": "count"}, headers=ehr).json()["total"]
            before = all_provenance_ids(http, ehr)
            with fail_point(client, ["insert", "bulkWrite"], mode={"skip": n, "times": 1}, errorCode=8, errorLabels=[]):
                r = http.post("/Patient", json={"resourceType": "Patient"}, headers=ehr)
            if r.status_code == 201:
                assert len(provenances(http, ehr, f"Patient/{r.json()['id']}")) == 1
                continue
            failures += 1
            assert r.status_code >= 500 and r.json()["resourceType"] == "OperationOutcome", r.text
            assert http.get("/Patient", params={"_summary": "count"}, headers=ehr).json()["total"] == patients
            assert all_provenance_ids(http, ehr) == before
    assert failures >= 1


def test_x_provenance_is_honoured_and_the_token_is_named_beside_it(http, ehr):
    declared = {"resourceType": "Provenance", "agent": [{
        "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type",
                             "code": "author"}]},
        "who": {"reference": "Practitioner/dr-who-dictated"}}],
        "reason": [{"text": "letter from the hospital"}]}
    created = http.post("/Patient", json={"resourceType": "Patient"},
                        headers={**ehr, "X-Provenance": json.dumps(declared)})
    assert created.status_code == 201, created.text
    key = f"Patient/{created.json()['id']}"
    [provenance] = provenances(http, ehr, key)
    assert provenance["reason"] == declared["reason"]
    assert agent(provenance, "author")["who"] == {"reference": "Practitioner/dr-who-dictated"}
    assert agent(provenance, "enterer")["who"] == {"reference": "Practitioner/gp-prov"}
    assert provenance["target"] == [{"reference": f"{key}/_history/1"}]
    # a target naming this very write is accepted
    ok = {**declared, "target": [{"reference": f"{key}"}]}
    updated = http.put(f"/{key}", json={"resourceType": "Patient", "id": created.json()["id"], "active": True},
                       headers={**ehr, "X-Provenance": json.dumps(ok)})
    assert updated.status_code == 200, updated.text


@pytest.mark.parametrize("header, mentions", [
    ("{not json", "not JSON"),
    ('{"resourceType": "Patient"}', "must be a Provenance"),
    ('{"resourceType": "Provenance", "agent": [{"who": {"reference": "Practitioner/x"}}], "colour": "red"}',
     "colour"),
    ('{"resourceType": "Provenance", "target": [{"reference": "Patient/someone-else"}]}', "not what this request"),
])
def test_a_bad_x_provenance_is_a_400_and_nothing_is_written(http, ehr, header, mentions):
    before = http.get("/Patient", params={"_summary": "count"}, headers=ehr).json()["total"]
    provenance_before = all_provenance_ids(http, ehr)
    r = http.post("/Patient", json={"resourceType": "Patient"}, headers={**ehr, "X-Provenance": header})
    assert r.status_code == 400, r.text
    assert r.json()["resourceType"] == "OperationOutcome"
    assert mentions in json.dumps(r.json()), r.json()
    assert "X-Provenance" in r.json()["issue"][0]["diagnostics"]
    assert http.get("/Patient", params={"_summary": "count"}, headers=ehr).json()["total"] == before
    assert all_provenance_ids(http, ehr) == provenance_before
