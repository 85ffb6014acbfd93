"""Profile validation through HTTP: `$validate` in all its forms, on-write validation of declared
and required profiles, base rules (required bindings, invariants), INS-NIR keys."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from fhir_server.validation.ins import nir_key
from tests.conftest import start_server

FR_PATIENT = "https://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-patient"
COORD = "https://fhir-server.dev/ig/coordination/StructureDefinition/"


def issues(response, severity=("error", "fatal")):
    body = response.json()
    assert body["resourceType"] == "OperationOutcome", body
    return [i for i in body["issue"] if i["severity"] in severity]


def test_validate_type_level_with_a_resource_body(client):
    r = client.post("/Patient/$validate", json={"resourceType": "Patient", "gender": "bogus"})
    assert r.status_code == 200
    found = issues(r)
    assert found and found[0]["expression"] == ["Patient.gender"] and found[0]["code"] == "code-invalid"
    ok = client.post("/Patient/$validate", json={"resourceType": "Patient", "gender": "female"})
    assert ok.status_code == 200 and issues(ok) == []
    assert {i["severity"] for i in ok.json()["issue"]} <= {"information", "warning"}  # dom-6: no narrative
    assert ok.json()["issue"][-1]["severity"] == "information"


def test_validate_with_parameters_profile_and_mode(client):
    careplan = {"resourceType": "CarePlan", "status": "active", "intent": "plan", "subject": {"reference": "Patient/x"}}
    params = {"resourceType": "Parameters", "parameter": [
        {"name": "resource", "resource": careplan}, {"name": "profile", "valueUri": COORD + "coord-careplan"},
        {"name": "mode", "valueCode": "create"}]}
    r = client.post("/CarePlan/$validate", json=params)
    assert r.status_code == 200
    where = {e for i in issues(r) for e in i.get("expression", [])}
    assert {"CarePlan.careTeam", "CarePlan.author", "CarePlan.category"} <= where, where
    without = client.post("/CarePlan/$validate", json=careplan)
    assert issues(without) == []
    update = client.post("/CarePlan/$validate", json={"resourceType": "Parameters", "parameter": [
        {"name": "resource", "resource": careplan}, {"name": "mode", "valueCode": "update"}]})
    assert any(i["expression"] == ["CarePlan.id"] for i in issues(update))


def test_validate_instance_level_and_structural_errors(client):
    id_ = f"v-{uuid.uuid4().hex[:10]}"
    assert client.put(f"/Patient/{id_}", json={"resourceType": "Patient", "id": id_}).status_code == 201
    r = client.get(f"/Patient/{id_}/$validate")
    assert r.status_code == 200 and issues(r) == []
    r = client.get(f"/Patient/{id_}/$validate", params={"profile": COORD + "coord-careplan"})
    assert any(i["code"] == "invalid" for i in issues(r))  # a CarePlan profile for a Patient
    broken = client.post("/Patient/$validate", json={"resourceType": "Patient", "birthDate": "1970-13-01", "foo": 1})
    assert broken.status_code == 200 and {i["expression"][0] for i in issues(broken)} == {"Patient.birthDate", "Patient.foo"}
    assert client.get("/Patient/nobody/$validate").status_code == 404
    assert client.post("/Patient/$validate", json={"resourceType": "Observation"}).status_code == 400


def test_required_bindings_and_invariants_on_write(client):
    r = client.post("/CarePlan", json={"resourceType": "CarePlan", "status": "bogus", "intent": "plan",
                                       "subject": {"reference": "Patient/x"}})
    assert r.status_code == 422 and issues(r)[0]["expression"] == ["CarePlan.status"]
    # ele-1 / ext-1: an extension with both a value and nested extensions
    r = client.post("/Patient", json={"resourceType": "Patient", "extension": [{
        "url": "http://example.org/x", "valueString": "a", "extension": [{"url": "y", "valueString": "b"}]}]})
    assert r.status_code == 422 and any(i["code"] == "invariant" for i in issues(r))
    assert client.get("/CarePlan", params={"status": "bogus"}).json()["total"] == 0


def test_coordination_profiles_on_write(client, fr_core_tgz):
    """The allowed owners of coord-task are FR Core profiles: the guide needs FR Core loaded."""
    task = {"resourceType": "Task", "meta": {"profile": [COORD + "coord-task"]}, "status": "requested",
            "intent": "order", "for": {"reference": "Patient/x"}}
    r = client.post("/Task", json=task)
    assert r.status_code == 422
    assert {"Task.authoredOn", "Task.requester", "Task"} <= {e for i in issues(r) for e in i["expression"]}
    assert any("coord-task-1" in i["diagnostics"] for i in issues(r))  # a requested task has an owner
    draft = client.post("/Task/$validate", json={**task, "status": "draft", "authoredOn": "2026-01-01",
                                                  "requester": {"reference": "PractitionerRole/a"}})
    assert not [i for i in issues(draft) if i["severity"] == "error"], draft.text  # a draft waits for its owner
    for type_, id_ in (("Patient", "x"), ("PractitionerRole", "a"), ("PractitionerRole", "b")):  # they must exist
        assert client.put(f"/{type_}/{id_}", json={"resourceType": type_, "id": id_}).status_code in (200, 201)
    task.update({"authoredOn": "2026-01-01", "requester": {"reference": "PractitionerRole/a"},
                 "owner": {"reference": "PractitionerRole/b"}})
    assert client.post("/Task", json=task).status_code == 201
    task["owner"] = {"reference": "Device/d"}  # not an allowed owner in coord-task
    assert client.post("/Task", json=task).status_code in (400, 422)


def test_extension_out_of_its_context_is_refused_on_write(client):
    read_by = {"url": COORD + "coord-ext-read-by", "extension": [
        {"url": "reader", "valueReference": {"reference": "PractitionerRole/a"}},
        {"url": "time", "valueDateTime": "2026-01-01T10:00:00+01:00"}]}
    task = {"resourceType": "Task", "status": "requested", "intent": "order", "extension": [read_by]}
    r = client.post("/Task", json=task)
    assert r.status_code == 422, r.text
    found = issues(r)
    assert found[0]["expression"] == ["Task.extension[0]"] and "Communication" in found[0]["diagnostics"]
    message = {"resourceType": "Communication", "status": "completed", "extension": [read_by]}
    r = client.post("/Communication/$validate", json=message)
    assert r.status_code == 200 and issues(r) == [], r.text


def test_unknown_declared_profile_is_a_warning_by_default(client):
    r = client.post("/Patient/$validate", json={"resourceType": "Patient", "meta": {"profile": ["http://example.org/nope"]}})
    assert r.status_code == 200 and issues(r) == []
    assert any(i["code"] == "not-found" for i in r.json()["issue"] if i["severity"] == "warning")
    created = client.post("/Patient", json={"resourceType": "Patient", "meta": {"profile": ["http://example.org/nope"]}})
    assert created.status_code == 201


def test_ins_key_checked_on_write(client):
    nir = "1840275123456"
    good = f"{nir}{nir_key(nir):02d}"
    bad = f"{nir}{(nir_key(nir) + 1) % 97:02d}"
    ok = client.post("/Patient", json={"resourceType": "Patient", "identifier": [
        {"system": "urn:oid:1.2.250.1.213.1.4.10", "value": good}]})
    assert ok.status_code == 201
    r = client.post("/Patient", json={"resourceType": "Patient", "identifier": [
        {"system": "urn:oid:1.2.250.1.213.1.4.8", "value": bad}]})
    assert r.status_code == 422
    assert issues(r)[0]["expression"] == ["Patient.identifier[0].value"] and "key" in issues(r)[0]["diagnostics"]


@pytest.fixture(scope="module")
def fr_server(tmp_path_factory, r4_examples, fr_core_tgz):
    server = start_server(tmp_path_factory.mktemp("fr"), extra_env={
        "FHIR_PACKAGES": str(fr_core_tgz), "FHIR_REQUIRED_PROFILES": f"Patient={FR_PATIENT}",
        "FHIR_UNKNOWN_PROFILE": "error"})
    yield server
    server.stop()


def test_required_profiles_and_unknown_profile_as_error(fr_server):
    import httpx

    base = fr_server.base_url
    cap = httpx.get(f"{base}/metadata").json()
    patient_cap = next(r for r in cap["rest"][0]["resource"] if r["type"] == "Patient")
    assert FR_PATIENT in patient_cap["supportedProfile"]
    assert any("hl7.fhir.fr.core" in g for g in cap["implementationGuide"])
    # fr-core-patient: an identifier of type INS-NIR needs the INS system… any violation is a 422
    r = httpx.post(f"{base}/Patient", json={"resourceType": "Patient", "name": [{"family": "Durand"}],
                                            "meta": {"profile": ["http://example.org/nope"]}})
    assert r.status_code == 422 and any(i["code"] == "not-found" for i in issues(r))
    fine = httpx.post(f"{base}/Patient", json={"resourceType": "Patient", "name": [{"family": "Durand", "given": ["Marie"]}],
                                               "gender": "female", "birthDate": "1970-01-01"})
    assert fine.status_code == 201, fine.text


@pytest.mark.parametrize("path", sorted(p.name for p in (Path(__file__).parents[2] / "profiles").glob("*.json")
                                        if not p.name.startswith(".")))
def test_every_resource_of_our_guide_is_valid_r4(client, path):
    """The guide's own conformance resources pass the server's validation (an R5 element such as
    SearchParameter.title, or a broken invariant, would be refused from anyone else)."""
    resource = json.loads((Path(__file__).parents[2] / "profiles" / path).read_text(encoding="utf-8"))
    if "resourceType" not in resource:
        pytest.skip("not a FHIR resource (package.json)")
    answer = client.post(f"/{resource['resourceType']}/$validate", json=resource)
    assert answer.status_code == 200, answer.text
    assert not issues(answer), (path, issues(answer))
