"""FHIRPath Patch (a Parameters resource of operations) on PATCH [type]/[id] and [type]?query:
add, insert, delete, replace, move, paths with [n], first(), last(), where(); errors — with
nothing stored when it fails."""

from __future__ import annotations

import pytest

from .support import (
    assert_error,
    fhirpath_patch,
    history_versions,
    new_id,
    op,
    parameters,
    put,
    read,
    search_ids,
    system,
    unchanged,
)


@pytest.fixture
def patient(client):
    s = system()
    id_ = new_id("fp")
    resource = {"resourceType": "Patient", "id": id_, "active": True, "deceasedBoolean": False,
                "identifier": [{"system": s, "value": "a"}, {"system": "urn:other", "value": "b"}],
                "name": [{"family": "Doe", "given": ["Jane", "Q", "X"]}], "birthDate": "1970-01-01"}
    put(client, resource)
    stored = put(client, resource)
    return {"ref": f"Patient/{id_}", "id": id_, "system": s, "stored": stored}


def _apply(client, patient, *ops, **headers):
    return fhirpath_patch(client, f"/{patient['ref']}", parameters(*ops), **headers)


def test_every_operation(client, patient):
    s = patient["system"]
    r = _apply(client, patient,
               op("replace", "Patient.active", valueBoolean=False),
               op("add", "Patient", name="gender", valueCode="female"),
               op("add", "Patient", name="identifier", valueIdentifier={"system": s, "value": "c"}),
               op("delete", "Patient.identifier.where(value = 'a')"),
               op("insert", "Patient.name[0].given", index=0, valueString="Ann"),
               op("move", "Patient.name[0].given", source=3, destination=1),
               op("replace", "Patient.name.first().family", valueString="Roe"),
               op("delete", "Patient.birthDate"),
               op("replace", "Patient.deceased", valueBoolean=True))
    assert r.status_code == 200, r.text
    body = r.json()
    assert r.headers["etag"] == 'W/"3"' and body["meta"]["versionId"] == "3"
    assert body["active"] is False and body["gender"] == "female" and "birthDate" not in body
    assert body["deceasedBoolean"] is True
    assert body["identifier"] == [{"system": "urn:other", "value": "b"}, {"system": s, "value": "c"}]
    assert body["name"] == [{"family": "Roe", "given": ["Ann", "X", "Jane", "Q"]}]
    assert read(client, patient["ref"]) == body
    assert history_versions(client, patient["ref"]) == [1, 2, 3]
    assert search_ids(client, "Patient", identifier=f"{s}|c") == [patient["id"]]
    assert search_ids(client, "Patient", identifier=f"{s}|a") == []


def test_a_complex_value_from_parts(client, patient):
    s = patient["system"]
    r = _apply(client, patient,
               op("insert", "Patient.communication", index=0, parts=[
                   {"name": "language", "valueCodeableConcept": {"text": "French"}},
                   {"name": "preferred", "valueBoolean": True}]),
               op("add", "Patient", name="identifier", parts=[
                   {"name": "system", "valueUri": s}, {"name": "value", "valueString": "parts"}]))
    assert r.status_code == 200, r.text
    assert r.json()["communication"] == [{"language": {"text": "French"}, "preferred": True}]
    assert r.json()["identifier"][-1] == {"system": s, "value": "parts"}
    assert search_ids(client, "Patient", identifier=f"{s}|parts") == [patient["id"]]


def test_add_the_first_item_of_a_list(client, patient):
    r = _apply(client, patient, op("add", "Patient", name="telecom", valueContactPoint={"system": "phone",
                                                                                       "value": "555"}))
    assert r.status_code == 200, r.text
    assert r.json()["telecom"] == [{"system": "phone", "value": "555"}]


def test_choice_elements_take_the_type_of_the_value(client, patient):
    r = _apply(client, patient, op("replace", "Patient.deceased", valueDateTime="2020-02-02"))
    assert r.status_code == 200, r.text
    assert r.json()["deceasedDateTime"] == "2020-02-02" and "deceasedBoolean" not in r.json()
    r = _apply(client, {"ref": patient["ref"]}, op("delete", "Patient.deceased"),
               op("add", "Patient", name="deceased", valueBoolean=True))
    assert r.status_code == 200, r.text
    assert r.json()["deceasedBoolean"] is True


def test_paths_with_index_first_last_and_where(client, patient):
    r = _apply(client, patient,
               op("replace", "Patient.name[0].given[1]", valueString="Quinn"),
               op("replace", "Patient.identifier.last().value", valueString="z"),
               op("replace", f"Patient.identifier.where(system = '{patient['system']}').value", valueString="y"))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["name"][0]["given"] == ["Jane", "Quinn", "X"]
    assert body["identifier"] == [{"system": patient["system"], "value": "y"}, {"system": "urn:other", "value": "z"}]


