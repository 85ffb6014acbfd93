"""Referential integrity (FHIR_REFERENTIAL_INTEGRITY, on by default; issue 14 point 7): a write
whose local literal reference resolves to nothing is 422 naming the element, and nothing is
written; deleting a resource others refer to is 409 naming them, unless they go in the same
transaction or with `_cascade=delete` (an administrator's option)."""

from __future__ import annotations

import time

import httpx
import pytest

from fhir_server.config import Settings
from fhir_server.security import local_issuer
from tests.conftest import start_server

from .support import assert_outcome, new_id

JSON_PATCH = {"Content-Type": "application/json-patch+json"}


def task(id_: str | None = None, for_: str | None = None, **fields) -> dict:
    out = {"resourceType": "Task", "status": "requested", "intent": "order", **fields}
    if id_ is not None:
        out["id"] = id_
    if for_ is not None:
        out["for"] = {"reference": for_}
    return out


def put(client: httpx.Client, resource: dict) -> dict:
    r = client.put(f"/{resource['resourceType']}/{resource['id']}", json=resource)
    assert r.status_code in (200, 201), r.text
    return r.json()


def patient_id(client: httpx.Client) -> str:
    id_ = new_id("ri-p")
    put(client, {"resourceType": "Patient", "id": id_})
    return id_


def diagnostics(response: httpx.Response) -> str:
    return " ".join(i["diagnostics"] for i in response.json()["issue"])


def bearer(server, scope: str, patient: str | None = None) -> dict[str, str]:
    """A token of the open-mode server's local issuer (made in-process with its data folder)."""
    token, _ = local_issuer.issue(Settings(data_dir=server.data_dir), "Practitioner/ri-admin", scope, patient)
    return {"Authorization": f"Bearer {token}"}


# -- writes ---------------------------------------------------------------------------------------

def test_a_create_naming_a_missing_patient_is_422_and_writes_nothing(client):
    marker = new_id("ri")
    r = client.post("/Task", json=task(for_="Patient/does-not-exist", identifier=[{"value": marker}]))
    outcome = assert_outcome(r, 422, "not-found", "Task.for")
    assert "Patient/does-not-exist" in outcome["issue"][0]["diagnostics"]
    assert client.get("/Task", params={"identifier": marker}).json().get("total") == 0


def test_every_dangling_reference_is_named_with_its_element(client):
    existing = patient_id(client)
    body = task(for_=f"Patient/{existing}", owner={"reference": "Practitioner/ri-nobody"},
                basedOn=[{"reference": f"Patient/{existing}"}, {"reference": "CarePlan/ri-none"}])
    outcome = assert_outcome(client.post("/Task", json=body), 422)
    assert sorted(i["expression"][0] for i in outcome["issue"]) == ["Task.basedOn[1]", "Task.owner"]


def test_an_update_or_a_patch_adding_a_dangling_reference_is_422_and_changes_nothing(client):
    id_ = new_id("ri-t")
    put(client, task(id_, for_=f"Patient/{patient_id(client)}"))
    assert_outcome(client.put(f"/Task/{id_}", json=task(id_, for_="Patient/ri-missing")), 422, "not-found", "Task.for")
    patch = [{"op": "replace", "path": "/for/reference", "value": "Patient/ri-missing"}]
    assert_outcome(client.patch(f"/Task/{id_}", json=patch, headers=JSON_PATCH), 422, "not-found", "Task.for")
    assert client.get(f"/Task/{id_}").json()["meta"]["versionId"] == "1"


def test_what_is_not_a_local_literal_reference_is_not_checked(client, base_url):
    body = task(for_="http://other.example.org/fhir/Patient/anywhere",
                contained=[{"resourceType": "Patient", "id": "p"}], focus={"reference": "#p"},
                owner={"identifier": {"system": "urn:oid:1.2.250.1.71.4.2.1", "value": "810000000001"}},
                requester={"reference": "urn:uuid:1f2d7e3a-0d7b-4a5a-9f59-5e1f2b7c9d10"})
    assert client.post("/Task", json=body).status_code == 201


def test_an_absolute_reference_to_this_server_must_resolve(client, base_url):
    existing = patient_id(client)
    assert client.post("/Task", json=task(for_=f"{base_url}/Patient/{existing}")).status_code == 201
    missing = client.post("/Task", json=task(for_=f"{base_url}/Patient/ri-missing"))
    assert_outcome(missing, 422, "not-found", "Task.for")


