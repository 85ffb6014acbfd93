"""IHE MHD ITI-65 provide as the ANS PDSm guide profiles it, through HTTP on a server of its own:
the whole bundle is checked before anything is written (content size and SHA-1 against the
Binary or inline data, the SubmissionSet listing every document, one patient everywhere, the
patient existing, related documents existing and of the same patient); each refusal is a 422
naming the entry and the element and leaves every collection as it was. Then the round trip:
provide → find → retrieve the exact bytes → replace (the old document superseded in the same
transaction) → find only the current one → the replacement entered-in-error (the old one
current again), by a conditional PATCH on its identifier."""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.bundle.support import dump, dump_difference, mongo
from tests.conftest import start_server

SYSTEM = "urn:ietf:rfc:3986"
LIST_TYPES = "https://profiles.ihe.net/ITI/MHD/CodeSystem/MHDlistTypes"
PDF = b"%PDF-1.4\n\x00\x01\xff\xfe compte rendu \xe9\n%%EOF"


@pytest.fixture(scope="module")
def documents_server(tmp_path_factory, r4_examples):
    running = start_server(tmp_path_factory.mktemp("documents"), extra_env={"FHIR_AUDIT": "false"})
    yield running
    running.stop()


@pytest.fixture(scope="module")
def http(documents_server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=documents_server.base_url, timeout=60,
                      headers={"Accept": "application/fhir+json"}) as client:
        yield client


@pytest.fixture(scope="module")
def database(documents_server):
    client = mongo(documents_server)
    yield client
    client.close()


def urn() -> str:
    return f"urn:uuid:{uuid.uuid4()}"


def sha1(data: bytes) -> str:
    return base64.b64encode(hashlib.sha1(data).digest()).decode()  # noqa: S324 — what MHD names


@pytest.fixture(scope="module")
def patient(http) -> str:
    return _create(http, {"resourceType": "Patient", "name": [{"family": "Partage"}]})


@pytest.fixture(scope="module")
def other_patient(http) -> str:
    return _create(http, {"resourceType": "Patient", "name": [{"family": "Autre"}]})


def _create(http: httpx.Client, resource: dict[str, Any]) -> str:
    r = http.post(f"/{resource['resourceType']}", json=resource)
    assert r.status_code == 201, r.text
    return f"{resource['resourceType']}/{r.json()['id']}"


def document(patient: str, binary_url: str | None = None, content: bytes = PDF, **attachment: Any) -> dict[str, Any]:
    shown = {"contentType": "application/pdf", "size": len(content), "hash": sha1(content), **attachment}
    if binary_url is not None:
        shown["url"] = binary_url
    identifier = {"system": SYSTEM, "value": urn()}
    return {"resourceType": "DocumentReference", "status": "current", "masterIdentifier": identifier,
            "identifier": [identifier],
            "type": {"coding": [{"system": "http://loinc.org", "code": "11488-4"}]},
            "subject": {"reference": patient}, "date": "2026-12-01T10:00:00+01:00",
            "content": [{"attachment": {k: v for k, v in shown.items() if v is not None}}]}


