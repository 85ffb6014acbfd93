"""Transactions through HTTP: processing order, response entries, Prefer, reference rewriting,
conditional references, ifNoneExist/ifMatch/ifNoneMatch/ifModifiedSince per entry, the same
resource twice, and the failing entry named in the error. Atomicity down to the database is in
test_atomicity.py; the spec's own example in test_spec_example.py."""

from __future__ import annotations

import pytest

from .support import (
    INSTANT_RE,
    assert_error,
    batch,
    bundle,
    entry,
    history_versions,
    location,
    new_id,
    post_bundle,
    read,
    response_bundle,
    search_ids,
    status,
    system,
    transact,
    urn,
)


def _patient(**fields):
    return {"resourceType": "Patient", **fields}


def _observation(subject: str, **fields):
    return {"resourceType": "Observation", "status": "final", "code": {"text": "test"},
            "subject": {"reference": subject}, **fields}


def _ident(sys_: str, value: str) -> dict:
    return {"identifier": [{"system": sys_, "value": value}]}


# -- order and response entries --------------------------------------------------------------------
def test_processed_in_the_specs_order_answered_in_the_requests_order(client, base_url):
    """GET after the writes, DELETE before POST: a conditional DELETE and a POST of the same
    identifier succeed only in that order (the other way round the DELETE would match two)."""
    s = system()
    gone_id, put_id = new_id(), new_id()
    assert client.put(f"/Patient/{gone_id}", json=_patient(id=gone_id)).status_code == 201
    assert client.post("/Patient", json=_patient(**_ident(s, "1"))).status_code == 201
    entries = [
        entry("GET", f"Patient/{gone_id}"),
        entry("GET", f"Patient?identifier={s}|1"),
        entry("POST", "Patient", _patient(**_ident(s, "1")), urn()),
        entry("PUT", f"Patient/{put_id}", _patient(id=put_id, active=True)),
        entry("DELETE", f"Patient/{gone_id}"),
        entry("DELETE", f"Patient?identifier={s}|1"),
    ]
    items = response_bundle(transact(client, base_url, entries), "transaction-response", 6)
    assert status(items[0]) == 410, items[0]  # the read ran after the DELETE of entry 4
    assert items[0]["response"]["outcome"]["resourceType"] == "OperationOutcome"
    assert status(items[1]) == 200
    new_patient = location(items[2])[1]
    # the search ran after the conditional DELETE and the POST: only the new patient matches
    assert [e["resource"]["id"] for e in items[1]["resource"]["entry"]] == [new_patient]
    assert status(items[2]) == 201 and status(items[3]) == 201
    assert location(items[3]) == ("Patient", put_id, 1)
    assert 200 <= status(items[4]) < 300 and 200 <= status(items[5]) < 300
    assert client.get(f"/Patient/{gone_id}").status_code == 410
    assert search_ids(client, "Patient", identifier=f"{s}|1") == [new_patient]


def test_write_entries_carry_status_location_etag_last_modified(client, base_url):
    existing = new_id()
    assert client.put(f"/Patient/{existing}", json=_patient(id=existing)).status_code == 201
    entries = [entry("POST", "Patient", _patient(active=True), urn()),
               entry("PUT", f"Patient/{existing}", _patient(id=existing, active=False))]
    items = response_bundle(transact(client, base_url, entries), "transaction-response", 2)
    (t0, id0, v0), (t1, id1, v1) = location(items[0]), location(items[1])
    assert (t0, v0, status(items[0])) == ("Patient", 1, 201)
    assert (t1, id1, v1, status(items[1])) == ("Patient", existing, 2, 200)
    for item, version in ((items[0], 1), (items[1], 2)):
        assert item["response"]["etag"] == f'W/"{version}"'
        assert INSTANT_RE.match(item["response"]["lastModified"])
        assert item["resource"]["meta"]["versionId"] == str(version)
        assert item["resource"]["meta"]["lastUpdated"] == item["response"]["lastModified"]
    stored = read(client, f"Patient/{id0}")
    assert stored == items[0]["resource"]
    assert read(client, f"Patient/{existing}") == items[1]["resource"]


