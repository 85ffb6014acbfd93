"""read and vread (FHIR R4 http.html#read, #vread), with the conditional read headers."""

from __future__ import annotations

from datetime import timedelta
from email.utils import format_datetime

import httpx
import pytest

from .support import FHIR_JSON_UTF8, assert_outcome, http_date, new_id, patient


@pytest.fixture
def two_versions(client):
    """Patient/<id> at version 2 (version 1: active=true, version 2: active=false)."""
    id_ = new_id("read")
    v1 = client.put(f"/Patient/{id_}", json=patient(id_, active=True))
    v2 = client.put(f"/Patient/{id_}", json=patient(id_, active=False))
    assert (v1.status_code, v2.status_code) == (201, 200)
    return id_, v1, v2


def test_read_returns_the_current_version(client, two_versions):
    id_, _, v2 = two_versions
    r = client.get(f"/Patient/{id_}")
    assert r.status_code == 200
    assert r.headers["content-type"] == FHIR_JSON_UTF8
    assert r.headers["etag"] == 'W/"2"'
    assert r.headers["last-modified"] == v2.headers["last-modified"]
    assert r.json() == v2.json()
    assert r.json()["meta"]["versionId"] == "2" and r.json()["active"] is False


def test_read_unknown_is_404(client):
    assert_outcome(client.get(f"/Patient/{new_id('nobody')}"), 404, "not-found")


def test_read_of_a_type_the_server_does_not_know_is_404(client):
    assert_outcome(client.get("/NotAType/123"), 404, "not-supported")


def test_vread_each_version(client, two_versions):
    id_, v1, v2 = two_versions
    r1 = client.get(f"/Patient/{id_}/_history/1")
    assert r1.status_code == 200 and r1.headers["etag"] == 'W/"1"'
    assert r1.headers["content-type"] == FHIR_JSON_UTF8
    assert r1.json() == v1.json() and r1.json()["active"] is True
    assert r1.headers["last-modified"] == v1.headers["last-modified"]
    r2 = client.get(f"/Patient/{id_}/_history/2")
    assert r2.status_code == 200 and r2.headers["etag"] == 'W/"2"' and r2.json() == v2.json()


def test_vread_unknown_version_is_404(client, two_versions):
    id_, _, _ = two_versions
    assert_outcome(client.get(f"/Patient/{id_}/_history/3"), 404, "not-found")
    assert_outcome(client.get(f"/Patient/{id_}/_history/999999"), 404, "not-found")
    assert_outcome(client.get(f"/Patient/{new_id('nobody')}/_history/1"), 404, "not-found")


@pytest.mark.parametrize("vid", ["0", "x", "-1", "1.0"])
def test_vread_bad_version_id_is_400(client, two_versions, vid):
    id_, _, _ = two_versions
    assert_outcome(client.get(f"/Patient/{id_}/_history/{vid}"), 400, "value")


def test_head_answers_headers_without_body(client, two_versions):
    id_, _, v2 = two_versions
    r = client.head(f"/Patient/{id_}")
    assert r.status_code == 200
    assert r.content == b""
    assert r.headers["etag"] == 'W/"2"'
    assert r.headers["content-type"] == FHIR_JSON_UTF8
    assert int(r.headers["content-length"]) == len(client.get(f"/Patient/{id_}").content)
    assert_outcome(client.get(f"/Patient/{new_id('nobody')}"), 404)
    assert client.head(f"/Patient/{new_id('nobody')}").status_code == 404


def test_if_none_match_current_version_is_304_without_body(client, two_versions):
    id_, _, _ = two_versions
    for tag in ('W/"2"', '"2"', 'W/"1", W/"2"', "*"):
        r = client.get(f"/Patient/{id_}", headers={"If-None-Match": tag})
        assert r.status_code == 304, (tag, r.status_code)
        assert r.content == b""
        assert r.headers["etag"] == 'W/"2"'
    r = client.get(f"/Patient/{id_}", headers={"If-None-Match": 'W/"1"'})
    assert r.status_code == 200 and r.json()["meta"]["versionId"] == "2"