def submission_set(patient: str | None, items: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {"resourceType": "List", "status": "current", "mode": "working",
                           "code": {"coding": [{"system": LIST_TYPES, "code": "submissionset"}]},
                           "date": "2026-12-01T10:00:00+01:00"}
    if items:
        out["entry"] = [{"item": {"reference": i}} for i in items]
    if patient:
        out["subject"] = {"reference": patient}
    return out


def provide(patient: str, content: bytes = PDF, doc: dict[str, Any] | None = None,
            listed: bool = True, list_patient: str | None = "same", extra: list[dict[str, Any]] = ()) -> dict:
    """An ITI-65 bundle: SubmissionSet, DocumentReference, Binary (its url the Binary's fullUrl)."""
    doc_url, binary_url = urn(), urn()
    doc = doc or document(patient, binary_url, content)
    doc.setdefault("content", [{}])[0].setdefault("attachment", {}).setdefault("url", binary_url)
    entries = [
        {"fullUrl": urn(), "resource": submission_set(patient if list_patient == "same" else list_patient,
                                                      [doc_url] if listed else []),
         "request": {"method": "POST", "url": "List"}},
        {"fullUrl": doc_url, "resource": doc, "request": {"method": "POST", "url": "DocumentReference"}},
        {"fullUrl": binary_url, "resource": {"resourceType": "Binary", "contentType": "application/pdf",
                                             "data": base64.b64encode(content).decode()},
         "request": {"method": "POST", "url": "Binary"}},
        *extra,
    ]
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def send(http: httpx.Client, bundle: dict[str, Any]) -> httpx.Response:
    return http.post("", json=bundle)


def refused(http: httpx.Client, database, bundle: dict[str, Any], entry: int, element: str,
            status: int = 422) -> str:
    """The bundle is refused naming `entry` and `element`, and nothing at all changed."""
    before = dump(database)
    r = send(http, bundle)
    assert r.status_code == status, (r.status_code, r.text[:1500])
    outcome = r.json()
    assert outcome["resourceType"] == "OperationOutcome", outcome
    text = json.dumps(outcome)
    assert f"entry {entry}" in text, text
    assert any(element in e for issue in outcome["issue"] for e in issue.get("expression", [])), text
    after = dump(database)
    assert before == after, dump_difference(before, after)
    return text


def locations(r: httpx.Response) -> list[str]:
    assert r.status_code == 200, r.text[:2000]
    return ["/".join(e["response"]["location"].split("/")[:2]) for e in r.json()["entry"]]


# -- refusals ------------------------------------------------------------------------------------

def test_a_wrong_size_is_refused(http, database, patient):
    bundle = provide(patient, doc=document(patient, size=len(PDF) + 1))
    text = refused(http, database, bundle, 1, "DocumentReference.content[0].attachment.size")
    assert f"holds {len(PDF)} bytes" in text


def test_a_wrong_hash_is_refused(http, database, patient):
    text = refused(http, database, provide(patient, doc=document(patient, hash=sha1(b"other"))), 1,
                   "DocumentReference.content[0].attachment.hash")
    assert sha1(PDF) in text  # the digest it should have been


def test_a_hex_hash_is_refused_saying_base64(http, database, patient):
    hexed = hashlib.sha1(PDF).hexdigest()  # noqa: S324
    text = refused(http, database, provide(patient, doc=document(patient, hash=hexed)), 1,
                   "DocumentReference.content[0].attachment.hash")
    assert "base64" in text


def test_a_content_type_other_than_the_binarys_is_refused(http, database, patient):
    refused(http, database, provide(patient, doc=document(patient, contentType="text/plain")), 1,
            "DocumentReference.content[0].attachment.contentType")


def test_inline_data_is_checked_too(http, database, patient):
    doc = document(patient, content=PDF, size=3)
    doc["content"][0]["attachment"]["data"] = base64.b64encode(PDF).decode()
    before = dump(database)
    r = http.post("/DocumentReference", json=doc)
    assert r.status_code == 422 and "content[0].attachment.size" in r.text, r.text
    assert dump(database) == before


def test_a_url_naming_no_binary_is_refused(http, database, patient):
    bundle = provide(patient)
    bundle["entry"][1]["resource"]["content"][0]["attachment"]["url"] = "Binary/does-not-exist"
    refused(http, database, bundle, 1, "DocumentReference.content[0].attachment.url")


def test_a_document_not_listed_by_the_submission_set_is_refused(http, database, patient):
    refused(http, database, provide(patient, listed=False), 1, "DocumentReference")


def test_a_submission_set_listing_a_patient_is_refused(http, database, patient):
    bundle = provide(patient)
    bundle["entry"][0]["resource"]["entry"].append({"item": {"reference": patient}})  # not a document
    refused(http, database, bundle, 0, "List.entry[1].item")


def test_documents_of_another_patient_are_refused(http, database, patient, other_patient):
    refused(http, database, provide(patient, list_patient=other_patient), 1, "DocumentReference.subject")


def test_a_submission_set_without_its_patient_is_refused(http, database, patient):
    refused(http, database, provide(patient, list_patient=None), 0, "List.subject")


def test_a_patient_that_does_not_exist_is_refused(http, database):
    text = refused(http, database, provide("Patient/nobody-here"), 0, "List.subject")
    assert "Patient/nobody-here" in text


def test_two_submission_sets_are_refused(http, database, patient):
    bundle = provide(patient)
    second = {"fullUrl": urn(), "resource": submission_set(patient, [bundle["entry"][1]["fullUrl"]]),
              "request": {"method": "POST", "url": "List"}}
    bundle["entry"].append(second)
    refused(http, database, bundle, 0, "List")


def test_a_relation_to_nothing_is_refused(http, database, patient):
    doc = document(patient)
    doc["relatesTo"] = [{"code": "replaces", "target": {"reference": "DocumentReference/not-stored"}}]
    refused(http, database, provide(patient, doc=doc), 1, "DocumentReference.relatesTo[0].target")


def test_a_relation_to_another_patients_document_is_refused(http, database, patient, other_patient):
    theirs = locations(send(http, provide(other_patient)))[1]
    doc = document(patient)
    doc["relatesTo"] = [{"code": "replaces", "target": {"reference": theirs}}]
    text = refused(http, database, provide(patient, doc=doc), 1, "DocumentReference.relatesTo[0].target")
    assert "same patient" in text


def test_the_pdsm_simplified_publish_example_is_refused_then_accepted_corrected(http, database, patient):
    """The PDSm package's own simplified-publish example carries 11 bytes of data with
    `size` 250000 and the SHA-1 of nothing: both are reported; corrected, it is stored."""
    import tarfile

    from tests import packages

    with tarfile.open(packages.french_package("ans.fhir.fr.pdsm", "3.1.1")) as archive:
        member = archive.extractfile("package/example/DocumentReference-PDSmSimplifiedExample.json")
        example = json.loads(member.read())
    for key in ("id", "meta", "author", "authenticator"):
        example.pop(key, None)
    example["subject"] = {"reference": patient}
    before = dump(database)
    r = http.post("/DocumentReference", json=example)
    assert r.status_code == 422, r.text
    expressions = {e for issue in r.json()["issue"] for e in issue.get("expression", [])}
    assert {"DocumentReference.content[0].attachment.size", "DocumentReference.content[0].attachment.hash"} \
        <= expressions, r.text
    assert dump(database) == before
    data = base64.b64decode(example["content"][0]["attachment"]["data"])
    example["content"][0]["attachment"].update(size=len(data), hash=sha1(data))
    assert http.post("/DocumentReference", json=example).status_code == 201


# -- the round trip ------------------------------------------------------------------------------

def test_provide_find_retrieve_replace_and_withdraw(http, database):
    patient = _create(http, {"resourceType": "Patient", "name": [{"family": "Aller-retour"}]})  # its documents alone
    first = locations(send(http, provide(patient)))
    submission, doc_key, binary_key = first
    stored = http.get(f"/{doc_key}").json()
    assert stored["content"][0]["attachment"]["url"] == binary_key  # the Binary's fullUrl, rewritten
    listed = http.get(f"/{submission}").json()
    assert listed["entry"][0]["item"]["reference"] == doc_key

    found = http.get("/DocumentReference", params={"patient": patient, "status": "current"}).json()
    assert [e["resource"]["id"] for e in found.get("entry", [])] == [doc_key.split("/")[1]]
    raw = http.get(f"/{binary_key}", headers={"Accept": "application/pdf"})
    assert raw.status_code == 200 and raw.content == PDF, (raw.status_code, raw.headers, raw.content[:200])

    replacement = document(patient, content=PDF + b"v2")
    replacement["relatesTo"] = [{"code": "replaces", "target": {"reference": doc_key}}]
    second = locations(send(http, provide(patient, content=PDF + b"v2", doc=replacement)))
    old = http.get(f"/{doc_key}").json()
    assert old["status"] == "superseded" and old["meta"]["versionId"] == "2"
    found = http.get("/DocumentReference", params={"patient": patient, "status": "current"}).json()
    assert [e["resource"]["id"] for e in found.get("entry", [])] == [second[1].split("/")[1]]

    # replacing the superseded one again is refused: only a current document can be replaced
    again = document(patient)
    again["relatesTo"] = [{"code": "replaces", "target": {"reference": doc_key}}]
    refused(http, database, provide(patient, doc=again), 1, "DocumentReference.relatesTo[0].target")

    # a transform relation leaves its target current
    transform = document(patient, content=b"<ClinicalDocument/>", contentType="application/pdf")
    transform["relatesTo"] = [{"code": "transforms", "target": {"reference": second[1]}}]
    locations(send(http, provide(patient, content=b"<ClinicalDocument/>", doc=transform)))
    assert http.get(f"/{second[1]}").json()["status"] == "current"

    # metadata update: the replacement withdrawn by a conditional PATCH on its identifier
    ident = replacement["masterIdentifier"]
    patched = http.patch("/DocumentReference", params={"identifier": f"{ident['system']}|{ident['value']}"},
                         content=json.dumps([{"op": "replace", "path": "/status", "value": "entered-in-error"}]),
                         headers={"Content-Type": "application/json-patch+json"})
    assert patched.status_code == 200, patched.text
    assert http.get(f"/{doc_key}").json()["status"] == "current"
    found = http.get("/DocumentReference", params={"patient": patient, "status": "current"}).json()
    assert doc_key.split("/")[1] in [e["resource"]["id"] for e in found.get("entry", [])]


def test_a_replacement_by_identifier_supersedes_in_one_transaction(http, patient):
    """A relation may name the replaced document by its identifier (XDS documents are known by
    their uniqueId), and a replacement sent alone (not in a provide bundle) supersedes too."""
    original = document(patient, binary_url=None)
    original["content"][0]["attachment"]["data"] = base64.b64encode(PDF).decode()
    created = http.post("/DocumentReference", json=original)
    assert created.status_code == 201, created.text
    replacement = document(patient, binary_url=None, content=b"v2")
    replacement["content"][0]["attachment"]["data"] = base64.b64encode(b"v2").decode()
    replacement["relatesTo"] = [{"code": "replaces", "target": {"identifier": original["masterIdentifier"]}}]
    r = http.post("/DocumentReference", json=replacement)
    assert r.status_code == 201, r.text
    assert http.get(f"/DocumentReference/{created.json()['id']}").json()["status"] == "superseded"