@pytest.mark.parametrize("prefer", ["return=minimal", "return=representation", "return=OperationOutcome", None])
def test_prefer_applies_to_every_entry(client, base_url, prefer):
    put_id = new_id()
    entries = [entry("POST", "Patient", _patient(active=True), urn()),
               entry("PUT", f"Patient/{put_id}", _patient(id=put_id))]
    items = response_bundle(transact(client, base_url, entries, prefer=prefer), "transaction-response", 2)
    for item in items:
        assert status(item) == 201 and item["response"]["location"] and item["response"]["etag"]
        if prefer == "return=minimal":
            assert "resource" not in item and "outcome" not in item["response"], item
        elif prefer == "return=OperationOutcome":
            assert "resource" not in item, item
            assert item["response"]["outcome"]["resourceType"] == "OperationOutcome"
        else:
            assert item["resource"]["resourceType"] == "Patient"
            assert item["resource"]["id"] == location(item)[1]


# -- references between entries -------------------------------------------------------------------
def test_urn_uuid_references_rewritten_everywhere(client, base_url):
    pat, obs, put_urn = urn(), urn(), urn()
    put_id, elsewhere = new_id(), new_id()
    made = client.put(f"/Observation/{elsewhere}", json={"resourceType": "Observation", "id": elsewhere,
                                                        "status": "final", "code": {"text": "x"}})
    assert made.status_code == 201, made.text  # a reference to it must resolve (referential integrity)
    observation = _observation(pat, **{
        "performer": [{"reference": put_urn, "display": "kept"}],
        "extension": [{"url": "http://example.org/a", "valueReference": {"reference": pat}},
                      {"url": "http://example.org/nested", "extension": [
                          {"url": "inner", "valueReference": {"reference": put_urn}}]}],
        "contained": [{"resourceType": "Specimen", "id": "s1", "subject": {"reference": pat}}],
        "specimen": {"reference": "#s1"},
        "derivedFrom": [{"reference": f"Observation/{elsewhere}"}],
        "focus": [{"identifier": {"system": "urn:x", "value": "only-an-identifier"}}],
    })
    entries = [
        entry("POST", "Observation", observation, obs),
        entry("POST", "Patient", _patient(link=[{"other": {"reference": put_urn}, "type": "seealso"}]), pat),
        entry("PUT", f"Patient/{put_id}", _patient(id=put_id, generalPractitioner=[{"reference": pat}]), put_urn),
    ]
    items = response_bundle(transact(client, base_url, entries), "transaction-response", 3)
    obs_ref, pat_ref = "/".join(location(items[0])[:2]), "/".join(location(items[1])[:2])
    put_ref = f"Patient/{put_id}"
    assert location(items[2])[:2] == ("Patient", put_id)
    stored = read(client, obs_ref)
    assert stored["subject"] == {"reference": pat_ref}
    assert stored["performer"] == [{"reference": put_ref, "display": "kept"}]
    assert stored["extension"][0]["valueReference"] == {"reference": pat_ref}
    assert stored["extension"][1]["extension"][0]["valueReference"] == {"reference": put_ref}
    assert stored["contained"][0]["subject"] == {"reference": pat_ref}
    assert stored["specimen"] == {"reference": "#s1"}
    assert stored["derivedFrom"] == [{"reference": f"Observation/{elsewhere}"}]
    assert stored["focus"] == [{"identifier": {"system": "urn:x", "value": "only-an-identifier"}}]
    assert read(client, pat_ref)["link"][0]["other"] == {"reference": put_ref}
    assert read(client, put_ref)["generalPractitioner"] == [{"reference": pat_ref}]
    # the search index holds the rewritten references
    assert search_ids(client, "Observation", subject=pat_ref) == [location(items[0])[1]]


def test_urn_oid_references_rewritten(client, base_url):
    oid = "urn:oid:1.2.3.4.5." + str(abs(hash(new_id())) % 10**9)
    entries = [entry("POST", "Observation", _observation(oid), urn()),
               entry("POST", "Patient", _patient(), oid)]
    items = response_bundle(transact(client, base_url, entries), "transaction-response", 2)
    pat_ref = "/".join(location(items[1])[:2])
    assert read(client, "/".join(location(items[0])[:2]))["subject"] == {"reference": pat_ref}


def _key(item: dict) -> str:
    return "/".join(location(item)[:2])


