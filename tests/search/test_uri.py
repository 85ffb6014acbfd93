"""uri search (R4 search.html#uri): exact match by default, `:below` (the value is a prefix of the
stored uri's path), `:above` (the stored uri is a prefix of the value); urn and canonical forms;
`_profile` and `_source`."""

from __future__ import annotations

import pytest

from .support import patient, uid


@pytest.fixture
def urls(data):
    u = uid("u")
    base = f"http://acme.example.org/{u}/fhir"

    def q(url):
        return data.create({"resourceType": "Questionnaire", "status": "active", "url": url})["id"]

    return base, {
        "vs123": q(f"{base}/ValueSet/123"),
        "vs124": q(f"{base}/ValueSet/124"),
        "root": q(f"{base}/"),
        "other": q(f"http://other.example.org/{u}/fhir/ValueSet/123"),
        "urn": q(f"urn:uuid:{u[1:9]}-0000-4000-8000-000000000000"),
        "oid": q("urn:oid:1.2.3.4." + str(int(u[1:9], 16))),
    }


def test_exact(data, urls):
    base, ids = urls
    assert data.ids("/Questionnaire", {"url": f"{base}/ValueSet/123"}) == {ids["vs123"]}
    assert data.ids("/Questionnaire", {"url": f"{base}/ValueSet/12"}) == set()
    assert data.ids("/Questionnaire", {"url": f"{base}/valueset/123"}) == set()  # uris are case-sensitive
    assert data.ids("/Questionnaire", {"url": f"{base}/ValueSet/123,{base}/ValueSet/124"}) == {ids["vs123"], ids["vs124"]}


def test_urns(data, urls):
    _, ids = urls
    urn = data.client.get(f"/Questionnaire/{ids['urn']}").json()["url"]
    oid = data.client.get(f"/Questionnaire/{ids['oid']}").json()["url"]
    assert data.ids("/Questionnaire", {"url": urn}) == {ids["urn"]}
    assert data.ids("/Questionnaire", {"url": oid}) == {ids["oid"]}


def test_below(data, urls):
    base, ids = urls
    assert data.ids("/Questionnaire", {"url:below": f"{base}/ValueSet"}) == {ids["vs123"], ids["vs124"]}
    assert data.ids("/Questionnaire", {"url:below": f"{base}/"}) == {ids["vs123"], ids["vs124"], ids["root"]}
    assert data.ids("/Questionnaire", {"url:below": f"{base}/ValueSet/123"}) == {ids["vs123"]}
    assert data.ids("/Questionnaire", {"url:below": "http://nowhere.example.org/"}) == set()


def test_above(data, urls):
    base, ids = urls
    # R4: the stored uri is a prefix (by path) of the value; the base written with its `/` counts
    assert data.ids("/Questionnaire", {"url:above": f"{base}/ValueSet/123/_history/5"}) == {ids["vs123"], ids["root"]}
    assert data.ids("/Questionnaire", {"url:above": f"{base}/ValueSet/125"}) == {ids["root"]}


def test_profile_and_source(data):
    u = uid("p")
    profile = f"http://example.org/{u}/StructureDefinition/my-patient"
    source = f"http://example.org/{u}/source#abc"
    p = data.create(patient(meta={"profile": [profile], "source": source}))
    data.create(patient(meta={"profile": [profile + "2"]}))
    assert data.ids("/Patient", {"_profile": profile}) == {p["id"]}
    assert data.ids("/Patient", {"_source": source}) == {p["id"]}
    assert data.ids("/Patient", {"_source": f"http://example.org/{u}/source"}) == set()
    assert len(data.ids("/Patient", {"_profile:below": f"http://example.org/{u}/StructureDefinition/"})) == 2


def test_canonical_uri_with_version(data):
    u = uid("v")
    url = f"http://example.org/{u}/Questionnaire/q"
    q = data.create({"resourceType": "Questionnaire", "status": "active", "url": url, "version": "2.0"})
    derived = data.create({"resourceType": "Questionnaire", "status": "active", "url": url + "-derived",
                           "derivedFrom": [f"{url}|2.0"]})
    assert data.ids("/Questionnaire", {"url": url}) == {q["id"]}
    assert data.ids("/Questionnaire", {"definition": f"{url}|2.0"}) == set()  # definition is item.definition
    assert data.ids("/Questionnaire", {"url": f"{url}-derived"}) == {derived["id"]}
