"""JSON Patch (RFC 6902, application/json-patch+json) on PATCH [type]/[id] and [type]?query:
success, Prefer, If-Match, and every error path — with nothing stored when it fails."""

from __future__ import annotations

import pytest

from .support import (
    JSON_PATCH,
    assert_error,
    history_versions,
    json_patch,
    new_id,
    put,
    read,
    search_ids,
    system,
    unchanged,
)


@pytest.fixture
def patient(client):
    s = system()
    id_ = new_id("jp")
    put(client, {"resourceType": "Patient", "id": id_, "active": True,
                 "identifier": [{"system": s, "value": "a"}],
                 "name": [{"family": "Doe", "given": ["Jane", "Q"]}], "birthDate": "1970-01-01"})
    stored = put(client, {"resourceType": "Patient", "id": id_, "active": True,
                          "identifier": [{"system": s, "value": "a"}],
                          "name": [{"family": "Doe", "given": ["Jane", "Q"]}], "birthDate": "1970-01-01"})
    return {"ref": f"Patient/{id_}", "id": id_, "system": s, "stored": stored}


def test_every_operation(client, patient):
    s = patient["system"]
    ops = [
        {"op": "test", "path": "/active", "value": True},
        {"op": "replace", "path": "/active", "value": False},
        {"op": "add", "path": "/identifier/-", "value": {"system": s, "value": "b"}},
        {"op": "remove", "path": "/identifier/0"},
        {"op": "add", "path": "/gender", "value": "female"},
        {"op": "copy", "from": "/name/0", "path": "/name/-"},
        {"op": "move", "from": "/name/1/given/1", "path": "/name/1/given/0"},
        {"op": "remove", "path": "/birthDate"},
        {"op": "test", "path": "/name/1/given", "value": ["Q", "Jane"]},
    ]
    r = json_patch(client, f"/{patient['ref']}", ops)
    assert r.status_code == 200, r.text
    assert r.headers["etag"] == 'W/"3"'
    assert r.headers.get("last-modified")
    body = r.json()
    assert body["meta"]["versionId"] == "3"
    assert body["active"] is False and body["gender"] == "female" and "birthDate" not in body
    assert body["identifier"] == [{"system": s, "value": "b"}]
    assert body["name"] == [{"family": "Doe", "given": ["Jane", "Q"]}, {"family": "Doe", "given": ["Q", "Jane"]}]
    assert read(client, patient["ref"]) == body
    assert history_versions(client, patient["ref"]) == [1, 2, 3]
    history = client.get(f"/{patient['ref']}/_history").json()
    newest = max(history["entry"], key=lambda e: int(e["resource"]["meta"]["versionId"]))
    assert newest["request"]["method"] == "PATCH"
    # search values are recomputed from the patched resource
    assert search_ids(client, "Patient", identifier=f"{s}|b") == [patient["id"]]
    assert search_ids(client, "Patient", identifier=f"{s}|a") == []


@pytest.mark.parametrize("prefer", ["return=minimal", "return=OperationOutcome", "return=representation"])
def test_prefer(client, patient, prefer):
    r = json_patch(client, f"/{patient['ref']}", [{"op": "replace", "path": "/active", "value": False}],
                   Prefer=prefer)
    assert r.status_code == 200 and r.headers["etag"] == 'W/"3"', r.text
    if prefer == "return=minimal":
        assert r.content == b""
    elif prefer == "return=OperationOutcome":
        assert r.json()["resourceType"] == "OperationOutcome"
    else:
        assert r.json()["active"] is False


def test_if_match(client, patient):
    ops = [{"op": "replace", "path": "/active", "value": False}]
    text = assert_error(json_patch(client, f"/{patient['ref']}", ops, **{"If-Match": 'W/"1"'}), 412)
    assert "2" in text, text
    unchanged(client, patient["ref"], patient["stored"])
    assert_error(json_patch(client, f"/{patient['ref']}", ops, **{"If-Match": 'W/"not a version"'}), 400)
    unchanged(client, patient["ref"], patient["stored"])
    r = json_patch(client, f"/{patient['ref']}", ops, **{"If-Match": 'W/"2"'})
    assert r.status_code == 200 and r.headers["etag"] == 'W/"3"', r.text