def test_uri_and_url_elements_naming_entries_rewritten(client, base_url):
    """R4 http.html#trules: links in elements typed uri/url and in the narrative's <a href>/<img
    src> follow their entry like references; strings, markdown and canonicals do not."""
    pat, binary, report = urn(), urn(), urn()
    div = f'<div xmlns="http://www.w3.org/1999/xhtml"><a href="{binary}">scan</a> of {pat}</div>'
    diagnostic = {
        "resourceType": "DiagnosticReport", "status": "final", "code": {"text": "scan"},
        "subject": {"reference": pat}, "text": {"status": "generated", "div": div},
        "presentedForm": [{"contentType": "application/pdf", "url": binary}],
        "conclusion": binary,  # string
        "extension": [{"url": "http://example.org/uri", "valueUri": pat},
                      {"url": "http://example.org/url", "valueUrl": binary},
                      {"url": "http://example.org/canonical", "valueCanonical": pat},
                      {"url": "http://example.org/markdown", "valueMarkdown": binary},
                      {"url": "http://example.org/endpoint", "valueReference": {"reference": "#e"}}],
        "contained": [{"resourceType": "Endpoint", "id": "e", "status": "active", "address": binary,
                       "connectionType": {"system": "http://terminology.hl7.org/CodeSystem/endpoint-connection-type",
                                          "code": "hl7-fhir-rest"}, "payloadType": [{"text": "pdf"}]}],
    }
    entries = [entry("POST", "DiagnosticReport", diagnostic, report),
               entry("POST", "Patient", _patient(), pat),
               entry("POST", "Binary", {"resourceType": "Binary", "contentType": "application/pdf", "data": "JVBERg=="},
                     binary)]
    items = response_bundle(transact(client, base_url, entries), "transaction-response", 3)
    pat_ref, binary_ref = _key(items[1]), _key(items[2])
    stored = read(client, _key(items[0]))
    assert stored["presentedForm"] == [{"contentType": "application/pdf", "url": binary_ref}]
    assert stored["text"]["div"] == (f'<div xmlns="http://www.w3.org/1999/xhtml"><a href="{binary_ref}">scan</a>'
                                     f" of {pat}</div>")
    assert stored["conclusion"] == binary
    assert [e.get("valueUri") or e.get("valueUrl") or e.get("valueCanonical") or e.get("valueMarkdown")
            for e in stored["extension"][:4]] == [pat_ref, binary_ref, pat, binary]
    assert stored["contained"][0]["address"] == binary_ref
    assert client.get(f"/{binary_ref}").status_code == 200


def test_canonicals_are_not_rewritten(client, base_url):
    """Elements of type canonical are not replaced (http.html#trules): a canonical names a
    resource by its `url`, not by where a server stores it."""
    questionnaire, activity = f"http://example.org/fhir/Questionnaire/{new_id()}", urn()
    entries = [
        entry("POST", "Questionnaire", {"resourceType": "Questionnaire", "status": "draft", "url": questionnaire},
              questionnaire),
        entry("POST", "ActivityDefinition", {"resourceType": "ActivityDefinition", "status": "draft"}, activity),
        entry("POST", "PlanDefinition", {"resourceType": "PlanDefinition", "status": "draft", "action": [
            {"title": "a", "definitionCanonical": activity}]}, urn()),
        entry("POST", "QuestionnaireResponse", {"resourceType": "QuestionnaireResponse", "status": "completed",
                                                "questionnaire": questionnaire}, urn()),
        entry("POST", "QuestionnaireResponse", {"resourceType": "QuestionnaireResponse", "status": "completed",
                                                "questionnaire": f"{questionnaire}|1.0"}, urn()),
    ]
    items = response_bundle(transact(client, base_url, entries), "transaction-response", 5)
    assert read(client, _key(items[0]))["url"] == questionnaire
    assert read(client, _key(items[2]))["action"][0]["definitionCanonical"] == activity
    assert read(client, _key(items[3]))["questionnaire"] == questionnaire
    assert read(client, _key(items[4]))["questionnaire"] == f"{questionnaire}|1.0"