BAD = {
    "not Parameters": {"resourceType": "Patient"},
    "a parameter that is not an operation": {"resourceType": "Parameters", "parameter": [{"name": "op"}]},
    "no type": parameters({"name": "operation", "part": [{"name": "path", "valueString": "Patient.active"}]}),
    "no path": parameters({"name": "operation", "part": [{"name": "type", "valueCode": "delete"}]}),
    "unknown type": parameters(op("frobnicate", "Patient.active")),
    "add without name": parameters(op("add", "Patient", valueCode="male")),
    "replace without value": parameters(op("replace", "Patient.active")),
    "path of another type": parameters(op("replace", "Observation.status", valueCode="final")),
    "path beyond the supported subset": parameters(op("delete", "Patient.name.given.exists()")),
    "where that is not a comparison": parameters(op("delete", "Patient.identifier.where(value.exists())")),
}


@pytest.mark.parametrize("name", list(BAD))
def test_a_bad_patch_document_is_400(client, patient, name):
    assert_error(fhirpath_patch(client, f"/{patient['ref']}", BAD[name]), 400)
    unchanged(client, patient["ref"], patient["stored"])


@pytest.mark.parametrize("operation", [
    op("replace", "Patient.gender", valueCode="male"),
    op("replace", "Patient.identifier.value", valueString="two matches"),
    op("delete", "Patient.identifier"),
    op("add", "Patient.contact", name="gender", valueCode="male"),
    op("insert", "Patient.name[0].given", index=9, valueString="far"),
    op("move", "Patient.name[0].given", source=0, destination=7),
    op("insert", "Patient.name[0].given", index=-1, valueString="negative"),
], ids=["replace missing", "replace several", "delete several", "add under missing", "insert out of range",
        "move out of range", "negative index"])
def test_a_patch_that_cannot_be_applied_is_422(client, patient, operation):
    assert_error(fhirpath_patch(client, f"/{patient['ref']}", parameters(operation)), 422)
    unchanged(client, patient["ref"], patient["stored"])


@pytest.mark.parametrize("operation, where", [
    (op("add", "Patient", name="colour", valueString="blue"), "Patient.colour"),
    (op("replace", "Patient.birthDate", valueString="yesterday"), "Patient.birthDate"),
    (op("replace", "Patient.active", valueString="yes"), "Patient.active"),
    (op("delete", "Patient.name[0].family"), None),  # still valid: a name with given only
], ids=["unknown element", "bad date", "wrong type", "valid"])
def test_the_result_is_validated_whole(client, patient, operation, where):
    r = fhirpath_patch(client, f"/{patient['ref']}", parameters(operation))
    if where is None:
        assert r.status_code == 200, r.text
        return
    assert_error(r, 422)
    assert any(e.startswith(where) for i in r.json()["issue"] for e in i.get("expression", [])), r.json()
    unchanged(client, patient["ref"], patient["stored"])


def test_a_later_operation_failing_undoes_the_earlier_ones(client, patient):
    r = _apply(client, patient, op("replace", "Patient.active", valueBoolean=False),
               op("replace", "Patient.gender", valueCode="male"))
    assert_error(r, 422)
    unchanged(client, patient["ref"], patient["stored"])


@pytest.mark.parametrize("operation", [
    op("replace", "Patient.id", valueId="another"),
    op("delete", "Patient.id"),
], ids=["replace id", "delete id"])
def test_changing_the_id_is_refused(client, patient, operation):
    assert_error(fhirpath_patch(client, f"/{patient['ref']}", parameters(operation)), (400, 422))
    unchanged(client, patient["ref"], patient["stored"])


def test_if_match_unknown_deleted_and_conditional(client, patient):
    ops = parameters(op("replace", "Patient.active", valueBoolean=False))
    assert_error(fhirpath_patch(client, f"/{patient['ref']}", ops, **{"If-Match": 'W/"1"'}), 412)
    unchanged(client, patient["ref"], patient["stored"])
    assert_error(fhirpath_patch(client, f"/Patient/{new_id('none')}", ops), 404)
    s = patient["system"]
    r = fhirpath_patch(client, f"/Patient?identifier={s}|a", ops, **{"If-Match": 'W/"2"'})
    assert r.status_code == 200 and r.json()["id"] == patient["id"], r.text
    assert_error(fhirpath_patch(client, f"/Patient?identifier={s}|none", ops), 404)
    other = client.post("/Patient", json={"resourceType": "Patient", "identifier": [{"system": s, "value": "a"}]})
    assert other.status_code == 201
    assert_error(fhirpath_patch(client, f"/Patient?identifier={s}|a", ops), 412)
    assert client.delete(f"/{patient['ref']}").status_code in (200, 204)
    assert_error(fhirpath_patch(client, f"/{patient['ref']}", ops), 410)
    # with the deleted one gone from searches, the condition matches one again
    r = fhirpath_patch(client, f"/Patient?identifier={s}|a", parameters(op("add", "Patient", name="gender",
                                                                          valueCode="unknown")))
    assert r.status_code == 200 and r.json()["id"] == other.json()["id"], r.text
    assert r.json()["gender"] == "unknown"