BAD_DOCUMENTS = {
    "not JSON": b'[{"op": "replace", "path": "/active", ',
    "an object, not an array": b'{"op": "replace", "path": "/active", "value": false}',
    "a string": b'"replace"',
    "unknown op": b'[{"op": "frobnicate", "path": "/active", "value": false}]',
    "no op": b'[{"path": "/active", "value": false}]',
    "no path": b'[{"op": "remove"}]',
    "no value": b'[{"op": "replace", "path": "/active"}]',
    "no from": b'[{"op": "move", "path": "/active"}]',
    "operation not an object": b'[["replace", "/active", false]]',
    "empty body": b"",
}


@pytest.mark.parametrize("name", list(BAD_DOCUMENTS))
def test_a_bad_patch_document_is_400(client, patient, name):
    assert_error(json_patch(client, f"/{patient['ref']}", BAD_DOCUMENTS[name]), 400)
    unchanged(client, patient["ref"], patient["stored"])


def test_a_malformed_pointer_is_a_bad_document(client, patient):
    assert_error(json_patch(client, f"/{patient['ref']}", [{"op": "remove", "path": "active"}]), 400)


def test_a_failing_test_operation_is_422(client, patient):
    ops = [{"op": "replace", "path": "/active", "value": False}, {"op": "test", "path": "/active", "value": True}]
    text = assert_error(json_patch(client, f"/{patient['ref']}", ops), 422)
    assert "test" in text.lower(), text
    unchanged(client, patient["ref"], patient["stored"])


@pytest.mark.parametrize("ops", [
    [{"op": "replace", "path": "/gender", "value": "male"}],
    [{"op": "remove", "path": "/telecom"}],
    [{"op": "remove", "path": "/name/5"}],
    [{"op": "add", "path": "/contact/0/name", "value": {"family": "X"}}],
    [{"op": "move", "from": "/deceasedBoolean", "path": "/active"}],
    [{"op": "test", "path": "/multipleBirthInteger", "value": 2}],
], ids=["replace", "remove", "remove index", "add under missing parent", "move from missing", "test missing"])
def test_a_path_that_is_not_there_is_422(client, patient, ops):
    assert_error(json_patch(client, f"/{patient['ref']}", ops), 422)
    unchanged(client, patient["ref"], patient["stored"])


@pytest.mark.parametrize("ops, where", [
    ([{"op": "add", "path": "/colour", "value": "blue"}], "Patient.colour"),
    ([{"op": "replace", "path": "/birthDate", "value": "yesterday"}], "Patient.birthDate"),
    ([{"op": "replace", "path": "/active", "value": "yes"}], "Patient.active"),
    ([{"op": "replace", "path": "/name", "value": []}], "Patient.name"),
    ([{"op": "replace", "path": "/name/0/family", "value": ""}], "Patient.name[0].family"),
    ([{"op": "replace", "path": "/name", "value": {"family": "Single"}}], "Patient.name"),
    ([{"op": "add", "path": "/contained", "value": [{"resourceType": "Basic"}]}], "Patient.contained"),
], ids=["unknown element", "bad date", "wrong type", "empty array", "empty string", "object for a list",
        "invalid contained"])
def test_an_invalid_result_is_422_and_nothing_is_stored(client, patient, ops, where):
    response = json_patch(client, f"/{patient['ref']}", ops)
    assert_error(response, 422)
    expressions = [e for i in response.json()["issue"] for e in i.get("expression", [])]
    assert any(e.startswith(where) for e in expressions), response.json()
    unchanged(client, patient["ref"], patient["stored"])


@pytest.mark.parametrize("ops", [
    [{"op": "replace", "path": "/id", "value": "another"}],
    [{"op": "remove", "path": "/id"}],
    [{"op": "replace", "path": "/resourceType", "value": "Group"}],
], ids=["replace id", "remove id", "change resourceType"])
def test_changing_the_id_or_type_is_refused(client, patient, ops):
    assert_error(json_patch(client, f"/{patient['ref']}", ops), (400, 422))
    unchanged(client, patient["ref"], patient["stored"])