def test_a_canonical_url_equal_to_its_full_url_stays_a_name(client, base_url):
    """Conformance resources often have fullUrl = url: the CodeSystem keeps its url and a
    Coding.system (uri) naming it is not turned into `CodeSystem/<id>`; a reference still is."""
    cs_id = new_id()
    url = f"http://example.org/fhir/CodeSystem/{cs_id}"
    code_system = {"resourceType": "CodeSystem", "id": cs_id, "url": url, "status": "draft", "content": "complete",
                   "concept": [{"code": "a"}]}
    entries = [entry("PUT", f"CodeSystem/{cs_id}", code_system, url),
               entry("POST", "Observation", {"resourceType": "Observation", "status": "final", "focus": [
                   {"reference": url}], "code": {"coding": [{"system": url, "code": "a"}]}}, urn())]
    items = response_bundle(transact(client, base_url, entries), "transaction-response", 2)
    assert read(client, f"CodeSystem/{cs_id}")["url"] == url
    stored = read(client, _key(items[1]))
    assert stored["code"] == {"coding": [{"system": url, "code": "a"}]}
    assert stored["focus"] == [{"reference": f"CodeSystem/{cs_id}"}]


def test_a_document_bundle_keeps_references_to_its_own_entries(client, base_url):
    """A Bundle stored by an entry resolves its references inside itself (bundle.html#references):
    its urn:uuid references are neither rewritten nor refused as naming no transaction entry."""
    inner_patient, composition = urn(), urn()
    document = {
        "resourceType": "Bundle", "type": "document", "timestamp": "2024-05-01T10:00:00Z",
        "identifier": {"system": system(), "value": "1"},
        "entry": [{"fullUrl": composition, "resource": {
                       "resourceType": "Composition", "status": "final", "type": {"text": "note"},
                       "date": "2024-05-01", "title": "note", "subject": {"reference": inner_patient},
                       "author": [{"reference": inner_patient}]}},
                  {"fullUrl": inner_patient, "resource": {"resourceType": "Patient"}}]}
    items = response_bundle(transact(client, base_url, [entry("POST", "Bundle", document, urn())]),
                            "transaction-response", 1)
    stored = read(client, _key(items[0]))
    assert stored["entry"] == document["entry"]


def test_an_mhd_provide_bundle_links_its_document_to_the_binary(client, base_url):
    """IHE MHD ITI-65: the SubmissionSet lists the DocumentReference, which is about the Patient
    and whose attachment.url is the Binary's fullUrl; read back, every link is the stored one."""
    import base64
    import hashlib

    content = b"%PDF-1.4 compte rendu"
    pat, doc, binary, submission = urn(), urn(), urn(), urn()
    list_code = {"coding": [{"system": "https://profiles.ihe.net/ITI/MHD/CodeSystem/MHDlistTypes",
                             "code": "submissionset"}]}
    sha1 = base64.b64encode(hashlib.sha1(content).digest()).decode()  # noqa: S324 — what MHD names
    entries = [
        entry("POST", "List", {"resourceType": "List", "status": "current", "mode": "working", "code": list_code,
                               "subject": {"reference": pat}, "date": "2024-05-01T10:00:00+02:00",
                               "entry": [{"item": {"reference": doc}}]}, submission),
        entry("POST", "DocumentReference", {
            "resourceType": "DocumentReference", "status": "current", "subject": {"reference": pat},
            "masterIdentifier": {"system": "urn:ietf:rfc:3986", "value": doc},  # a string: kept
            "content": [{"attachment": {"contentType": "application/pdf", "url": binary, "size": len(content),
                                        "hash": sha1}}]}, doc),
        entry("POST", "Binary", {"resourceType": "Binary", "contentType": "application/pdf",
                                 "data": base64.b64encode(content).decode()}, binary),
        entry("POST", "Patient", _patient(name=[{"family": "Partage"}]), pat),
    ]
    items = response_bundle(transact(client, base_url, entries), "transaction-response", 4)
    list_key, doc_key, binary_key, pat_key = (_key(i) for i in items)
    stored = read(client, doc_key)
    assert stored["content"][0]["attachment"]["url"] == binary_key
    assert stored["subject"] == {"reference": pat_key}
    assert stored["masterIdentifier"]["value"] == doc
    assert read(client, list_key)["entry"][0]["item"] == {"reference": doc_key}
    raw = client.get(f"/{binary_key}", headers={"Accept": "application/pdf"})
    assert raw.status_code == 200 and raw.content == content


