"""HTTP-level behaviour: formats, methods, URLs, ids, bodies. Every error is an OperationOutcome
served as application/fhir+json."""

from __future__ import annotations

import httpx
import pytest

from .support import FHIR_JSON_UTF8, assert_outcome, new_id, patient, start_server


@pytest.fixture(scope="module")
def existing(base_url):
    id_ = new_id("http")
    r = httpx.put(f"{base_url}/Patient/{id_}", json=patient(id_, active=True))
    assert r.status_code == 201
    return id_


# -- formats ----------------------------------------------------------------------------------

@pytest.mark.parametrize("accept", ["application/fhir+xml", "application/xml", "text/xml", "text/plain",
                                    "application/fhir+xml, application/xml;q=0.5"])
def test_unacceptable_accept_is_406(client, existing, accept):
    assert_outcome(client.get(f"/Patient/{existing}", headers={"Accept": accept}), 406, "not-supported")


@pytest.mark.parametrize("path", ["/metadata", "/Patient/{id}/_history", "/Patient/_history", "/_history",
                                  "/Patient/{id}/_history/1"])
def test_xml_accept_is_406_on_every_endpoint(client, existing, path):
    r = client.get(path.format(id=existing), headers={"Accept": "application/fhir+xml"})
    assert_outcome(r, 406, "not-supported")


@pytest.mark.parametrize("fmt", ["xml", "application/fhir+xml", "text/xml", "html", "ttl"])
def test_format_other_than_json_is_406(client, existing, fmt):
    assert_outcome(client.get(f"/Patient/{existing}", params={"_format": fmt}), 406, "not-supported")


def test_format_json_overrides_an_xml_accept(client, existing):
    r = client.get(f"/Patient/{existing}", params={"_format": "json"}, headers={"Accept": "application/fhir+xml"})
    assert r.status_code == 200 and r.headers["content-type"] == FHIR_JSON_UTF8


def test_406_on_write_stores_nothing(client):
    id_ = new_id("http")
    r = client.put(f"/Patient/{id_}", json=patient(id_), headers={"Accept": "application/fhir+xml"})
    assert_outcome(r, 406)
    assert_outcome(client.get(f"/Patient/{id_}"), 404)


# -- methods and URLs -------------------------------------------------------------------------

@pytest.mark.parametrize("method,path,allow", [
    ("POST", "/Patient/{id}", "DELETE, GET, PATCH, PUT, HEAD"),
    ("POST", "/Patient/{id}/_history", "GET, HEAD"),
    ("DELETE", "/Patient/{id}/_history", "GET, HEAD"),
    ("PUT", "/Patient/{id}/_history/1", "GET, HEAD"),
    ("DELETE", "/Patient/{id}/_history/1", "GET, HEAD"),
    ("POST", "/Patient/_history", "GET, HEAD"),
    ("PUT", "/_history", "GET, HEAD"),
])
def test_unsupported_method_is_405_with_allow(client, existing, method, path, allow):
    r = client.request(method, path.format(id=existing), json=patient(existing))
    assert_outcome(r, 405, "not-supported")
    assert r.headers["allow"] == allow
    assert client.get(f"/Patient/{existing}").json()["meta"]["versionId"] == "1"


def test_options_allow_header_is_truthful(client, existing):
    r = client.options(f"/Patient/{existing}")
    assert r.status_code in (200, 204, 405)
    assert {m.strip() for m in r.headers["allow"].split(",")} == {"GET", "HEAD", "PUT", "PATCH", "DELETE"}


@pytest.mark.parametrize("path", ["/Foo/1", "/Foo", "/Foo/_history", "/Foo/1/_history", "/Foo/1/_history/1",
                                  "/patient/1", "/PATIENT/1", "/Resource/1", "/DomainResource/1",
                                  "/HumanName/1"])
def test_unknown_resource_type_is_404(client, path):
    assert_outcome(client.get(path), 404, "not-supported")


def test_unknown_resource_type_on_write_is_404(client):
    assert_outcome(client.post("/Foo", json={"resourceType": "Foo"}), 404)
    assert_outcome(client.put("/Foo/1", json={"resourceType": "Foo", "id": "1"}), 404)
    assert_outcome(client.delete("/Foo/1"), 404)


def test_path_beyond_the_fhir_urls_is_404(client, existing):
    assert_outcome(client.get(f"/Patient/{existing}/_history/1/extra"), 404, "not-found")
    r = httpx.get(client.base_url.copy_with(path="/not-fhir/metadata"))
    assert_outcome(r, 404, "not-found")


@pytest.mark.parametrize("bad", ["bad$id", "a" * 65, "bad_id", "b@d", "é"])
def test_bad_ids_are_400(client, bad):
    assert_outcome(client.get(f"/Patient/{bad}"), 400, "value")
    assert_outcome(client.get(f"/Patient/{bad}/_history"), 400, "value")
    assert_outcome(client.get(f"/Patient/{bad}/_history/1"), 400, "value")
    assert_outcome(client.put(f"/Patient/{bad}", json=patient(bad)), 400, "value")
    assert_outcome(client.delete(f"/Patient/{bad}"), 400, "value")


