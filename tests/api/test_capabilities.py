"""The CapabilityStatement at /fhir/metadata, and that what it declares actually works."""

from __future__ import annotations

import json

import httpx
import pytest

from .support import FHIR_JSON_UTF8, assert_outcome, new_id

TYPE_INTERACTIONS = {"read", "vread", "update", "patch", "delete", "history-instance", "history-type", "create",
                     "search-type"}
SYSTEM_INTERACTIONS = {"history-system", "search-system", "transaction", "batch"}


@pytest.fixture(scope="module")
def r4_resource_types(r4_examples) -> set[str]:
    """Concrete R4 resource types, read straight from the package's StructureDefinitions."""
    out = set()
    for path in r4_examples.root.glob("StructureDefinition-*.json"):
        sd = json.loads(path.read_text(encoding="utf-8"))
        if (sd.get("kind") == "resource" and sd.get("derivation") == "specialization"
                and not sd.get("abstract") and sd["url"] == f"http://hl7.org/fhir/StructureDefinition/{sd['type']}"):
            out.add(sd["type"])
    return out


@pytest.fixture(scope="module")
def capability(base_url):
    import httpx  # noqa: PLC0415

    r = httpx.get(f"{base_url}/metadata", headers={"Accept": "application/fhir+json"})
    assert r.status_code == 200
    assert r.headers["content-type"] == FHIR_JSON_UTF8
    return r.json()


def test_capability_statement_header(capability, base_url):
    cs = capability
    assert cs["resourceType"] == "CapabilityStatement"
    assert cs["fhirVersion"] == "4.0.1"
    assert cs["status"] == "active"
    assert cs["kind"] == "instance"
    assert "application/fhir+json" in cs["format"] and "json" in cs["format"]
    assert not any("xml" in f for f in cs["format"])
    assert cs["implementation"]["url"] == base_url
    assert cs["software"]["name"] and cs["date"]
    assert len(cs["rest"]) == 1 and cs["rest"][0]["mode"] == "server"
    codes = [i["code"] for i in cs["rest"][0]["interaction"]]
    assert len(codes) == len(set(codes)) and set(codes) == SYSTEM_INTERACTIONS


def test_every_r4_resource_type_is_declared(capability, r4_resource_types):
    assert len(r4_resource_types) == 146
    declared = [r["type"] for r in capability["rest"][0]["resource"]]
    assert len(declared) == len(set(declared)) == 146
    assert set(declared) == r4_resource_types
    assert "MedicinalProduct" in declared and "EffectEvidenceSynthesis" in declared
    assert "Citation" not in declared  # R4B/R5 only


def test_each_resource_declares_its_interactions_and_flags(capability):
    for res in capability["rest"][0]["resource"]:
        type_ = res["type"]
        codes = [i["code"] for i in res["interaction"]]
        assert len(codes) == len(set(codes)), type_
        assert set(codes) == TYPE_INTERACTIONS, (type_, codes)
        assert res["profile"] == f"http://hl7.org/fhir/StructureDefinition/{type_}"
        assert res["versioning"] == "versioned-update"
        assert res["readHistory"] is True
        assert res["updateCreate"] is True
        assert res["conditionalCreate"] is True
        assert res["conditionalUpdate"] is True
        assert res["conditionalDelete"] == "single"
        assert res["conditionalRead"] == "full-support"


def test_metadata_formats(client, capability):
    pretty = client.get("/metadata", params={"_pretty": "true"})
    assert pretty.status_code == 200 and pretty.content.startswith(b'{\n  "resourceType": "CapabilityStatement"')
    fmt = client.get("/metadata", params={"_format": "json"})
    assert fmt.status_code == 200 and fmt.headers["content-type"] == FHIR_JSON_UTF8
    assert fmt.json()["fhirVersion"] == "4.0.1"
    assert_outcome(client.get("/metadata", params={"_format": "xml"}), 406)


def test_metadata_head_and_other_methods(client):
    head = client.head("/metadata")
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-type"] == FHIR_JSON_UTF8
    post = client.post("/metadata", json={"resourceType": "Parameters"})
    assert_outcome(post, 405)
    assert post.headers["allow"] == "GET, HEAD"


def test_the_capability_statement_is_valid_r4(client, capability):
    """The server's own validator accepts what the server says about itself."""
    r = client.post("/CapabilityStatement", json=capability)
    assert r.status_code == 201, r.text