def test_a_batch_does_not_rewrite_links_between_entries(client, base_url):
    """A batch has no interdependencies (http.html#brules): a url naming another entry's fullUrl
    is stored as sent."""
    binary = urn()
    report = {"resourceType": "DiagnosticReport", "status": "final", "code": {"text": "x"},
              "presentedForm": [{"url": binary}]}
    entries = [entry("POST", "DiagnosticReport", report, urn()),
               entry("POST", "Binary", {"resourceType": "Binary", "contentType": "text/plain"}, binary)]
    items = response_bundle(batch(client, base_url, entries), "batch-response", 2)
    assert status(items[0]) == 201 and status(items[1]) == 201
    assert read(client, _key(items[0]))["presentedForm"] == [{"url": binary}]


def test_absolute_full_urls_of_put_and_post_entries(client, base_url):
    put_id = new_id()
    own_post = f"{base_url}/Patient/{new_id('temp')}"  # a POST with a fullUrl on this server
    entries = [
        entry("PUT", f"Patient/{put_id}", _patient(id=put_id), f"http://example.org/fhir/Patient/{put_id}"),
        entry("POST", "Patient", _patient(), own_post),
        entry("POST", "Observation", _observation(f"http://example.org/fhir/Patient/{put_id}",
                                                  performer=[{"reference": own_post}]), urn()),
    ]
    items = response_bundle(transact(client, base_url, entries), "transaction-response", 3)
    posted = location(items[1])[1]
    assert f"Patient/{posted}" != own_post.removeprefix(base_url + "/")  # POST assigns its own id
    stored = read(client, "/".join(location(items[2])[:2]))
    assert stored["subject"] == {"reference": f"Patient/{put_id}"}
    assert stored["performer"] == [{"reference": f"Patient/{posted}"}]


def test_relative_reference_to_a_posted_entry_with_an_absolute_full_url(client, base_url):
    """Bundle rules (R4 bundle.html#references): a relative reference in an entry whose fullUrl
    is http://example.org/fhir/Observation/o1 means http://example.org/fhir/Patient/abc — the
    POSTed entry with that fullUrl — and must follow it to the id the server assigns."""
    temp = new_id("abc")
    entries = [
        entry("POST", "Patient", _patient(), f"http://example.org/fhir/Patient/{temp}"),
        entry("POST", "Observation", _observation(f"Patient/{temp}"), f"http://example.org/fhir/Observation/{new_id()}"),
    ]
    items = response_bundle(transact(client, base_url, entries), "transaction-response", 2)
    posted = location(items[0])[1]
    assert read(client, "/".join(location(items[1])[:2]))["subject"] == {"reference": f"Patient/{posted}"}


def test_reference_to_an_unknown_urn_fails_the_transaction(client, base_url):
    s = system()
    missing, full_url = urn(), urn()
    entries = [entry("POST", "Patient", _patient(**_ident(s, "1")), urn()),
               entry("POST", "Observation", _observation(missing), full_url)]
    text = assert_error(transact(client, base_url, entries), 400)
    assert "entry 1" in text and full_url in text and missing in text, text
    assert search_ids(client, "Patient", identifier=f"{s}|1") == []


def test_the_same_full_url_twice_is_refused(client, base_url):
    s, same = system(), urn()
    entries = [entry("POST", "Patient", _patient(**_ident(s, "1")), same),
               entry("POST", "Patient", _patient(**_ident(s, "2")), same),
               entry("POST", "Observation", _observation(same), urn())]
    assert_error(transact(client, base_url, entries), 400)
    assert search_ids(client, "Patient", identifier=f"{s}|1") == []


# -- conditional references ------------------------------------------------------------------------
def test_conditional_reference_resolved_by_search(client, base_url):
    s = system()
    practitioner = client.post("/Practitioner", json={"resourceType": "Practitioner", **_ident(s, "npi-1")})
    assert practitioner.status_code == 201
    pr_id = practitioner.json()["id"]
    enc = {"resourceType": "Encounter", "status": "finished", "class": {"code": "AMB"},
           "participant": [{"individual": {"reference": f"Practitioner?identifier={s}|npi-1"}}]}
    items = response_bundle(transact(client, base_url, [entry("POST", "Encounter", enc, urn())]),
                            "transaction-response", 1)
    enc_id = location(items[0])[1]
    stored = read(client, f"Encounter/{enc_id}")
    assert stored["participant"][0]["individual"] == {"reference": f"Practitioner/{pr_id}"}
    assert search_ids(client, "Encounter", practitioner=f"Practitioner/{pr_id}") == [enc_id]


