"""Terminology operations on a server started with FR Core loaded (FHIR_PACKAGES)."""

from __future__ import annotations

import httpx
import pytest

from .support import GENDER, start_server

FR = "https://hl7.fr/ig/fhir/core"


@pytest.fixture(scope="module")
def fr_client(tmp_path_factory, r4_examples, fr_core_tgz):
    running = start_server(tmp_path_factory.mktemp("fhir-fr-terminology"),
                           extra_env={"FHIR_PACKAGES": str(fr_core_tgz)})
    try:
        with httpx.Client(base_url=running.base_url, timeout=60, headers={"Accept": "application/fhir+json"}) as c:
            yield c
    finally:
        running.stop()


def codes(response) -> list[str]:
    assert response.status_code == 200, response.text
    return [c["code"] for c in response.json()["expansion"].get("contains", ())]


def test_expand_fr_core_value_sets(fr_client):
    assert codes(fr_client.get("/ValueSet/$expand", params={"url": f"{FR}/ValueSet/fr-core-vs-patient-gender"})) == \
        ["male", "female", "unknown"]
    marital = fr_client.get("/ValueSet/$expand", params={"url": f"{FR}/ValueSet/fr-core-vs-marital-status"})
    found = codes(marital)
    assert found[0] == "PACS" and "M" in found and found[-1] == "UNK"  # FR code system, v3-MaritalStatus, NullFlavor
    used = {p["valueUri"] for p in marital.json()["expansion"]["parameter"] if p["name"] == "used-codesystem"}
    assert f"{FR}/CodeSystem/fr-core-cs-marital-status|2.2.0" in used
    warnings = [p["valueString"] for p in marital.json()["expansion"]["parameter"] if p["name"] == "warning"]
    assert any("version 4.0.0" in w for w in warnings)  # asked for a v3 version the R4 package does not carry
    use = fr_client.get("/ValueSet/$expand", params={"url": f"{FR}/ValueSet/fr-core-vs-patient-identifier-use-pi"})
    assert codes(use) == ["usual", "temp", "secondary", "old"]


def test_fr_text_filter_ignores_accents(fr_client):
    r = fr_client.get("/ValueSet/$expand", params={"url": f"{FR}/ValueSet/fr-core-vs-location-type", "filter": "etage"})
    assert [(c["code"], c["display"]) for c in r.json()["expansion"]["contains"]] == [("ETAG", "Étage")]


def test_fr_value_set_over_a_french_nomenclature_not_loaded_is_422(fr_client):
    r = fr_client.get("/ValueSet/$expand", params={"url": f"{FR}/ValueSet/fr-core-vs-practitioner-specialty"})
    assert r.status_code == 422, r.text
    assert "TRE_R38-SpecialiteOrdinale" in r.json()["issue"][0]["diagnostics"]


def test_fr_validate_code_and_lookup(fr_client):
    url = f"{FR}/ValueSet/fr-core-vs-patient-gender"
    r = fr_client.get("/ValueSet/$validate-code", params={"url": url, "system": GENDER, "code": "other"})
    assert r.json()["parameter"][0] == {"name": "result", "valueBoolean": False}
    r = fr_client.get("/ValueSet/$validate-code", params={"url": url, "system": GENDER, "code": "female"})
    assert r.json()["parameter"][0] == {"name": "result", "valueBoolean": True}
    r = fr_client.get("/CodeSystem/$lookup", params={"system": f"{FR}/CodeSystem/fr-core-cs-location-type",
                                                     "code": "ETAG"})
    assert r.status_code == 200, r.text
    assert {"name": "display", "valueString": "Étage"} in r.json()["parameter"]


def test_search_in_a_fr_core_value_set(fr_client):
    ids = {}
    for gender in ("male", "other"):
        r = fr_client.post("/Patient", json={"resourceType": "Patient", "gender": gender,
                                             "name": [{"family": "Terminologie"}]})
        assert r.status_code == 201, r.text
        ids[gender] = r.json()["id"]
    r = fr_client.get("/Patient", params={"gender:in": f"{FR}/ValueSet/fr-core-vs-patient-gender",
                                          "family": "Terminologie"})
    assert r.status_code == 200, r.text
    found = {e["resource"]["id"] for e in r.json().get("entry", ()) if e.get("search", {}).get("mode") != "outcome"}
    assert ids["male"] in found and ids["other"] not in found