SAMPLES = {
    "Patient": {"resourceType": "Patient", "active": True},
    "Observation": {"resourceType": "Observation", "status": "final", "code": {"text": "x"}},
    "MedicinalProduct": {"resourceType": "MedicinalProduct", "name": [{"productName": "x"}]},
    "Binary": {"resourceType": "Binary", "contentType": "text/plain", "data": "aGVsbG8="},
    "Bundle": {"resourceType": "Bundle", "type": "collection"},
    "CarePlan": {"resourceType": "CarePlan", "status": "active", "intent": "plan",
                 "subject": {"reference": "Patient/cap-subject"}},
}


@pytest.fixture(scope="module", autouse=True)
def _care_plan_subject(base_url):
    """The patient the CarePlan sample refers to: references must resolve (referential integrity)."""
    r = httpx.put(f"{base_url}/Patient/cap-subject", json={"resourceType": "Patient", "id": "cap-subject"})
    assert r.status_code in (200, 201), r.text


@pytest.mark.parametrize("type_", sorted(SAMPLES))
def test_declared_interactions_work(client, base_url, capability, type_):
    declared = next(r for r in capability["rest"][0]["resource"] if r["type"] == type_)
    codes = {i["code"] for i in declared["interaction"]}
    sample = SAMPLES[type_]
    assert codes == TYPE_INTERACTIONS

    created = client.post(f"/{type_}", json=sample)  # create
    assert created.status_code == 201, created.text
    id_ = created.json()["id"]
    since = created.json()["meta"]["lastUpdated"]
    assert client.get(f"/{type_}/{id_}").json() == created.json()  # read
    updated = client.put(f"/{type_}/{id_}", json={**sample, "id": id_})  # update
    assert updated.status_code == 200 and updated.headers["etag"] == 'W/"2"'
    assert client.get(f"/{type_}/{id_}/_history/1").json() == created.json()  # vread
    history = client.get(f"/{type_}/{id_}/_history").json()  # history-instance
    assert history["total"] == 2
    type_history = client.get(f"/{type_}/_history", params={"_since": since}).json()  # history-type
    assert {e["fullUrl"].rsplit("/", 1)[-1] for e in type_history["entry"]} == {id_}
    assert len(type_history["entry"]) == 2
    system = client.get("/_history", params={"_since": since}).json()  # history-system
    assert sum(1 for e in system["entry"] if e["fullUrl"].endswith(f"/{type_}/{id_}")) == 2
    found = client.get(f"/{type_}", params={"_id": id_})  # search-type
    assert found.status_code == 200 and found.json()["type"] == "searchset"
    assert [e["resource"]["id"] for e in found.json()["entry"]] == [id_]
    everywhere = client.get(base_url, params={"_id": id_})  # search-system: GET [base]?…
    assert everywhere.status_code == 200, everywhere.text
    assert [e["fullUrl"] for e in everywhere.json()["entry"]] == [f"{base_url}/{type_}/{id_}"]
    assert client.delete(f"/{type_}/{id_}").status_code == 200  # delete
    assert_outcome(client.get(f"/{type_}/{id_}"), 410)
    # updateCreate
    new = new_id("cap")
    assert client.put(f"/{type_}/{new}", json={**sample, "id": new}).status_code == 201
    # conditional create/update/delete by _id
    cond = client.post(f"/{type_}", json=sample, headers={"If-None-Exist": f"_id={new}"})
    assert cond.status_code == 200 and cond.json()["id"] == new
    cu = client.put(f"/{type_}", params={"_id": new}, json=sample)
    assert cu.status_code == 200 and cu.json()["id"] == new and cu.headers["etag"] == 'W/"2"'
    cd = client.delete(f"/{type_}", params={"_id": new})
    assert cd.status_code == 200
    assert_outcome(client.get(f"/{type_}/{new}"), 410)
    # conditionalRead: full-support
    live = client.put(f"/{type_}/{new}", json={**sample, "id": new})
    assert client.get(f"/{type_}/{new}", headers={"If-None-Match": live.headers["etag"]}).status_code == 304
    assert client.get(f"/{type_}/{new}",
                      headers={"If-Modified-Since": live.headers["last-modified"]}).status_code == 304


@pytest.mark.parametrize("type_", sorted(SAMPLES))
def test_declared_patch_works(client, type_):
    created = client.post(f"/{type_}", json=SAMPLES[type_])
    id_ = created.json()["id"]
    patched = client.patch(f"/{type_}/{id_}", content=b'[{"op": "add", "path": "/language", "value": "fr"}]',
                           headers={"Content-Type": "application/json-patch+json", "If-Match": 'W/"1"'})
    assert patched.status_code == 200, patched.text
    assert patched.json()["language"] == "fr" and patched.headers["etag"] == 'W/"2"'
