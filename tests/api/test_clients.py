"""End to end with third-party FHIR clients nobody here wrote: fhirpy and fhirclient, against the
running server over HTTP. Only calls that do not need search (not implemented yet)."""

from __future__ import annotations

import pytest
import requests
from fhirclient import client as smart_client
from fhirclient.models.careplan import CarePlan as FCCarePlan
from fhirclient.models.fhirdate import FHIRDate
from fhirclient.models.humanname import HumanName
from fhirclient.models.patient import Patient as FCPatient
from fhirclient.server import FHIRNotFoundException
from fhirpy import SyncFHIRClient
from fhirpy.base.exceptions import OperationOutcome as FhirpyOperationOutcome
from fhirpy.base.exceptions import ResourceNotFound

from .support import identifier_system, new_id

# -- fhirpy -----------------------------------------------------------------------------------

@pytest.fixture
def fhirpy_client(base_url):
    return SyncFHIRClient(base_url, extra_headers={"Accept": "application/fhir+json"})


def test_fhirpy_patient_lifecycle(fhirpy_client, client):
    system = identifier_system()
    patient = fhirpy_client.resource("Patient", identifier=[{"system": system, "value": "1"}],
                                     name=[{"family": "Durand", "given": ["Anne"]}], gender="female",
                                     birthDate="1970-01-02")
    patient.save()  # POST
    assert patient.id and patient["meta"]["versionId"] == "1"
    id_ = patient.id

    fetched = fhirpy_client.reference("Patient", id_).to_resource()  # GET
    assert fetched["name"][0]["family"] == "Durand" and fetched["birthDate"] == "1970-01-02"
    assert fetched.serialize() == client.get(f"/Patient/{id_}").json()

    fetched["gender"] = "other"
    fetched.save()  # PUT
    assert fetched["meta"]["versionId"] == "2"
    assert client.get(f"/Patient/{id_}").json()["gender"] == "other"

    # refresh sends If-None-Match with the bare versionId: the server answers 304, nothing changes
    fetched.refresh()
    assert fetched["meta"]["versionId"] == "2" and fetched["gender"] == "other"
    # an out-of-date copy refreshes to the current version
    patient.refresh()
    assert patient["meta"]["versionId"] == "2" and patient["gender"] == "other"

    as_dict = fhirpy_client.get("Patient", id_)
    assert as_dict["id"] == id_ and as_dict["meta"]["versionId"] == "2"

    fetched.delete()  # DELETE
    assert client.get(f"/Patient/{id_}").status_code == 410
    with pytest.raises(ResourceNotFound):
        fhirpy_client.reference("Patient", id_).to_resource()


def test_fhirpy_careplan_lifecycle(fhirpy_client, client):
    patient = fhirpy_client.resource("Patient", name=[{"family": "Martin"}])
    patient.save()
    careplan = fhirpy_client.resource(
        "CarePlan", status="active", intent="plan", subject=patient.to_reference(),
        title="Suivi diabète", period={"start": "2024-01-01"},
        activity=[{"detail": {"status": "scheduled", "description": "HbA1c tous les 3 mois"}}])
    careplan.save()
    assert careplan.id and careplan["meta"]["versionId"] == "1"
    assert careplan["subject"]["reference"] == f"Patient/{patient.id}"

    got = fhirpy_client.reference("CarePlan", careplan.id).to_resource()
    assert got["title"] == "Suivi diabète"
    assert got["activity"][0]["detail"]["description"] == "HbA1c tous les 3 mois"
    assert got["subject"].reference == f"Patient/{patient.id}"

    got["status"] = "completed"
    got.save()
    assert got["meta"]["versionId"] == "2"
    stored = client.get(f"/CarePlan/{careplan.id}").json()
    assert stored["status"] == "completed" and stored["meta"]["versionId"] == "2"
    assert client.get(f"/CarePlan/{careplan.id}/_history/1").json()["status"] == "active"

    fhirpy_client.delete("CarePlan", careplan.id)
    assert client.get(f"/CarePlan/{careplan.id}").status_code == 410
    with pytest.raises(ResourceNotFound):
        fhirpy_client.get("CarePlan", careplan.id)