def test_a_versioned_reference_must_name_an_existing_version(client):
    existing = patient_id(client)
    assert client.post("/Task", json=task(for_=f"Patient/{existing}/_history/1")).status_code == 201
    r = client.post("/Task", json=task(for_=f"Patient/{existing}/_history/7"))
    assert_outcome(r, 422, "not-found", "Task.for")
    assert "_history/7" in diagnostics(r)


def test_a_deleted_target_does_not_resolve(client):
    gone = patient_id(client)
    assert client.delete(f"/Patient/{gone}").status_code == 200
    assert_outcome(client.post("/Task", json=task(for_=f"Patient/{gone}")), 422, "not-found", "Task.for")


def test_a_reference_inside_a_contained_resource_is_checked(client):
    body = task(contained=[{"resourceType": "Provenance", "id": "p", "recorded": "2024-01-01T00:00:00Z",
                            "target": [{"reference": "Patient/ri-missing"}],
                            "agent": [{"who": {"display": "x"}}]}],
                relevantHistory=[{"reference": "#p"}])
    assert_outcome(client.post("/Task", json=body), 422, "not-found", "Task.contained[0].target[0]")


# -- transactions ---------------------------------------------------------------------------------

def test_a_transaction_may_create_the_target_with_the_referrer(client):
    marker = new_id("ri")
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:8a0c7e0e-3f5d-4b6a-9f37-3b0e6a1d2c11",
         "resource": task(for_="urn:uuid:0b7d5b2e-5d4c-4f0e-8a59-2f6b1c3d4e55", identifier=[{"value": marker}]),
         "request": {"method": "POST", "url": "Task"}},
        {"fullUrl": "urn:uuid:0b7d5b2e-5d4c-4f0e-8a59-2f6b1c3d4e55", "resource": {"resourceType": "Patient"},
         "request": {"method": "POST", "url": "Patient"}}]}
    r = client.post("/", json=bundle)
    assert r.status_code == 200, r.text
    assert client.get("/Task", params={"identifier": marker}).json()["total"] == 1


def test_a_transaction_with_a_dangling_reference_is_422_naming_its_entry_and_writes_nothing(client):
    marker = new_id("ri")
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "Patient", "identifier": [{"value": marker}]},
         "request": {"method": "POST", "url": "Patient"}},
        {"resource": task(for_="Patient/ri-missing", identifier=[{"value": marker}]),
         "request": {"method": "POST", "url": "Task"}}]}
    r = client.post("/", json=bundle)
    outcome = assert_outcome(r, 422, "not-found")
    assert outcome["issue"][0]["diagnostics"].startswith("entry 1")
    assert outcome["issue"][0]["expression"] == ["Task.for"]
    for type_ in ("Patient", "Task"):
        assert client.get(f"/{type_}", params={"identifier": marker}).json()["total"] == 0


def test_a_transaction_may_delete_a_resource_with_what_refers_to_it(client):
    pid, tid = patient_id(client), new_id("ri-t")
    put(client, task(tid, for_=f"Patient/{pid}"))
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"request": {"method": "DELETE", "url": f"Patient/{pid}"}},
        {"request": {"method": "DELETE", "url": f"Task/{tid}"}}]}
    assert client.post("/", json=bundle).status_code == 200
    assert client.get(f"/Patient/{pid}").status_code == 410


def test_a_transaction_deleting_a_target_it_still_refers_to_is_422(client):
    pid, tid = patient_id(client), new_id("ri-t")
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"request": {"method": "DELETE", "url": f"Patient/{pid}"}},
        {"resource": task(tid, for_=f"Patient/{pid}"), "request": {"method": "PUT", "url": f"Task/{tid}"}}]}
    assert_outcome(client.post("/", json=bundle), 422, "not-found")
    assert client.get(f"/Patient/{pid}").status_code == 200


# -- deletes --------------------------------------------------------------------------------------

def test_deleting_a_referenced_resource_is_409_listing_the_referrers(client):
    pid = patient_id(client)
    tasks = [new_id("ri-t") for _ in range(7)]
    for tid in tasks:
        put(client, task(tid, for_=f"Patient/{pid}"))
    r = client.delete(f"/Patient/{pid}")
    assert_outcome(r, 409, "conflict")
    text = diagnostics(r)
    named = [tid for tid in tasks if f"Task/{tid} (Task.for)" in text]
    assert len(named) == 5 and "and more" in text and "_cascade=delete" in text, text
    assert client.get(f"/Patient/{pid}").status_code == 200
    # the same through a conditional delete
    r = client.delete("/Patient", params={"_id": pid})
    assert_outcome(r, 409, "conflict")
    # once nothing refers to it, it goes
    for tid in tasks:
        assert client.delete(f"/Task/{tid}").status_code == 200
    assert client.delete(f"/Patient/{pid}").status_code == 200


