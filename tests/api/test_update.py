"""update: PUT [base]/[type]/[id], update-as-create, If-Match (FHIR R4 http.html#update, #concurrency)."""

from __future__ import annotations

import pytest

from .support import FHIR_JSON_UTF8, assert_outcome, etag_version, new_id, patient


def _history_total(client, type_, id_):
    r = client.get(f"/{type_}/{id_}/_history")
    return r.json()["total"] if r.status_code == 200 else r.status_code


def test_update_as_create_with_client_id(client, base_url):
    id_ = new_id("upd")
    r = client.put(f"/Patient/{id_}", json=patient(id_, gender="other"))
    assert r.status_code == 201, r.text
    assert r.headers["location"] == f"{base_url}/Patient/{id_}/_history/1"
    assert r.headers["etag"] == 'W/"1"'
    assert r.headers["content-type"] == FHIR_JSON_UTF8
    assert "last-modified" in r.headers
    body = r.json()
    assert body["id"] == id_ and body["meta"]["versionId"] == "1" and body["gender"] == "other"
    assert client.get(f"/Patient/{id_}").json() == body


def test_update_existing_makes_the_next_version(client):
    id_ = new_id("upd")
    v1 = client.put(f"/Patient/{id_}", json=patient(id_, gender="male"))
    v2 = client.put(f"/Patient/{id_}", json=patient(id_, gender="female", meta={"tag": [{"code": "x"}]}))
    assert v2.status_code == 200, v2.text
    assert v2.headers["etag"] == 'W/"2"'
    body = v2.json()
    assert body["meta"]["versionId"] == "2"
    assert body["meta"]["tag"] == [{"code": "x"}]
    assert body["meta"]["lastUpdated"] > v1.json()["meta"]["lastUpdated"]
    assert body["gender"] == "female"
    assert client.get(f"/Patient/{id_}").json() == body
    assert client.get(f"/Patient/{id_}/_history/1").json() == v1.json()
    # an update replaces the whole resource: nothing of version 1 that version 2 lacks survives
    v3 = client.put(f"/Patient/{id_}", json=patient(id_))
    assert v3.status_code == 200
    assert set(v3.json()) == {"resourceType", "id", "meta"}
    assert v3.json()["meta"] == {"versionId": "3", "lastUpdated": v3.json()["meta"]["lastUpdated"]}


def test_update_ignores_client_version_and_last_updated(client):
    id_ = new_id("upd")
    r = client.put(f"/Patient/{id_}", json=patient(id_, meta={"versionId": "7", "lastUpdated": "2000-01-01T00:00:00Z"}))
    assert r.status_code == 201
    assert r.json()["meta"]["versionId"] == "1"
    assert not r.json()["meta"]["lastUpdated"].startswith("2000")


def test_update_body_id_must_match_url(client):
    id_ = new_id("upd")
    assert client.put(f"/Patient/{id_}", json=patient(id_, active=True)).status_code == 201
    r = client.put(f"/Patient/{id_}", json=patient("another-id", active=False))
    assert_outcome(r, 400, expression="Patient.id")
    current = client.get(f"/Patient/{id_}")
    assert etag_version(current) == "1" and current.json()["active"] is True
    assert_outcome(client.get("/Patient/another-id"), 404)


def test_update_without_body_id_is_400(client):
    id_ = new_id("upd")
    r = client.put(f"/Patient/{id_}", json=patient(active=True))
    assert_outcome(r, 400, "required", expression="Patient.id")
    assert_outcome(client.get(f"/Patient/{id_}"), 404)


def test_update_resource_type_mismatch_is_400(client):
    id_ = new_id("upd")
    r = client.put(f"/Patient/{id_}", json={"resourceType": "Practitioner", "id": id_})
    assert_outcome(r, 400, "invalid", expression="resourceType")
    assert_outcome(client.get(f"/Patient/{id_}"), 404)
    assert_outcome(client.get(f"/Practitioner/{id_}"), 404)


@pytest.mark.parametrize("bad", ["bad$id", "a" * 65, "has space", "under_score"])
def test_update_bad_url_id_is_400(client, bad):
    r = client.put(f"/Patient/{bad}", json=patient(bad))
    assert_outcome(r, 400, "value")