def test_conditional_reference_with_no_match_or_two_matches_fails(client, base_url):
    s = system()
    for _ in range(2):
        assert client.post("/Practitioner", json={"resourceType": "Practitioner", **_ident(s, "two")}).status_code == 201
    marker = system()

    def attempt(ref: str):
        enc = {"resourceType": "Encounter", "status": "finished", "class": {"code": "AMB"},
               "participant": [{"individual": {"reference": ref}}]}
        entries = [entry("POST", "Patient", _patient(**_ident(marker, "1")), urn()),
                   entry("POST", "Encounter", enc, urn())]
        return transact(client, base_url, entries)

    text = assert_error(attempt(f"Practitioner?identifier={s}|none"), (400, 404))
    assert "entry 1" in text and f"{s}|none" in text, text
    text = assert_error(attempt(f"Practitioner?identifier={s}|two"), 412)
    assert "entry 1" in text, text
    assert_error(attempt(f"Practitioner?no-such-parameter={s}"), 400)
    assert search_ids(client, "Patient", identifier=f"{marker}|1") == []


def test_conditional_reference_with_an_http_system(client, base_url):
    value = new_id("npi")
    created = client.post("/Practitioner", json={"resourceType": "Practitioner",
                                                 **_ident("http://hl7.org/fhir/sid/us-npi", value)})
    assert created.status_code == 201
    enc = {"resourceType": "Encounter", "status": "finished", "class": {"code": "AMB"},
           "participant": [{"individual": {
               "reference": f"Practitioner?identifier=http://hl7.org/fhir/sid/us-npi|{value}"}}]}
    items = response_bundle(transact(client, base_url, [entry("POST", "Encounter", enc, urn())]),
                            "transaction-response", 1)
    stored = read(client, "/".join(location(items[0])[:2]))
    assert stored["participant"][0]["individual"] == {"reference": f"Practitioner/{created.json()['id']}"}


def test_conditional_reference_to_a_resource_created_in_the_same_transaction(client, base_url):
    s = system()
    practitioner = {"resourceType": "Practitioner", **_ident(s, "npi")}
    enc = {"resourceType": "Encounter", "status": "finished", "class": {"code": "AMB"},
           "participant": [{"individual": {"reference": f"Practitioner?identifier={s}|npi"}}]}
    entries = [entry("POST", "Practitioner", practitioner, urn(), ifNoneExist=f"identifier={s}|npi"),
               entry("POST", "Encounter", enc, urn())]
    items = response_bundle(transact(client, base_url, entries), "transaction-response", 2)
    pr_id = location(items[0])[1]
    assert read(client, "/".join(location(items[1])[:2]))["participant"][0]["individual"] == {
        "reference": f"Practitioner/{pr_id}"}


# -- ifNoneExist -----------------------------------------------------------------------------------
def test_if_none_exist_creates_once_and_then_points_at_the_existing_resource(client, base_url):
    s = system()
    pat = urn()

    def send():
        entries = [entry("POST", "Patient", _patient(**_ident(s, "1")), pat, ifNoneExist=f"identifier={s}|1"),
                   entry("POST", "Observation", _observation(pat), urn())]
        return response_bundle(transact(client, base_url, entries), "transaction-response", 2)

    first = send()
    assert status(first[0]) == 201
    pat_id = location(first[0])[1]
    second = send()
    assert status(second[0]) == 200, second[0]
    assert location(second[0]) == ("Patient", pat_id, 1)
    assert second[0]["resource"]["id"] == pat_id
    for items in (first, second):
        assert read(client, "/".join(location(items[1])[:2]))["subject"] == {"reference": f"Patient/{pat_id}"}
    assert search_ids(client, "Patient", identifier=f"{s}|1") == [pat_id]
    assert history_versions(client, f"Patient/{pat_id}") == [1]


def test_if_none_exist_with_two_matches_fails(client, base_url):
    s, marker = system(), system()
    for _ in range(2):
        assert client.post("/Patient", json=_patient(**_ident(s, "dup"))).status_code == 201
    entries = [entry("POST", "Patient", _patient(**_ident(marker, "1")), urn()),
               entry("POST", "Patient", _patient(**_ident(s, "dup")), urn(), ifNoneExist=f"identifier={s}|dup")]
    text = assert_error(transact(client, base_url, entries), 412)
    assert "entry 1" in text, text
    assert search_ids(client, "Patient", identifier=f"{marker}|1") == []