def test_provenance_and_audit_events_do_not_hold_a_deletion(client):
    pid = patient_id(client)
    provenance = {"resourceType": "Provenance", "recorded": "2024-01-01T00:00:00Z",
                  "target": [{"reference": f"Patient/{pid}/_history/1"}], "agent": [{"who": {"display": "x"}}]}
    assert client.post("/Provenance", json=provenance).status_code == 201
    assert client.delete(f"/Patient/{pid}").status_code == 200


def test_cascade_deletes_the_referrers_recursively_and_audits_each(client):
    pid, first, second = patient_id(client), new_id("ri-t"), new_id("ri-t")
    put(client, task(first, for_=f"Patient/{pid}"))
    put(client, task(second, partOf=[{"reference": f"Task/{first}"}]))  # refers to the patient through the first
    request_id = new_id("ri-req")
    r = client.delete(f"/Patient/{pid}", params={"_cascade": "delete"}, headers={"X-Request-Id": request_id})
    assert r.status_code == 200, r.text
    assert "2 resources referring to it" in diagnostics(r)
    for key in (f"Patient/{pid}", f"Task/{first}", f"Task/{second}"):
        assert client.get(f"/{key}").status_code == 410, key
    deadline = time.monotonic() + 15
    while True:
        events = client.get("/AuditEvent", params={"entity:identifier": request_id, "_count": 50}).json()
        deleted = {entity["what"]["reference"].split("/_history")[0]
                   for e in events.get("entry", ()) if e["resource"].get("subtype", [{}])[0].get("code") == "delete"
                   for entity in e["resource"]["entity"] if entity.get("role", {}).get("code") == "4"}
        if len(deleted) >= 3 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert deleted == {f"Patient/{pid}", f"Task/{first}", f"Task/{second}"}


def test_an_unknown_cascade_value_is_400(client):
    assert_outcome(client.delete(f"/Patient/{patient_id(client)}", params={"_cascade": "yes"}), 400, "value")


def test_cascade_needs_system_delete_on_the_referring_types(client, server):
    pid, tid = patient_id(client), new_id("ri-t")
    put(client, task(tid, for_=f"Patient/{pid}"))
    r = client.delete(f"/Patient/{pid}", params={"_cascade": "delete"},
                      headers=bearer(server, "system/Patient.cruds"))
    assert_outcome(r, 403, "forbidden")
    assert "system/Task.d" in diagnostics(r)
    assert client.get(f"/Task/{tid}").status_code == 200
    r = client.delete(f"/Patient/{pid}", params={"_cascade": "delete"},
                      headers=bearer(server, "system/Patient.cruds system/Task.cruds"))
    assert r.status_code == 200, r.text
    assert client.get(f"/Task/{tid}").status_code == 410


def test_a_409_names_only_the_referrers_the_caller_may_see(client, server):
    """Existence is decided on everything (a write must be consistent), but the 409 names only
    what the token reaches: another patient's record is counted, not named."""
    org = new_id("ri-o")
    put(client, {"resourceType": "Organization", "id": org, "name": "Cabinet"})
    mine, other = new_id("ri-p"), new_id("ri-p")
    for id_ in (mine, other):
        put(client, {"resourceType": "Patient", "id": id_, "managingOrganization": {"reference": f"Organization/{org}"}})
    r = client.delete(f"/Organization/{org}", headers=bearer(server, "patient/*.cruds", patient=mine))
    assert_outcome(r, 409, "conflict")
    text = diagnostics(r)
    assert f"Patient/{mine} (Patient.managingOrganization)" in text
    assert other not in text and "1 resource you cannot see" in text
    assert client.get(f"/Organization/{org}").status_code == 200


# -- FHIR_REFERENTIAL_INTEGRITY=off ---------------------------------------------------------------

@pytest.fixture(scope="module")
def unchecked(tmp_path_factory, r4_examples):
    running = start_server(tmp_path_factory.mktemp("integrity-off"), extra_env={"FHIR_REFERENTIAL_INTEGRITY": "off"})
    with httpx.Client(base_url=running.base_url, timeout=60, headers={"Accept": "application/fhir+json"}) as c:
        yield c
    running.stop()


def test_with_integrity_off_dangling_references_are_stored_and_targets_deleted(unchecked):
    assert unchecked.post("/Task", json=task(for_="Patient/does-not-exist")).status_code == 201
    pid = patient_id(unchecked)
    assert unchecked.post("/Task", json=task(for_=f"Patient/{pid}")).status_code == 201
    assert unchecked.delete(f"/Patient/{pid}").status_code == 200