def test_fhirpy_update_as_create_with_client_id(fhirpy_client, client):
    id_ = new_id("fhirpy")
    patient = fhirpy_client.resource("Patient", id=id_, active=True)
    patient.save()  # PUT because it has an id
    assert patient.id == id_ and patient["meta"]["versionId"] == "1"
    assert client.get(f"/Patient/{id_}").json()["active"] is True


def test_fhirpy_surfaces_the_operation_outcome(fhirpy_client):
    bad = fhirpy_client.resource("Patient", birthDate="1970-13-01")
    with pytest.raises(FhirpyOperationOutcome) as raised:
        bad.save()
    issue = raised.value.resource["issue"][0]
    assert issue["code"] == "value" and issue["expression"] == ["Patient.birthDate"]
    with pytest.raises(ResourceNotFound):
        fhirpy_client.get("Patient", new_id("nobody"))


# -- fhirclient (SMART on FHIR python client) -------------------------------------------------

@pytest.fixture
def smart(base_url):
    return smart_client.FHIRClient(settings={"app_id": "fhir-server-tests", "api_base": base_url})


def test_fhirclient_reads_the_capability_statement(smart):
    # prepare() fetches /metadata and parses it with the strict R4 CapabilityStatement model
    assert smart.prepare() is True
    cs = smart.server.capabilityStatement
    assert cs.fhirVersion == "4.0.1"
    types = {r.type for r in cs.rest[0].resource}
    assert len(types) == 146 and {"Patient", "CarePlan", "MedicinalProduct"} <= types


def test_fhirclient_reads_a_patient_written_over_http(smart, client):
    id_ = new_id("fc")
    r = client.put(f"/Patient/{id_}", json={"resourceType": "Patient", "id": id_,
                                             "name": [{"family": "Petit", "given": ["Léa"]}],
                                             "birthDate": "1985-06-15", "gender": "female"})
    assert r.status_code == 201
    patient = FCPatient.read(id_, smart.server)
    assert patient.id == id_
    assert patient.name[0].family == "Petit" and patient.name[0].given == ["Léa"]
    assert patient.birthDate.isostring == "1985-06-15"
    assert patient.meta.versionId == "1"
    assert patient.as_json() == r.json()


def test_fhirclient_create_update_delete(smart, client):
    patient = FCPatient({"gender": "male"})
    name = HumanName()
    name.family = "Bernard"
    name.given = ["Luc"]
    patient.name = [name]
    patient.birthDate = FHIRDate("1950-03-04")
    created = patient.create(smart.server)  # POST, returns the response JSON
    assert created["resourceType"] == "Patient" and created["meta"]["versionId"] == "1"
    id_ = created["id"]
    assert client.get(f"/Patient/{id_}").json()["name"] == [{"family": "Bernard", "given": ["Luc"]}]

    stored = FCPatient.read(id_, smart.server)
    stored.gender = "other"
    updated = stored.update()  # PUT to its origin server
    assert updated["meta"]["versionId"] == "2" and updated["gender"] == "other"
    assert client.get(f"/Patient/{id_}").json()["gender"] == "other"

    plan = FCCarePlan({"status": "active", "intent": "plan", "subject": {"reference": f"Patient/{id_}"}})
    plan_json = plan.create(smart.server)
    assert FCCarePlan.read(plan_json["id"], smart.server).subject.reference == f"Patient/{id_}"

    assert client.delete(f"/CarePlan/{plan_json['id']}").status_code == 200  # nothing may refer to what is deleted
    outcome = stored.delete()  # DELETE
    assert outcome["resourceType"] == "OperationOutcome"
    assert client.get(f"/Patient/{id_}").status_code == 410
    with pytest.raises(requests.HTTPError) as raised:
        FCPatient.read(id_, smart.server)
    assert raised.value.response.status_code == 410
    with pytest.raises(FHIRNotFoundException):
        FCPatient.read(new_id("nobody"), smart.server)