# -- request bodies ---------------------------------------------------------------------------

@pytest.mark.parametrize("content_type", ["application/fhir+xml", "application/xml", "text/xml"])
def test_xml_body_is_415(client, content_type):
    xml = b'<Patient xmlns="http://hl7.org/fhir"><active value="true"/></Patient>'
    assert_outcome(client.post("/Patient", content=xml, headers={"Content-Type": content_type}), 415, "not-supported")
    id_ = new_id("xml")
    xml = f'<Patient xmlns="http://hl7.org/fhir"><id value="{id_}"/></Patient>'.encode()
    assert_outcome(client.put(f"/Patient/{id_}", content=xml, headers={"Content-Type": content_type}), 415)
    assert_outcome(client.get(f"/Patient/{id_}"), 404)


def test_other_content_type_is_415(client):
    r = client.post("/Patient", content=b'{"resourceType":"Patient"}', headers={"Content-Type": "text/plain"})
    assert_outcome(r, 415, "not-supported")


@pytest.mark.parametrize("raw", [
    b'{"resourceType":"Patient",',
    b'{"resourceType":"Patient","active":true}}',
    b"{'resourceType':'Patient'}",
    b'{"resourceType":"Patient","multipleBirthInteger":NaN}',
    b'{"resourceType":"Patient","name":[{"family":"\xff\xfe"}]}',
    b'{"resourceType":"Patient"} {"resourceType":"Patient"}',
])
def test_malformed_json_is_400(client, raw):
    r = client.post("/Patient", content=raw, headers={"Content-Type": "application/fhir+json"})
    assert_outcome(r, 400, "structure")


@pytest.mark.parametrize("raw", [b"[]", b'[{"resourceType":"Patient"}]', b'"Patient"', b"42", b"null", b"true"])
def test_body_that_is_not_an_object_is_400(client, raw):
    r = client.post("/Patient", content=raw, headers={"Content-Type": "application/fhir+json"})
    assert_outcome(r, 400)
    id_ = new_id("arr")
    r = client.put(f"/Patient/{id_}", content=raw, headers={"Content-Type": "application/fhir+json"})
    assert_outcome(r, 400)
    assert_outcome(client.get(f"/Patient/{id_}"), 404)


def test_resource_type_mismatch_is_400(client):
    assert_outcome(client.post("/Patient", json={"resourceType": "Observation", "status": "final",
                                                  "code": {"text": "x"}}), 400, "invalid", "resourceType")
    outcome = assert_outcome(client.post("/Patient", json={"active": True}), 400, "required", "resourceType")
    assert "Patient" in outcome["issue"][0]["diagnostics"]
    assert_outcome(client.post("/Patient", json={"resourceType": "patient"}), 400, "invalid")


def test_byte_order_mark_is_accepted(client):
    r = client.post("/Patient", content='\ufeff{"resourceType":"Patient","active":true}'.encode(),
                    headers={"Content-Type": "application/fhir+json"})
    assert r.status_code == 201, r.text


def test_utf8_text_round_trips(client):
    id_ = new_id("utf8")
    name = "Zoë Ångström-Łukasiewicz 王 😀"
    r = client.put(f"/Patient/{id_}", json=patient(id_, name=[{"text": name}]))
    assert r.status_code == 201
    assert client.get(f"/Patient/{id_}").json()["name"][0]["text"] == name


# -- body size limit (dedicated server) -------------------------------------------------------

@pytest.fixture(scope="module")
def small_server(request, tmp_path_factory, r4_examples):
    running = start_server(request, tmp_path_factory.mktemp("small-body"),
                           extra_env={"FHIR_MAX_BODY_BYTES": "2000"})
    yield running
    running.stop()


def _padded(id_: str | None, size: int) -> bytes:
    """A valid Patient of exactly `size` bytes of JSON."""
    head = '{"resourceType":"Patient",' + (f'"id":"{id_}",' if id_ else "") + '"name":[{"text":"'
    tail = '"}]}'
    filler = size - len(head) - len(tail)
    assert filler > 0
    return (head + "x" * filler + tail).encode()


def test_body_over_the_limit_is_413(small_server):
    with httpx.Client(base_url=small_server.base_url, headers={"Content-Type": "application/fhir+json"}) as c:
        at_limit = c.post("/Patient", content=_padded(None, 2000))
        assert at_limit.status_code == 201, at_limit.text
        assert_outcome(c.post("/Patient", content=_padded(None, 2001)), 413, "too-costly")
        id_ = new_id("big")
        assert_outcome(c.put(f"/Patient/{id_}", content=_padded(id_, 5000)), 413, "too-costly")
        assert_outcome(c.get(f"/Patient/{id_}"), 404)


def test_chunked_body_over_the_limit_is_413(small_server):
    def chunks():
        data = _padded(None, 4000)
        for i in range(0, len(data), 500):
            yield data[i:i + 500]

    with httpx.Client(base_url=small_server.base_url, headers={"Content-Type": "application/fhir+json"}) as c:
        r = c.post("/Patient", content=chunks())
        assert r.request.headers.get("transfer-encoding") == "chunked"
        assert_outcome(r, 413, "too-costly")
