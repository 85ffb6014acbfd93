"""Binary over plain HTTP (issue 15 point 3; FHIR R4 binary.html, http.html#binary; IHE MHD
ITI-68): a read answers the content itself unless FHIR is asked for, with the read's headers and
X-Security-Context; a POST or PUT of a body that is not FHIR stores it as a Binary; forged
cross-site uploads are refused; the Binary follows the access rules of its securityContext.
Everything through real HTTP on the session server (tokens from its local issuer)."""

from __future__ import annotations

import base64

import httpx
import pytest

from fhir_server.config import Settings
from fhir_server.security import local_issuer

from .support import assert_outcome, new_id, patient

# PDF-like bytes: NULs, every high byte, CR/LF, and what a base64 decoder must not lose
PDF = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\r\n" + bytes(range(256)) * 3 + b"\x00\x00\n%%EOF\n"
BROWSER = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"


def _get(client: httpx.Client, path: str, accept: str | None, method: str = "GET", **kwargs) -> httpx.Response:
    """A request with exactly this Accept (None: no Accept header at all)."""
    request = client.build_request(method, path, **kwargs)
    del request.headers["Accept"]
    if accept is not None:
        request.headers["Accept"] = accept
    return client.send(request)


def _put(client: httpx.Client, resource: dict) -> None:
    r = client.put(f"/{resource['resourceType']}/{resource['id']}", json=resource)
    assert r.status_code in (200, 201), r.text


@pytest.fixture(scope="module")
def client(base_url: str) -> httpx.Client:
    """The session server, one client for the module (its fixtures are module-wide)."""
    with httpx.Client(base_url=base_url, timeout=60, headers={"Accept": "application/fhir+json"}) as c:
        yield c


@pytest.fixture(scope="module")
def owner(client) -> str:
    id_ = new_id("bin-owner")
    _put(client, patient(id_))
    return id_


@pytest.fixture(scope="module")
def pdf(client, owner) -> str:
    """A PDF uploaded as itself, its security context the patient; the Binary's id."""
    r = client.post("/Binary", content=PDF, headers={"Content-Type": "application/pdf",
                                                      "X-Security-Context": f"Patient/{owner}"})
    assert r.status_code == 201, r.text
    stored = r.json()
    assert r.headers["location"].endswith(f"/Binary/{stored['id']}/_history/1") and r.headers["etag"] == 'W/"1"'
    assert stored["contentType"] == "application/pdf"
    assert stored["securityContext"] == {"reference": f"Patient/{owner}"}
    assert base64.b64decode(stored["data"]) == PDF
    return stored["id"]


# -- reads: the content unless FHIR is asked for ------------------------------------------------

@pytest.mark.parametrize("accept", [None, "*/*", "application/*", "application/pdf", BROWSER,
                                    "application/fhir+json;q=0, application/pdf"],
                         ids=["none", "any", "application-any", "its type", "browser", "fhir refused by q"])
def test_a_read_answers_the_bytes_themselves(client, pdf, owner, accept):
    r = _get(client, f"/Binary/{pdf}", accept)
    assert r.status_code == 200, r.text
    assert r.content == PDF
    assert r.headers["content-type"] == "application/pdf"
    assert r.headers["content-length"] == str(len(PDF))
    assert r.headers["etag"] == 'W/"1"' and r.headers["last-modified"]
    assert r.headers["x-security-context"] == f"Patient/{owner}"
    assert r.headers["content-disposition"] == "attachment"
    assert r.headers["x-content-type-options"] == "nosniff"
    assert "sandbox" in r.headers["content-security-policy"]


@pytest.mark.parametrize(("accept", "params", "content_type"), [
    ("application/fhir+json", {}, "application/fhir+json; charset=utf-8"),
    ("application/json", {}, "application/json; charset=utf-8"),
    ("application/pdf, application/fhir+json", {}, "application/fhir+json; charset=utf-8"),
    ("*/*", {"_format": "json"}, "application/fhir+json; charset=utf-8"),
    (None, {"_format": "application/fhir+json"}, "application/fhir+json; charset=utf-8"),
    ("*/*", {"_summary": "data"}, "application/fhir+json; charset=utf-8"),
])
def test_asking_for_fhir_gets_the_resource(client, pdf, accept, params, content_type):
    r = _get(client, f"/Binary/{pdf}", accept, params=params)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == content_type
    body = r.json()
    assert body["resourceType"] == "Binary" and body["contentType"] == "application/pdf"
    assert "content-disposition" not in r.headers