def test_update_id_of_64_chars_is_fine(client):
    id_ = new_id("x")[:2] + "A.b-" + "9" * 58
    assert len(id_) == 64
    r = client.put(f"/Patient/{id_}", json=patient(id_))
    assert r.status_code == 201, r.text
    assert client.get(f"/Patient/{id_}").json()["id"] == id_


def test_if_match_current_version_updates(client):
    id_ = new_id("ifm")
    client.put(f"/Patient/{id_}", json=patient(id_, active=True))
    for sent, expect in (('W/"1"', "2"), ('"2"', "3"), ("3", "4")):
        r = client.put(f"/Patient/{id_}", json=patient(id_, active=True), headers={"If-Match": sent})
        assert r.status_code == 200, (sent, r.text)
        assert r.headers["etag"] == f'W/"{expect}"'


def test_if_match_stale_version_is_412_and_nothing_changes(client):
    id_ = new_id("ifm")
    client.put(f"/Patient/{id_}", json=patient(id_, active=True))
    client.put(f"/Patient/{id_}", json=patient(id_, active=True))
    r = client.put(f"/Patient/{id_}", json=patient(id_, active=False), headers={"If-Match": 'W/"1"'})
    assert_outcome(r, 412, "conflict")
    current = client.get(f"/Patient/{id_}")
    assert etag_version(current) == "2" and current.json()["active"] is True
    assert _history_total(client, "Patient", id_) == 2


def test_if_match_on_a_resource_that_does_not_exist_is_412(client):
    id_ = new_id("ifm")
    r = client.put(f"/Patient/{id_}", json=patient(id_), headers={"If-Match": 'W/"1"'})
    assert_outcome(r, 412)
    assert_outcome(client.get(f"/Patient/{id_}"), 404)


def test_if_match_star_on_an_existing_resource_updates(client):
    id_ = new_id("ifm")
    client.put(f"/Patient/{id_}", json=patient(id_))
    r = client.put(f"/Patient/{id_}", json=patient(id_, active=True), headers={"If-Match": "*"})
    assert r.status_code == 200, r.text
    assert r.headers["etag"] == 'W/"2"'


def test_if_match_that_is_not_an_etag_is_400(client):
    id_ = new_id("ifm")
    client.put(f"/Patient/{id_}", json=patient(id_))
    r = client.put(f"/Patient/{id_}", json=patient(id_), headers={"If-Match": 'W/"1" junk'})
    assert_outcome(r, 400, "value")
    assert etag_version(client.get(f"/Patient/{id_}")) == "1"


def test_update_prefer_return(client):
    id_ = new_id("pref")
    client.put(f"/Patient/{id_}", json=patient(id_))
    minimal = client.put(f"/Patient/{id_}", json=patient(id_, active=True), headers={"Prefer": "return=minimal"})
    assert minimal.status_code == 200
    assert minimal.content == b""
    assert minimal.headers["etag"] == 'W/"2"'
    rep = client.put(f"/Patient/{id_}", json=patient(id_, active=False), headers={"Prefer": "return=representation"})
    assert rep.status_code == 200 and rep.json()["active"] is False and rep.json()["meta"]["versionId"] == "3"
    oo = client.put(f"/Patient/{id_}", json=patient(id_), headers={"Prefer": "return=OperationOutcome"})
    outcome = assert_outcome(oo, 200, "informational", severity="information")
    assert f"Patient/{id_}" in outcome["issue"][0]["diagnostics"]
    assert oo.headers["etag"] == 'W/"4"'
    created = client.put(f"/Patient/{new_id('pref')}", json=None, headers={"Prefer": "return=minimal"})
    assert_outcome(created, 400, "required")
    new = new_id("pref")
    created = client.put(f"/Patient/{new}", json=patient(new), headers={"Prefer": "return=minimal"})
    assert created.status_code == 201 and created.content == b""
    assert created.headers["location"].endswith(f"/Patient/{new}/_history/1")


def test_update_r4_only_type(client):
    id_ = new_id("mp")
    r = client.put(f"/MedicinalProduct/{id_}", json={"resourceType": "MedicinalProduct", "id": id_,
                                                      "name": [{"productName": "Aspirin"}]})
    assert r.status_code == 201, r.text
    r = client.put(f"/MedicinalProduct/{id_}", json={"resourceType": "MedicinalProduct", "id": id_,
                                                      "name": [{"productName": "Aspirin 100 mg"}]})
    assert r.status_code == 200 and r.json()["name"][0]["productName"] == "Aspirin 100 mg"