def test_if_none_match_on_vread(client, two_versions):
    id_, _, _ = two_versions
    r = client.get(f"/Patient/{id_}/_history/1", headers={"If-None-Match": 'W/"1"'})
    assert r.status_code == 304 and r.content == b""
    r = client.get(f"/Patient/{id_}/_history/1", headers={"If-None-Match": 'W/"2"'})
    assert r.status_code == 200 and r.json()["meta"]["versionId"] == "1"


def test_if_modified_since(client, two_versions):
    id_, _, v2 = two_versions
    last_modified = v2.headers["last-modified"]
    r = client.get(f"/Patient/{id_}", headers={"If-Modified-Since": last_modified})
    assert r.status_code == 304 and r.content == b""
    assert r.headers["etag"] == 'W/"2"'
    later = format_datetime(http_date(last_modified) + timedelta(days=1), usegmt=True)
    assert client.get(f"/Patient/{id_}", headers={"If-Modified-Since": later}).status_code == 304
    earlier = format_datetime(http_date(last_modified) - timedelta(seconds=1), usegmt=True)
    r = client.get(f"/Patient/{id_}", headers={"If-Modified-Since": earlier})
    assert r.status_code == 200 and r.json()["meta"]["versionId"] == "2"
    # an unreadable date is ignored (RFC 9110 §13.1.3)
    r = client.get(f"/Patient/{id_}", headers={"If-Modified-Since": "yesterday"})
    assert r.status_code == 200


def test_if_none_match_wins_over_if_modified_since(client, two_versions):
    id_, _, v2 = two_versions
    r = client.get(f"/Patient/{id_}", headers={"If-None-Match": 'W/"1"',
                                               "If-Modified-Since": v2.headers["last-modified"]})
    assert r.status_code == 200


def test_pretty_output_is_indented(client, two_versions):
    id_, _, v2 = two_versions
    compact = client.get(f"/Patient/{id_}")
    pretty = client.get(f"/Patient/{id_}", params={"_pretty": "true"})
    assert pretty.status_code == 200
    assert b"\n" not in compact.content
    assert pretty.content.startswith(b'{\n  "resourceType": "Patient",\n  "id": ')
    assert pretty.json() == compact.json()
    assert client.get(f"/Patient/{id_}", params={"_pretty": "false"}).content == compact.content


@pytest.mark.parametrize("fmt,content_type", [
    ("json", FHIR_JSON_UTF8),
    ("application/fhir+json", FHIR_JSON_UTF8),
    ("application/json", "application/json; charset=utf-8"),
])
def test_format_json(client, two_versions, fmt, content_type):
    id_, _, v2 = two_versions
    r = client.get(f"/Patient/{id_}", params={"_format": fmt})
    assert r.status_code == 200
    assert r.headers["content-type"] == content_type
    assert r.json() == v2.json()


@pytest.mark.parametrize("accept,content_type", [
    ("application/fhir+json", FHIR_JSON_UTF8),
    ("application/json", "application/json; charset=utf-8"),
    ("*/*", FHIR_JSON_UTF8),
    ("application/fhir+xml;q=0.9, application/fhir+json", FHIR_JSON_UTF8),
])
def test_accept_json(client, two_versions, accept, content_type):
    id_, _, _ = two_versions
    r = client.get(f"/Patient/{id_}", headers={"Accept": accept})
    assert r.status_code == 200
    assert r.headers["content-type"] == content_type


def test_read_without_accept_header_is_fhir_json(base_url, two_versions):
    id_, _, _ = two_versions
    r = httpx.get(f"{base_url}/Patient/{id_}", headers={"Accept": ""})
    assert r.status_code == 200 and r.headers["content-type"] == FHIR_JSON_UTF8


def test_the_same_id_in_two_types_is_two_resources(client):
    id_ = new_id("twin")
    p = client.put(f"/Patient/{id_}", json=patient(id_, active=True))
    o = client.put(f"/Observation/{id_}", json={"resourceType": "Observation", "id": id_, "status": "final",
                                                  "code": {"text": "x"}})
    assert (p.status_code, o.status_code) == (201, 201)
    assert client.get(f"/Patient/{id_}").json() == p.json()
    assert client.get(f"/Observation/{id_}").json() == o.json()
    client.delete(f"/Patient/{id_}")
    assert client.get(f"/Patient/{id_}").status_code == 410
    assert client.get(f"/Observation/{id_}").status_code == 200
    assert client.get(f"/Observation/{id_}/_history").json()["total"] == 1