@pytest.mark.parametrize("accept", ["image/png", "text/*", "application/fhir+xml", "application/pdf;q=0"])
def test_an_accept_neither_fhir_nor_the_content_is_406(client, pdf, accept):
    outcome = assert_outcome(_get(client, f"/Binary/{pdf}", accept), 406, "not-supported")
    assert "application/fhir+json" in outcome["issue"][0]["diagnostics"]


def test_head_conditional_read_and_vread(client, pdf):
    head = _get(client, f"/Binary/{pdf}", "*/*", method="HEAD")
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == str(len(PDF)) and head.headers["content-type"] == "application/pdf"
    assert _get(client, f"/Binary/{pdf}", "*/*", headers={"If-None-Match": 'W/"1"'}).status_code == 304
    second = b"\x89PNG\r\n\x1a\n\x00\xff" * 100
    r = client.put(f"/Binary/{pdf}", content=second, headers={"Content-Type": "image/png"})
    assert r.status_code == 200 and r.headers["etag"] == 'W/"2"', r.text
    assert r.json()["contentType"] == "image/png" and "securityContext" not in r.json()  # a PUT replaces
    now = _get(client, f"/Binary/{pdf}", None)
    assert (now.content, now.headers["content-type"], now.headers["etag"]) == (second, "image/png", 'W/"2"')
    assert "x-security-context" not in now.headers
    old = _get(client, f"/Binary/{pdf}/_history/1", None)
    assert (old.content, old.headers["content-type"], old.headers["etag"]) == (PDF, "application/pdf", 'W/"1"')
    assert assert_outcome(_get(client, f"/Binary/{pdf}/_history/1", "image/png"), 406)
    assert _get(client, f"/Binary/{pdf}/_history/1", "application/fhir+json").json()["meta"]["versionId"] == "1"
    # restore the PDF for the other tests of the module
    assert client.put(f"/Binary/{pdf}", content=PDF, headers={"Content-Type": "application/pdf"}).status_code == 200


def test_a_binary_without_data_is_an_empty_body(client):
    id_ = new_id("bin-empty")
    assert client.put(f"/Binary/{id_}", json={"resourceType": "Binary", "id": id_,
                                             "contentType": "text/plain"}).status_code == 201
    r = _get(client, f"/Binary/{id_}", None)
    assert r.status_code == 200 and r.content == b"" and r.headers["content-type"] == "text/plain"
    assert r.headers["content-length"] == "0"
    empty = client.post("/Binary", content=b"", headers={"Content-Type": "application/octet-stream"})
    assert empty.status_code == 201 and "data" not in empty.json(), empty.text


def test_base64_with_line_breaks_reads_back_exactly(client):
    """R4's base64Binary may wrap lines (MIME style): the content is the same bytes."""
    id_ = new_id("bin-wrapped")
    text = base64.b64encode(PDF).decode()
    wrapped = "\n".join(text[i:i + 76] for i in range(0, len(text), 76))
    assert client.put(f"/Binary/{id_}", json={"resourceType": "Binary", "id": id_, "contentType": "application/pdf",
                                             "data": wrapped}).status_code == 201
    r = _get(client, f"/Binary/{id_}", "*/*")
    assert r.content == PDF and r.headers["content-length"] == str(len(PDF))


@pytest.mark.parametrize(("data", "status"), [("AA==AA==", 200), ("A=B=", 422)])
def test_padding_inside_the_data_is_never_a_500(client, data, status):
    """R4's base64Binary pattern lets `=` stand anywhere: what a decoder reads is served, the
    rest is 422 naming Binary.data (the resource itself stays readable as FHIR)."""
    id_ = new_id("bin-pad")
    assert client.put(f"/Binary/{id_}", json={"resourceType": "Binary", "id": id_, "contentType": "text/plain",
                                             "data": data}).status_code == 201
    r = _get(client, f"/Binary/{id_}", "*/*")
    if status == 200:
        assert r.status_code == 200 and r.headers["content-length"] == str(len(r.content))
    else:
        assert_outcome(r, 422, "invalid", "Binary.data")
    assert client.get(f"/Binary/{id_}").json()["data"] == data


def test_other_types_and_batch_entries_are_unchanged(client, pdf, owner):
    """Raw answers are for Binary reads only: a Patient's browser read is FHIR, a batch entry
    holds the resource, a search of Binary is a Bundle."""
    assert _get(client, f"/Patient/{owner}", BROWSER).headers["content-type"].startswith("application/fhir+json")
    assert_outcome(_get(client, f"/Patient/{owner}", "application/pdf"), 406)
    batch = {"resourceType": "Bundle", "type": "batch", "entry": [{"request": {"method": "GET", "url": f"Binary/{pdf}"}}]}
    entry = _get(client, "", "*/*", method="POST", json=batch).json()["entry"][0]
    assert entry["resource"]["resourceType"] == "Binary"
    assert _get(client, "/Binary", "*/*", params={"_id": pdf}).json()["total"] == 1