def test_server_owned_meta_cannot_be_patched(client, patient):
    ops = [{"op": "replace", "path": "/meta", "value": {"versionId": "99", "lastUpdated": "2000-01-01T00:00:00Z",
                                                       "tag": [{"system": "urn:t", "code": "kept"}]}}]
    r = json_patch(client, f"/{patient['ref']}", ops)
    assert r.status_code == 200, r.text
    meta = r.json()["meta"]
    assert meta["versionId"] == "3" and meta["lastUpdated"] != "2000-01-01T00:00:00Z"
    assert meta["tag"] == [{"system": "urn:t", "code": "kept"}]


def test_unknown_deleted_and_malformed_targets(client, patient):
    ops = [{"op": "replace", "path": "/active", "value": False}]
    assert_error(json_patch(client, f"/Patient/{new_id('none')}", ops), 404)
    assert client.get(f"/Patient/{new_id('none')}").status_code == 404
    assert client.delete(f"/{patient['ref']}").status_code in (200, 204)
    text = assert_error(json_patch(client, f"/{patient['ref']}", ops), 410)
    assert patient["id"] in text
    assert history_versions(client, patient["ref"]) == [1, 2, 3]  # the deletion is the last version
    assert_error(json_patch(client, "/Patient/bad$id", ops), 400)
    assert_error(json_patch(client, "/NoSuchType/x", ops), 404)


@pytest.mark.parametrize("content_type", ["text/plain", "application/xml-patch+xml", "application/fhir+xml"])
def test_unsupported_patch_formats_are_415(client, patient, content_type):
    r = client.patch(f"/{patient['ref']}", content=b'[{"op": "remove", "path": "/active"}]',
                     headers={"Content-Type": content_type})
    assert_error(r, 415)
    unchanged(client, patient["ref"], patient["stored"])


# -- conditional patch -----------------------------------------------------------------------------
def test_conditional_patch_with_zero_one_and_two_matches(client):
    s = system()
    ops = [{"op": "add", "path": "/gender", "value": "other"}]
    assert_error(json_patch(client, f"/Patient?identifier={s}|x", ops), 404)
    assert search_ids(client, "Patient", identifier=f"{s}|x") == []  # no create either
    one = client.post("/Patient", json={"resourceType": "Patient", "identifier": [{"system": s, "value": "x"}]})
    assert one.status_code == 201
    r = json_patch(client, f"/Patient?identifier={s}|x", ops)
    assert r.status_code == 200, r.text
    assert r.json()["id"] == one.json()["id"] and r.json()["gender"] == "other"
    assert r.headers["etag"] == 'W/"2"'
    assert_error(json_patch(client, f"/Patient?identifier={s}|x", ops, **{"If-Match": 'W/"1"'}), 412)
    two = client.post("/Patient", json={"resourceType": "Patient", "identifier": [{"system": s, "value": "x"}]})
    assert two.status_code == 201
    text = assert_error(json_patch(client, f"/Patient?identifier={s}|x", [{"op": "remove", "path": "/gender"}]), 412)
    assert "2" in text
    assert read(client, f"Patient/{one.json()['id']}")["gender"] == "other"
    assert "gender" not in read(client, f"Patient/{two.json()['id']}")


@pytest.mark.parametrize("query", ["", "?no-such-parameter=1", "?_count=10"])
def test_conditional_patch_needs_a_real_condition(client, query):
    text = assert_error(json_patch(client, f"/Patient{query}", [{"op": "remove", "path": "/active"}]), 400)
    assert text


def test_json_patch_content_type_with_parameters(client, patient):
    r = client.patch(f"/{patient['ref']}", content=b'[{"op": "replace", "path": "/active", "value": false}]',
                     headers={"Content-Type": f"{JSON_PATCH}; charset=utf-8"})
    assert r.status_code == 200 and r.json()["active"] is False, r.text