def test_the_same_if_none_exist_twice_in_one_transaction_creates_at_most_one(client, base_url):
    s = system()
    entries = [entry("POST", "Patient", _patient(**_ident(s, "1")), urn(), ifNoneExist=f"identifier={s}|1")
               for _ in range(2)]
    response = transact(client, base_url, entries)
    assert response.status_code in (200, 400, 409, 412, 422), response.text
    assert len(search_ids(client, "Patient", identifier=f"{s}|1")) <= 1


# -- ifMatch, ifNoneMatch, ifModifiedSince ---------------------------------------------------------
def test_if_match_in_a_transaction_behaves_as_alone(client, base_url):
    id_, s = new_id(), system()
    assert client.put(f"/Patient/{id_}", json=_patient(id=id_)).status_code == 201
    alone = client.put(f"/Patient/{id_}", json=_patient(id=id_, active=True), headers={"If-Match": 'W/"7"'})
    assert_error(alone, 412)
    entries = [entry("POST", "Patient", _patient(**_ident(s, "1")), urn()),
               entry("PUT", f"Patient/{id_}", _patient(id=id_, active=True), urn(), ifMatch='W/"7"')]
    text = assert_error(transact(client, base_url, entries), 412)
    assert "entry 1" in text, text
    assert search_ids(client, "Patient", identifier=f"{s}|1") == []
    assert history_versions(client, f"Patient/{id_}") == [1]
    entries[1]["request"]["ifMatch"] = 'W/"1"'
    items = response_bundle(transact(client, base_url, entries), "transaction-response", 2)
    assert location(items[1]) == ("Patient", id_, 2)
    assert read(client, f"Patient/{id_}")["active"] is True


def test_if_match_on_a_resource_that_does_not_exist(client, base_url):
    id_ = new_id()
    entries = [entry("PUT", f"Patient/{id_}", _patient(id=id_), ifMatch='W/"1"')]
    assert_error(transact(client, base_url, entries), 412)
    assert client.get(f"/Patient/{id_}").status_code == 404


def test_if_match_on_delete(client, base_url):
    id_ = new_id()
    assert client.put(f"/Patient/{id_}", json=_patient(id=id_)).status_code == 201
    assert client.put(f"/Patient/{id_}", json=_patient(id=id_, active=True)).status_code == 200
    text = assert_error(transact(client, base_url, [entry("DELETE", f"Patient/{id_}", ifMatch='W/"1"')]), 412)
    assert "entry 0" in text
    assert read(client, f"Patient/{id_}")["meta"]["versionId"] == "2"
    items = response_bundle(transact(client, base_url, [entry("DELETE", f"Patient/{id_}", ifMatch='W/"2"')]),
                            "transaction-response", 1)
    assert 200 <= status(items[0]) < 300
    assert client.get(f"/Patient/{id_}").status_code == 410
    assert history_versions(client, f"Patient/{id_}") == [1, 2, 3]


def test_conditional_read_headers_on_get_entries(client, base_url):
    id_ = new_id()
    assert client.put(f"/Patient/{id_}", json=_patient(id=id_)).status_code == 201
    entries = [entry("GET", f"Patient/{id_}", ifNoneMatch='W/"1"'),
               entry("GET", f"Patient/{id_}", ifNoneMatch='W/"0"'),
               entry("GET", f"Patient/{id_}", ifModifiedSince="2999-01-01T00:00:00Z"),
               entry("GET", f"Patient/{id_}", ifModifiedSince="2000-01-01T00:00:00Z")]
    items = response_bundle(transact(client, base_url, entries), "transaction-response", 4)
    assert [status(i) for i in items] == [304, 200, 304, 200]
    assert "resource" not in items[0] and "resource" not in items[2]
    assert items[1]["resource"]["id"] == id_ and items[3]["resource"]["id"] == id_
    assert all(i["response"]["etag"] == 'W/"1"' for i in items)


