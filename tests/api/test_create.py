"""create: POST [base]/[type] (FHIR R4 http.html#create)."""

from __future__ import annotations

from datetime import datetime

from .support import (
    FHIR_JSON_UTF8,
    INSTANT_RE,
    assert_outcome,
    body_of,
    etag_version,
    exact,
    http_date,
    new_id,
    patient,
)


def test_create_returns_201_with_location_etag_and_last_modified(client, base_url):
    sent = patient(name=[{"family": "Durand", "given": ["Anne"]}], gender="female", birthDate="1970-01-02")
    r = client.post("/Patient", json=sent)
    assert r.status_code == 201, r.text
    assert r.headers["content-type"] == FHIR_JSON_UTF8
    body = r.json()
    id_ = body["id"]
    assert r.headers["location"] == f"{base_url}/Patient/{id_}/_history/1"
    assert r.headers["etag"] == 'W/"1"'
    assert body["meta"]["versionId"] == "1"
    last_updated = body["meta"]["lastUpdated"]
    assert INSTANT_RE.match(last_updated), last_updated
    # Last-Modified is meta.lastUpdated at HTTP-date (second) precision
    lu = datetime.fromisoformat(last_updated.replace("Z", "+00:00"))
    assert http_date(r.headers["last-modified"]) == lu.replace(microsecond=0)
    # everything the client sent is there, unchanged
    assert {k: v for k, v in body.items() if k not in ("id", "meta")} == {
        k: v for k, v in sent.items()}


def test_create_ignores_the_body_id_and_assigns_a_new_one(client):
    own = new_id("client")
    first = client.post("/Patient", json=patient(own, active=True))
    second = client.post("/Patient", json=patient(own, active=True))
    assert first.status_code == second.status_code == 201
    assert first.json()["id"] != own and second.json()["id"] != own
    assert first.json()["id"] != second.json()["id"]
    assert_outcome(client.get(f"/Patient/{own}"), 404, "not-found")
    got = client.get(f"/Patient/{first.json()['id']}")
    assert got.status_code == 200 and got.json() == first.json()


def test_create_sets_server_meta_and_keeps_client_meta(client):
    meta = {
        "versionId": "42", "lastUpdated": "2001-01-01T00:00:00Z",
        "source": "urn:test:source",
        "profile": ["http://example.org/StructureDefinition/my-patient"],
        "security": [{"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R"}],
        "tag": [{"system": "urn:test:tags", "code": "t1", "display": "Tag one"}],
    }
    r = client.post("/Patient", json=patient(meta=meta))
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["meta"]["versionId"] == "1"
    assert body["meta"]["lastUpdated"] != "2001-01-01T00:00:00Z"
    assert not body["meta"]["lastUpdated"].startswith("2001")
    for key in ("source", "profile", "security", "tag"):
        assert body["meta"][key] == meta[key], key
    assert set(body["meta"]) == {"versionId", "lastUpdated", "source", "profile", "security", "tag"}
    assert client.get(f"/Patient/{body['id']}").json() == body


def test_create_accepts_application_json(client):
    r = client.post("/Patient", content=b'{"resourceType":"Patient","active":false}',
                    headers={"Content-Type": "application/json"})
    assert r.status_code == 201, r.text
    assert r.json()["active"] is False


def test_create_with_prefer_return(client, base_url):
    minimal = client.post("/Patient", json=patient(active=True), headers={"Prefer": "return=minimal"})
    assert minimal.status_code == 201
    assert minimal.content == b""
    assert minimal.headers["etag"] == 'W/"1"'
    location = minimal.headers["location"]
    assert location.startswith(f"{base_url}/Patient/") and location.endswith("/_history/1")
    id_ = location[len(f"{base_url}/Patient/"):-len("/_history/1")]
    stored = client.get(f"/Patient/{id_}")
    assert stored.status_code == 200 and stored.json()["active"] is True

    rep = client.post("/Patient", json=patient(active=True), headers={"Prefer": "return=representation"})
    assert rep.status_code == 201
    assert rep.json()["resourceType"] == "Patient" and rep.json()["active"] is True
    assert rep.json() == client.get(f"/Patient/{rep.json()['id']}").json()

    oo = client.post("/Patient", json=patient(active=True), headers={"Prefer": "return=OperationOutcome"})
    assert_outcome(oo, 201, "informational", severity="information")
    assert oo.headers["etag"] == 'W/"1"'
    assert oo.headers["location"].endswith("/_history/1")


def test_create_keeps_decimal_precision(client):
    raw = (b'{"resourceType":"Observation","status":"final","code":{"text":"weight"},'
           b'"valueQuantity":{"value":1.50,"unit":"kg"},"referenceRange":[{"low":{"value":0.100}}]}')
    r = client.post("/Observation", content=raw, headers={"Content-Type": "application/fhir+json"})
    assert r.status_code == 201, r.text
    assert b'"value":1.50' in r.content and b'"value":0.100' in r.content
    got = client.get(f"/Observation/{r.json()['id']}")
    assert got.status_code == 200
    assert b'"valueQuantity":{"value":1.50,"unit":"kg"}' in got.content
    assert b'"low":{"value":0.100}' in got.content
    assert exact(body_of(got)["valueQuantity"]) == {"value": ("decimal", "1.50"), "unit": "kg"}
    # _pretty re-indents without losing the decimal text either
    pretty = client.get(f"/Observation/{r.json()['id']}", params={"_pretty": "true"})
    assert b'"value": 1.50' in pretty.content


def test_create_r4_only_type(client):
    r = client.post("/MedicinalProduct", json={"resourceType": "MedicinalProduct",
                                               "name": [{"productName": "Paracetamol 500 mg"}]})
    assert r.status_code == 201, r.text
    assert client.get(f"/MedicinalProduct/{r.json()['id']}").json() == r.json()


def test_create_without_body_is_400(client):
    assert_outcome(client.post("/Patient", headers={"Content-Type": "application/fhir+json"}), 400, "required")


def test_create_unknown_type_is_404(client):
    assert_outcome(client.post("/Patientx", json={"resourceType": "Patientx"}), 404)


def test_create_each_call_makes_a_new_resource(client):
    ids = {client.post("/Patient", json=patient()).json()["id"] for _ in range(3)}
    assert len(ids) == 3
    for id_ in ids:
        r = client.get(f"/Patient/{id_}")
        assert r.status_code == 200 and etag_version(r) == "1"