# -- writes: a body that is not FHIR is the Binary's content ---------------------------------------

@pytest.mark.parametrize("content_type", ["text/plain", "text/plain; charset=utf-8", "image/png",
                                          "application/xml", "application/json-patch+json"])
def test_a_put_of_content_creates_then_updates(client, content_type):
    id_ = new_id("bin-put")
    body = "bonjour é\u2603\n".encode()
    created = client.put(f"/Binary/{id_}", content=body, headers={"Content-Type": content_type})
    assert created.status_code == 201 and created.headers["location"].endswith(f"/Binary/{id_}/_history/1")
    assert created.json()["contentType"] == content_type
    updated = client.put(f"/Binary/{id_}", content=body + b"!", headers={"Content-Type": content_type,
                                                                         "If-Match": 'W/"1"'})
    assert updated.status_code == 200 and updated.headers["etag"] == 'W/"2"'
    r = _get(client, f"/Binary/{id_}", None)
    assert r.content == body + b"!" and r.headers["content-type"] == content_type
    stale = client.put(f"/Binary/{id_}", content=body, headers={"Content-Type": content_type, "If-Match": 'W/"1"'})
    assert_outcome(stale, 412)


def test_upload_errors_name_what_is_wrong(client):
    assert "Content-Type" in assert_outcome(client.post("/Binary", content=PDF, headers={"Content-Type": "pdf"}),
                                            400)["issue"][0]["diagnostics"]
    assert_outcome(client.post("/Binary", content=PDF), 415)  # no Content-Type: say what it is
    dangling = client.post("/Binary", content=PDF, headers={"Content-Type": "application/pdf",
                                                           "X-Security-Context": "Patient/bin-nobody"})
    assert_outcome(dangling, 422, expression="Binary.securityContext")
    assert_outcome(client.post("/Binary", content=PDF, headers={"Content-Type": "application/pdf",
                                                                "X-Security-Context": ""}), 400)
    # a FHIR JSON body is still a resource, and checked as one
    assert_outcome(client.post("/Binary", json={"resourceType": "Binary"}), 400)
    # a conditional update and PATCH do not take content
    assert_outcome(client.put("/Binary?_id=x", content=PDF, headers={"Content-Type": "application/pdf"}), 415)


def test_the_body_limit_applies(client):
    too_big = b"\x00" * (16 * 1024 * 1024 + 1)
    r = client.post("/Binary", content=too_big, headers={"Content-Type": "application/octet-stream"})
    assert "FHIR_MAX_BODY_BYTES" in assert_outcome(r, 413)["issue"][0]["diagnostics"]


@pytest.mark.parametrize("content_type", ["application/x-www-form-urlencoded", "multipart/form-data; boundary=x"])
def test_forms_are_never_content(client, content_type):
    id_ = new_id("bin-form")
    assert_outcome(client.put(f"/Binary/{id_}", content=b"a=b", headers={"Content-Type": content_type}), 415)
    assert_outcome(client.post("/Binary", content=b"a=b", headers={"Content-Type": content_type}), 415)
    assert client.get(f"/Binary/{id_}").status_code == 404


@pytest.mark.parametrize("origin", ["https://evil.example", "null"])
def test_a_cross_site_upload_is_refused(client, origin):
    """text/plain is what a page may send anywhere without a preflight: the Origin the browser
    adds refuses it (403) before the body is read; other endpoints still refuse text/plain (415)."""
    id_ = new_id("bin-csrf")
    for method, path in (("PUT", f"/Binary/{id_}"), ("POST", "/Binary")):
        r = client.request(method, path, content=b"forged", headers={"Content-Type": "text/plain", "Origin": origin})
        assert_outcome(r, 403, "forbidden")
    assert client.get(f"/Binary/{id_}").status_code == 404
    assert_outcome(client.post("/Patient", content=b"{}", headers={"Content-Type": "text/plain"}), 415)


# -- access: the Binary follows its security context ------------------------------------------------

