"""Requests a hostile web page or a forged header could send (issue 14, "forged writes").

A page the user opens may send, without a CORS preflight, a POST with no Content-Type, text/plain,
a form or multipart to any address, the loopback server included: none of them may change data.
A Host header that is not the server's never ends up in a link. CORS opens only to listed origins.
A form to `_search` is bounded by FHIR_MAX_FORM_BYTES. Everything through real HTTP."""

from __future__ import annotations

import json
from urllib.parse import urlsplit

import httpx
import pytest

from .support import assert_outcome, new_id, patient, start_server

FHIR_JSON = "application/fhir+json"
CROSS_SITE_TYPES = [None, "text/plain", "text/plain;charset=UTF-8", "multipart/form-data; boundary=x",
                    "application/x-www-form-urlencoded"]


@pytest.fixture
def victim(client) -> str:
    id_ = new_id("victim")
    assert client.put(f"/Patient/{id_}", json=patient(id_, active=True)).status_code == 201
    return id_


def _headers(content_type: str | None) -> dict[str, str]:
    return {"Content-Type": content_type} if content_type else {}


def _unchanged(client: httpx.Client, id_: str) -> None:
    r = client.get(f"/Patient/{id_}")
    assert r.status_code == 200 and r.json()["active"] is True and r.json()["meta"]["versionId"] == "1", r.text


# -- bodies must say what they are ------------------------------------------------------------

@pytest.mark.parametrize("content_type", CROSS_SITE_TYPES)
def test_a_body_a_web_page_can_send_changes_nothing(client, victim, content_type):
    """Every way in for a body: create, update, patch, transaction, batch, an operation."""
    delete = {"resourceType": "Bundle", "type": "transaction",
              "entry": [{"request": {"method": "DELETE", "url": f"Patient/{victim}"}}]}
    marker = new_id("forged")
    attempts = [
        ("POST", "/Patient", patient(active=False, name=[{"family": marker}])),
        ("PUT", f"/Patient/{victim}", patient(victim, active=False)),
        ("PATCH", f"/Patient/{victim}", [{"op": "replace", "path": "/active", "value": False}]),
        ("POST", "", delete),
        ("POST", "", {**delete, "type": "batch"}),
        ("POST", "/Patient/$validate", {"resourceType": "Parameters"}),
    ]
    for method, path, body in attempts:
        r = client.request(method, path, content=json.dumps(body).encode(), headers=_headers(content_type))
        text = " ".join(i["diagnostics"] for i in assert_outcome(r, 415, "not-supported")["issue"])
        assert "application/fhir+json" in text, (method, path, text)
    _unchanged(client, victim)
    assert client.get("/Patient", params={"family": marker}).json().get("total", 0) == 0


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded",
                                          "multipart/form-data; boundary=x"])
def test_an_empty_form_post_is_refused_too(client, content_type):
    """An HTML form with no fields posts an empty body: never a request a FHIR client sends."""
    r = client.post("/Patient/$reindex", content=b"", headers=_headers(content_type))
    assert_outcome(r, 415, "not-supported")


def test_no_content_type_says_what_to_send(client):
    r = client.post("/Patient", content=json.dumps(patient()).encode())
    text = assert_outcome(r, 415)["issue"][0]["diagnostics"]
    assert "no Content-Type" in text and "application/fhir+json" in text, text


@pytest.mark.parametrize("content_type", ["application/fhir+json", "application/json",
                                          "application/fhir+json; charset=utf-8", "application/json+fhir"])
def test_json_bodies_are_accepted(client, content_type):
    r = client.post("/Patient", content=json.dumps(patient(active=True)).encode(), headers=_headers(content_type))
    assert r.status_code == 201, r.text


def test_json_patch_and_fhir_json_patch_are_accepted(client, victim):
    r = client.patch(f"/Patient/{victim}", content=b'[{"op": "replace", "path": "/active", "value": false}]',
                     headers={"Content-Type": "application/json-patch+json"})
    assert r.status_code == 200, r.text


