"""One router for every URL form: `[base]` and `[base]/` alike for every method (some clients
write the slash, and a redirect breaks a POST), bundle entries routed like HTTP requests, and a
request id that follows each request into the server's log."""

from __future__ import annotations

import re
import time

import pytest

from .support import assert_outcome, identifier_system, new_id, patient


def test_a_transaction_posted_to_the_base_with_a_slash_is_processed(client):
    system = identifier_system()
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:1", "resource": patient(identifier=[{"system": system, "value": "1"}]),
         "request": {"method": "POST", "url": "Patient/"}}]}
    r = client.post("/", json=bundle, follow_redirects=False)
    assert r.status_code == 200, r.text
    assert r.json()["entry"][0]["response"]["status"] == "201 Created"
    assert client.get("/Patient", params={"identifier": f"{system}|1"}).json()["total"] == 1


@pytest.mark.parametrize("path", ["/", "/?_type=Patient"])
def test_system_search_with_a_slash(client, path):
    r = client.get(path, follow_redirects=False)
    assert r.status_code in (200, 400), r.text
    if "_type" in path:
        assert r.status_code == 200 and r.json()["type"] == "searchset"


def test_type_and_instance_urls_with_a_slash(client):
    id_ = new_id()
    created = client.post("/Patient/", json=patient(name=[{"family": "Slash"}]), follow_redirects=False)
    assert created.status_code == 201, created.text
    put = client.put(f"/Patient/{id_}/", json=patient(id_), follow_redirects=False)
    assert put.status_code == 201, put.text
    assert client.get(f"/Patient/{id_}/", follow_redirects=False).json()["id"] == id_
    assert client.get(f"/Patient/{id_}/_history/", follow_redirects=False).json()["type"] == "history"
    assert client.get("/Patient/", params={"_id": id_}, follow_redirects=False).json()["total"] == 1
    assert client.get("/metadata/", follow_redirects=False).json()["resourceType"] == "CapabilityStatement"
    deleted = client.delete(f"/Patient/{id_}/", follow_redirects=False)
    assert deleted.status_code in (200, 204)


def test_a_url_that_names_no_interaction_is_404(client):
    assert_outcome(client.get("/Patient/1/_history/1/extra"), 404, "not-found")


def test_bundle_entries_go_through_the_same_router(client):
    bundle = {"resourceType": "Bundle", "type": "batch", "entry": [
        {"request": {"method": "GET", "url": "NotAType/1"}},
        {"request": {"method": "DELETE", "url": "Patient/_history"}},
        {"request": {"method": "GET", "url": "Patient/$nonsense"}},
        {"request": {"method": "GET", "url": "metadata"}}]}
    entries = client.post("", json=bundle).json()["entry"]
    assert [e["response"]["status"] for e in entries] == ["404", "405", "404", "200 OK"]
    assert entries[3]["resource"]["resourceType"] == "CapabilityStatement"


def test_the_request_id_is_kept_or_made_and_returned(client):
    given = client.get("/metadata", headers={"X-Request-Id": "ehr-42.abc"})
    assert given.headers["x-request-id"] == "ehr-42.abc"
    made = client.get("/metadata")
    assert re.fullmatch(r"[0-9a-f]{32}", made.headers["x-request-id"])
    odd = client.get("/metadata", headers={"X-Request-Id": "not a token\tat all" + "x" * 300})
    assert re.fullmatch(r"[0-9a-f]{32}", odd.headers["x-request-id"])
    error = client.get("/Patient/does-not-exist-" + new_id(), headers={"X-Request-Id": "ehr-404"})
    assert error.status_code == 404 and error.headers["x-request-id"] == "ehr-404"


def test_one_log_line_per_request(client, server):
    marker = "log-" + new_id()
    id_ = new_id()
    client.get(f"/Patient/{id_}", params={"identifier": "secret-ins"}, headers={"X-Request-Id": marker})
    deadline = time.monotonic() + 10
    while marker not in server.log() and time.monotonic() < deadline:
        time.sleep(0.1)
    lines = [line for line in server.log().splitlines() if marker in line]
    assert len(lines) == 1, lines
    assert re.search(rf"GET /fhir/Patient/{id_} 404 [0-9.]+ms id={marker}$", lines[0]), lines[0]
    assert "secret-ins" not in lines[0]