def _bearer(server, user: str, scope: str, patient_id: str | None = None) -> dict[str, str]:
    token, _ = local_issuer.issue(Settings(data_dir=server.data_dir), user, scope, patient_id)
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def world(client) -> dict[str, str]:
    """Alice and Bob (and his médecin traitant); Bob's document; a PDF in Alice's context, one
    in his document's; a practitioner in Alice's care team only."""
    ids = {k: new_id(f"bin-{k}") for k in ("alice", "bob", "doc", "gp", "bobs-gp", "team")}
    _put(client, {"resourceType": "Practitioner", "id": ids["gp"]})
    _put(client, {"resourceType": "Practitioner", "id": ids["bobs-gp"]})
    _put(client, patient(ids["alice"]))
    _put(client, patient(ids["bob"], generalPractitioner=[{"reference": f"Practitioner/{ids['bobs-gp']}"}]))
    _put(client, {"resourceType": "CareTeam", "id": ids["team"], "status": "active",
                  "subject": {"reference": f"Patient/{ids['alice']}"},
                  "participant": [{"member": {"reference": f"Practitioner/{ids['gp']}"}}]})
    _put(client, {"resourceType": "DocumentReference", "id": ids["doc"], "status": "current",
                  "subject": {"reference": f"Patient/{ids['bob']}"},
                  "content": [{"attachment": {"contentType": "application/pdf"}}]})
    for name, context in (("a-bin", f"Patient/{ids['alice']}"), ("b-bin", f"DocumentReference/{ids['doc']}")):
        r = client.post("/Binary", content=PDF, headers={"Content-Type": "application/pdf", "X-Security-Context": context})
        assert r.status_code == 201, r.text
        ids[name] = r.json()["id"]
    return ids


def _tokens(server, world) -> dict[str, dict[str, str]]:
    return {"alice's app": _bearer(server, f"Patient/{world['alice']}", "patient/*.cruds", world["alice"]),
            "alice's care team": _bearer(server, f"Practitioner/{world['gp']}", "user/*.cruds")}


@pytest.mark.parametrize("who", ["alice's app", "alice's care team"])
def test_only_who_sees_the_context_gets_the_bytes(client, server, world, who):
    token = _tokens(server, world)[who]
    mine = _get(client, f"/Binary/{world['a-bin']}", None, headers=token)
    assert mine.status_code == 200 and mine.content == PDF
    for accept in (None, "*/*", "image/png", "application/fhir+json"):  # 404 before any 406
        hidden = _get(client, f"/Binary/{world['b-bin']}", accept, headers=token)
        absent = _get(client, f"/Binary/{new_id('none')}", accept, headers=token)
        assert_outcome(hidden, 404, "not-found")
        assert (hidden.status_code, hidden.headers.get("content-type")) == (absent.status_code,
                                                                             absent.headers.get("content-type"))
        assert "x-security-context" not in hidden.headers and "etag" not in hidden.headers
    assert_outcome(_get(client, f"/Binary/{world['b-bin']}/_history/1", "*/*", headers=token), 404)
    found = client.get("/Binary", params={"_id": f"{world['a-bin']},{world['b-bin']}"}, headers=token).json()
    assert [e["resource"]["id"] for e in found.get("entry", [])] == [world["a-bin"]] and found["total"] == 1


def test_bob_sees_his_document_and_uploads_follow_the_rule(client, server, world):
    bob = _bearer(server, f"Patient/{world['bob']}", "patient/*.cruds", world["bob"])
    assert _get(client, f"/Binary/{world['b-bin']}", "*/*", headers=bob).content == PDF
    assert _get(client, f"/Binary/{world['a-bin']}", "*/*", headers=bob).status_code == 404
    into_alice = client.post("/Binary", content=b"x", headers={**bob, "Content-Type": "text/plain",
                                                               "X-Security-Context": f"Patient/{world['alice']}"})
    assert_outcome(into_alice, 403, "forbidden")
    own = client.post("/Binary", content=b"x", headers={**bob, "Content-Type": "text/plain",
                                                        "X-Security-Context": f"Patient/{world['bob']}"})
    assert own.status_code == 201, own.text
    loose = client.post("/Binary", content=b"x", headers={**bob, "Content-Type": "text/plain"})
    assert_outcome(loose, 403)  # nothing would say whose it is: out of every patient's reach


def test_break_the_glass_on_the_content_tells_the_patients_doctors(client, server, world):
    """A Binary answered as its content is still a record opened: its security context's
    patient gets the break-the-glass notice, as for a FHIR read."""
    r = client.post("/Binary", content=PDF, headers={"Content-Type": "application/pdf",
                                                      "X-Security-Context": f"Patient/{world['bob']}"})
    token, _ = local_issuer.issue(Settings(data_dir=server.data_dir), f"Practitioner/{world['gp']}", "user/*.rs",
                                  purpose="BTG")
    read = _get(client, f"/Binary/{r.json()['id']}", "*/*", headers={"Authorization": f"Bearer {token}"})
    assert read.status_code == 200 and read.content == PDF
    notices = client.get("/Communication", params={"subject": f"Patient/{world['bob']}", "category": "alert"}).json()
    assert notices["total"] == 1, notices
    assert notices["entry"][0]["resource"]["recipient"] == [{"reference": f"Practitioner/{world['bobs-gp']}"}]