# -- the same resource twice -----------------------------------------------------------------------
@pytest.mark.parametrize("second", ["PUT", "DELETE", "PATCH", "conditional PUT"])
def test_the_same_resource_twice_is_refused(client, base_url, second):
    id_, s, marker = new_id(), system(), system()
    assert client.put(f"/Patient/{id_}", json=_patient(id=id_, **_ident(s, "1"))).status_code == 201
    entries = [entry("POST", "Patient", _patient(**_ident(marker, "1")), urn()),
               entry("PUT", f"Patient/{id_}", _patient(id=id_, active=True, **_ident(s, "1")))]
    if second == "PUT":
        entries.append(entry("PUT", f"Patient/{id_}", _patient(id=id_, active=False)))
    elif second == "DELETE":
        entries.append(entry("DELETE", f"Patient/{id_}"))
    elif second == "PATCH":
        entries.append(entry("PATCH", f"Patient/{id_}", {"resourceType": "Parameters", "parameter": [
            {"name": "operation", "part": [{"name": "type", "valueCode": "delete"},
                                           {"name": "path", "valueString": "Patient.active"}]}]}))
    else:  # resolves, by search, to the same Patient
        entries.append(entry("PUT", f"Patient?identifier={s}|1", _patient(active=False, **_ident(s, "1"))))
    text = assert_error(transact(client, base_url, entries), (400, 409, 412, 422))
    assert f"Patient/{id_}" in text and "entry" in text, text
    assert history_versions(client, f"Patient/{id_}") == [1]
    assert search_ids(client, "Patient", identifier=f"{marker}|1") == []


# -- failures name the entry -----------------------------------------------------------------------
def test_an_invalid_entry_is_named_by_index_and_full_url(client, base_url):
    s = system()
    bad = urn()
    entries = [entry("POST", "Patient", _patient(**_ident(s, "1")), urn()),
               entry("PUT", f"Patient/{new_id()}", None),
               entry("POST", "Patient", _patient(gender=5), bad)]
    entries[1]["resource"] = _patient(id=entries[1]["request"]["url"].split("/")[1])
    text = assert_error(transact(client, base_url, entries), 400)
    assert "entry 2" in text and bad in text, text
    assert search_ids(client, "Patient", identifier=f"{s}|1") == []
    assert client.get(f"/{entries[1]['request']['url']}").status_code == 404


@pytest.mark.parametrize("body, fragment", [
    ({"resourceType": "Patient"}, "Bundle"),
    ({"resourceType": "Bundle", "type": "collection", "entry": []}, "collection"),
    ({"resourceType": "Bundle", "type": "transaction", "entry": [{"resource": {"resourceType": "Patient"}}]},
     "entry[0]"),
    ({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "Patient"}, "request": {"method": "FETCH", "url": "Patient"}}]}, "method"),
    ({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "Patient"}, "request": {"method": "POST", "url": "http://elsewhere.org/fhir/Patient"}}]},
     "elsewhere.org"),
    ({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "Patient"}, "request": {"method": "POST", "url": "Observation"}}]}, "entry 0"),
])
def test_malformed_transactions_are_refused(client, base_url, body, fragment):
    text = assert_error(post_bundle(client, base_url, body), 400)
    assert fragment in text, text


@pytest.mark.parametrize("bad", [
    entry("POST", "NoSuchType", {"resourceType": "NoSuchType"}),
    entry("PATCH", "Patient/x", {"resourceType": "Binary", "data": "%%%"}),
    {"resource": {"resourceType": "Patient"}},
], ids=["unknown type", "bad Binary", "no request"])
def test_entry_errors_found_while_reading_name_the_full_url(client, base_url, bad):
    full_url = urn()
    bad = {"fullUrl": full_url, **bad}
    text = assert_error(transact(client, base_url, [entry("POST", "Patient", _patient(), urn()), bad]), (400, 404))
    assert "entry 1" in text and full_url in text, text


def test_an_unknown_resource_type_in_an_entry(client, base_url):
    text = assert_error(transact(client, base_url, [entry("POST", "NoSuchType", {"resourceType": "NoSuchType"})]),
                        (400, 404))
    assert "NoSuchType" in text and "entry 0" in text, text


def test_body_that_is_not_json(client, base_url):
    assert_error(post_bundle(client, base_url, b'{"resourceType": "Bundle", "type": "transaction", "entry": ['), 400)


def test_an_empty_transaction(client, base_url):
    for body in (bundle("transaction", []), {"resourceType": "Bundle", "type": "transaction"}):
        response = post_bundle(client, base_url, body)
        assert response.status_code == 200, response.text
        answer = response.json()
        assert answer["type"] == "transaction-response"
        assert "entry" not in answer, answer