def test_xml_is_still_not_supported_yet(client):
    r = client.post("/Patient", content=b'<Patient xmlns="http://hl7.org/fhir"/>',
                    headers={"Content-Type": "application/fhir+xml"})
    assert "XML" in assert_outcome(r, 415, "not-supported")["issue"][0]["diagnostics"]


def test_search_takes_a_form_and_only_a_form(client, victim):
    found = client.post("/Patient/_search", data={"_id": victim})
    assert found.status_code == 200 and found.json()["total"] == 1, found.text
    for content_type in ("text/plain", FHIR_JSON, None, "multipart/form-data; boundary=x"):
        r = client.post("/Patient/_search", content=f"_id={victim}".encode(), headers=_headers(content_type))
        assert "application/x-www-form-urlencoded" in assert_outcome(r, 415)["issue"][0]["diagnostics"]


def test_get_and_delete_need_no_body_nor_content_type(client):
    id_ = new_id("nobody")
    assert client.put(f"/Patient/{id_}", json=patient(id_)).status_code == 201
    assert client.get(f"/Patient/{id_}").status_code == 200
    assert client.delete(f"/Patient/{id_}").status_code in (200, 204)


# -- Origin: a browser names the page behind a write --------------------------------------------

def test_a_write_from_another_sites_page_is_refused(client, victim, base_url):
    marker = new_id("origin")
    for origin in ("https://evil.example", "null", "http://localhost.evil.example"):
        r = client.post("/Patient", json=patient(name=[{"family": marker}]), headers={"Origin": origin})
        assert "FHIR_CORS_ORIGINS" in assert_outcome(r, 403, "forbidden")["issue"][0]["diagnostics"]
        assert_outcome(client.delete(f"/Patient/{victim}", headers={"Origin": origin}), 403)
    _unchanged(client, victim)
    assert client.get("/Patient", params={"family": marker}).json().get("total", 0) == 0
    own = "{0.scheme}://{0.netloc}".format(urlsplit(base_url))
    assert client.post("/Patient", json=patient(), headers={"Origin": own}).status_code == 201
    assert client.get(f"/Patient/{victim}", headers={"Origin": "https://evil.example"}).status_code == 200


# -- Host ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("host", ["evil.example", "evil.example:80", "127.0.0.1.evil.example", "localhost.evil",
                                  "127.0.0.2", "[::2]:8080"])
def test_an_unknown_host_is_400_on_every_path(client, host):
    marker = new_id("host")
    for method, path, body in [("GET", "/metadata", None), ("GET", "/Patient?_count=1", None),
                               ("GET", "/", None), ("GET", "/no-such-thing", None),
                               ("POST", "/Patient", patient(name=[{"family": marker}]))]:
        r = client.request(method, path, json=body, headers={"Host": host})
        text = assert_outcome(r, 400, "invalid")["issue"][0]["diagnostics"]
        assert "FHIR_BASE_URL" in text and "FHIR_ALLOWED_HOSTS" in text, text
        assert "location" not in r.headers
    assert client.get("/Patient", params={"family": marker}).json().get("total", 0) == 0


def test_loopback_names_on_any_port_build_the_links(client, base_url):
    port = urlsplit(base_url).port
    for host in (f"localhost:{port}", "LOCALHOST", f"127.0.0.1:{port}", "[::1]:9", "localhost."):
        r = client.post("/Patient", json=patient(), headers={"Host": host})
        assert r.status_code == 201, (host, r.text)
        location = r.headers["location"]
        assert location.lower().startswith(f"http://{host.lower()}/fhir/patient/"), location


def test_forwarded_headers_are_ignored(client, base_url):
    """Even from loopback (uvicorn trusts X-Forwarded-* from 127.0.0.1 unless told not to)."""
    forwarded = {"X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "https", "Forwarded": "host=evil.example"}
    r = client.post("/Patient", json=patient(), headers=forwarded)
    assert r.status_code == 201 and r.headers["location"].startswith(base_url + "/Patient/"), r.headers
    page = client.get("/Patient", params={"_count": 1}, headers=forwarded).json()
    assert all(link["url"].startswith(base_url) for link in page["link"]), page["link"]


@pytest.fixture(scope="module")
def listed(request, tmp_path_factory, r4_examples):
    """A server naming its hosts, and opening CORS to one web app."""
    running = start_server(request, tmp_path_factory.mktemp("listed-hosts"), extra_env={
        "FHIR_ALLOWED_HOSTS": "fhir.example.org, API.example.org:8443",
        "FHIR_CORS_ORIGINS": "https://app.example.org"})
    yield running
    running.stop()


def test_listed_hosts_build_the_links_others_are_400(listed):
    with httpx.Client(base_url=listed.base_url, timeout=60) as c:
        for host in ("fhir.example.org", "fhir.example.org:1234", "api.example.org:8443"):
            r = c.post("/Patient", json=patient(), headers={"Host": host})
            assert r.status_code == 201 and r.headers["location"].startswith(f"http://{host}/fhir/"), r.headers
            page = c.get("/Patient", params={"_count": 1}, headers={"Host": host}).json()
            assert all(link["url"].startswith(f"http://{host}/fhir") for link in page["link"]), page["link"]
        for host in ("api.example.org", "api.example.org:9999", "evil.example"):
            assert_outcome(c.get("/metadata", headers={"Host": host}), 400)


def test_a_wildcard_host_list_is_refused_at_start(request, tmp_path):
    with pytest.raises(RuntimeError, match="wildcards"):
        start_server(request, tmp_path / "wild", extra_env={"FHIR_ALLOWED_HOSTS": "*"}, timeout=60)


@pytest.fixture(scope="module")
def public(request, tmp_path_factory, r4_examples):
    running = start_server(request, tmp_path_factory.mktemp("public-base"), extra_env={
        "FHIR_BASE_URL": "https://fhir.example.org/fhir", "FHIR_API_DOCS": "true"})
    yield running
    running.stop()


def test_with_a_public_base_url_the_host_plays_no_part(public):
    with httpx.Client(base_url=public.base_url, timeout=60) as c:
        for host in ("evil.example", "127.0.0.1"):
            r = c.post("/Patient", json=patient(), headers={"Host": host})
            assert r.status_code == 201 and r.headers["location"].startswith("https://fhir.example.org/fhir/Patient/")
        own = c.post("/Patient", json=patient(), headers={"Origin": "https://fhir.example.org"})
        assert own.status_code == 201, own.text


# -- CORS ---------------------------------------------------------------------------------------

def _preflight(base_url: str, origin: str) -> httpx.Response:
    return httpx.options(f"{base_url}/Patient", headers={
        "Origin": origin, "Access-Control-Request-Method": "PUT",
        "Access-Control-Request-Headers": "authorization, content-type, if-match, prefer, x-provenance"})


def test_cors_is_closed_by_default(base_url):
    r = _preflight(base_url, "https://app.example.org")
    assert "access-control-allow-origin" not in r.headers, r.headers
    r = httpx.get(f"{base_url}/metadata", headers={"Origin": "https://app.example.org"})
    assert "access-control-allow-origin" not in r.headers
    assert r.json()["rest"][0]["security"]["cors"] is False


def test_cors_opens_to_the_listed_origin_only(listed):
    allowed = _preflight(listed.base_url, "https://app.example.org")
    assert allowed.status_code == 200, allowed.text
    assert allowed.headers["access-control-allow-origin"] == "https://app.example.org"
    assert "PUT" in allowed.headers["access-control-allow-methods"]
    granted = allowed.headers["access-control-allow-headers"].lower()
    assert all(h in granted for h in ("authorization", "content-type", "if-match", "prefer", "x-provenance"))
    refused = _preflight(listed.base_url, "https://evil.example")
    assert refused.status_code == 400 and "access-control-allow-origin" not in refused.headers

    with httpx.Client(base_url=listed.base_url, timeout=60) as c:
        r = c.post("/Patient", json=patient(), headers={"Origin": "https://app.example.org"})
        assert r.status_code == 201, r.text
        assert r.headers["access-control-allow-origin"] == "https://app.example.org"
        exposed = r.headers["access-control-expose-headers"].lower()
        assert all(h in exposed for h in ("location", "etag", "content-location", "x-request-id"))
        assert_outcome(c.post("/Patient", json=patient(), headers={"Origin": "https://evil.example"}), 403)
        assert c.get("/metadata").json()["rest"][0]["security"]["cors"] is True  # the statement says so


# -- form bodies ---------------------------------------------------------------------------------

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def test_a_form_over_the_limit_is_413_without_being_read(client):
    """16 MB declared: refused on its Content-Length (the default limit is 1 MiB)."""
    r = client.post("/Patient/_search", content=b"family=" + b"x" * (16 * 1024 * 1024), headers=FORM)
    text = assert_outcome(r, 413, "too-costly")["issue"][0]["diagnostics"]
    assert "FHIR_MAX_FORM_BYTES" in text and str(1024 * 1024) in text, text


def test_a_chunked_form_over_the_limit_is_413(client):
    def chunks():
        for _ in range(40):
            yield b"a=" + b"x" * 65536 + b"&"

    r = client.post("/Patient/_search", content=chunks(), headers=FORM)
    assert r.request.headers.get("transfer-encoding") == "chunked"
    assert "FHIR_MAX_FORM_BYTES" in assert_outcome(r, 413)["issue"][0]["diagnostics"]


@pytest.mark.parametrize("form", [
    b"family=" + b"x" * (1024 * 1024 - 100),
    b"&".join([b"family=a"] * 100_000),
    b"&".join([b"_id=x%d" % i for i in range(80_000)]),
    b"=&" * 300_000,
], ids=["one-long-value", "100k-repeats", "80k-ids", "empty-pairs"])
def test_a_large_form_within_the_limit_is_never_a_500(client, form):
    assert len(form) <= 1024 * 1024
    r = client.post("/Patient/_search", content=form, headers=FORM, timeout=120)
    assert r.status_code < 500, (r.status_code, r.text[:500])
    assert r.json()["resourceType"] in ("Bundle", "OperationOutcome")


def test_unknown_parameters_are_warned_of_once_each_and_counted_past_twenty(client):
    """300,000 empty pairs were 300,000 warnings: a 35 MB answer, and its stored search past the
    database's 16 MB document limit was a 500 once more than a page of patients matched."""
    r = client.post("/Patient/_search", content=b"=&" * 300_000, headers=FORM, timeout=120)
    assert r.status_code == 200 and len(r.content) < 100_000, (r.status_code, len(r.content))
    warned = [e["resource"] for e in r.json()["entry"] if e["search"]["mode"] == "outcome"]
    assert [i["diagnostics"] for i in warned[0]["issue"]] == ["unknown search parameter '' for Patient; it was ignored"]
    many = b"&".join(b"x%d=1" % n for n in range(5000))
    issues = [e["resource"]["issue"] for e in client.post("/Patient/_search", content=many, headers=FORM).json()["entry"]
              if e["search"]["mode"] == "outcome"][0]
    assert len(issues) == 21 and issues[-1]["diagnostics"] == "4980 more unknown search parameters were ignored"


def test_the_api_docs_page_when_asked_for(public):
    with httpx.Client(base_url=public.base_url, timeout=60) as c:
        page = c.get("/_docs")
        assert page.status_code == 200 and "swagger" in page.text.lower()
        assert page.headers["cache-control"] == "no-store" and page.headers["x-content-type-options"] == "nosniff"
        assert c.get("/_openapi.json").json()["info"]["title"] == "fhir-server"
