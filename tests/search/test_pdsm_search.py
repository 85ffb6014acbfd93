"""The ANS PDSm guide (ans.fhir.fr.pdsm 3.1.1) loaded with FHIR_PACKAGES, on a server of this
module's own: it starts although its dependency ihe.iti.mhd 4.2.0 is nowhere to be had (a warning
says so), PDSm's own search parameters work, and those it restates (List `patient`, List `source`
twice, once per target) leave the R4 ones in charge, so bare ids and chains keep working. The
package's own examples validate against its profiles with the snapshots it carries; the errors
left are the examples' own. Skipped without the package, failed under CI=true (tests/packages.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests import packages
from tests.conftest import start_server

from .support import Data

PDSM = "https://interop.esante.gouv.fr/ig/fhir/pdsm/"
ARCHIVED = PDSM + "StructureDefinition/pdsm-ext-is-archived"
AUTHOR_ORG = "https://profiles.ihe.net/ITI/MHD/StructureDefinition/ihe-authorOrg"
LIST_TYPES = "https://profiles.ihe.net/ITI/MHD/CodeSystem/MHDlistTypes"


@pytest.fixture(scope="module")
def pdsm_tgz():
    return packages.french_package("ans.fhir.fr.pdsm", "3.1.1")


@pytest.fixture(scope="module")
def pdsm_server(tmp_path_factory, r4_examples, pdsm_tgz):
    running = start_server(tmp_path_factory.mktemp("pdsm"),
                           extra_env={"FHIR_PACKAGES": str(pdsm_tgz), "FHIR_AUDIT": "false"})
    yield running
    running.stop()


@pytest.fixture(scope="module")
def data(pdsm_server) -> Iterator[Data]:
    with httpx.Client(base_url=pdsm_server.base_url, timeout=60, headers={"Accept": "application/fhir+json"}) as c:
        yield Data(c)


def example(pdsm_tgz, name: str) -> dict[str, Any]:
    return packages.package_example(pdsm_tgz, name)


def ids(data: Data, type_: str, params: dict[str, str]) -> set[str]:
    bundle = data.bundle(f"/{type_}", params)
    assert not [e for e in bundle.get("entry", ()) if e["search"]["mode"] == "outcome"], bundle
    return {e["resource"]["id"] for e in bundle.get("entry", ()) if e["search"]["mode"] == "match"}


def test_starts_without_mhd_and_says_so(pdsm_server, data):
    log = pdsm_server.log()
    assert "needs ihe.iti.mhd#4.2.0, which is not in the cache" in log
    assert "restates http://hl7.org/fhir/SearchParameter/List-source" in log
    assert "with another meaning" not in log  # PDSm redefines nothing, it restates
    statement = data.client.get("/metadata").json()
    params = {r["type"]: {p["name"]: p.get("definition") for p in r.get("searchParam", ())}
              for r in statement["rest"][0]["resource"]}
    assert params["DocumentReference"]["period-start"] == PDSM + "SearchParameter/PDSm-DocumentReference-period-start"
    assert params["DocumentReference"]["isArchived"] == PDSM + "SearchParameter/PDSm-isArchived"
    assert params["List"]["authorOrg"] == PDSM + "SearchParameter/PDSm-List-authorOrg"
    assert params["List"]["patient"] == "http://hl7.org/fhir/SearchParameter/clinical-patient"
    assert params["List"]["source"] == "http://hl7.org/fhir/SearchParameter/List-source"
    assert params["DocumentReference"]["creation"].startswith("https://fhir-server.dev/ig/coordination/")
    assert "StructureDefinition/pdsm-comprehensive-document-reference" in \
        " ".join(next(r for r in statement["rest"][0]["resource"] if r["type"] == "DocumentReference")["supportedProfile"])


@pytest.fixture(scope="module")
def world(data) -> dict[str, str]:
    w: dict[str, str] = {}
    w["pa"] = data.create({"resourceType": "Patient", "name": [{"family": "Pdsm", "given": ["Paule"]}],
                           "identifier": [{"system": "urn:test:pdsm", "value": data.code}]})["id"]
    w["gp"] = data.create({"resourceType": "Practitioner", "name": [{"family": "Généraliste", "given": ["Gaël"]}]})["id"]
    w["role"] = data.create({"resourceType": "PractitionerRole", "practitioner": {"reference": f"Practitioner/{w['gp']}"}})["id"]
    w["org"] = data.create({"resourceType": "Organization", "name": "Clinique des Tilleuls"})["id"]
    w["other_org"] = data.create({"resourceType": "Organization", "name": "Centre Hospitalier"})["id"]

    def doc(start: str, end: str, archived: bool | None) -> str:
        resource: dict[str, Any] = {
            "resourceType": "DocumentReference", "status": "current",
            "subject": {"reference": f"Patient/{w['pa']}"},
            "content": [{"attachment": {"contentType": "text/plain", "url": "urn:test:elsewhere"}}],
            "context": {"period": {"start": start, "end": end}}}
        if archived is not None:
            resource["extension"] = [{"url": ARCHIVED, "valueBoolean": archived}]
        return data.create(resource)["id"]

    w["d1"] = doc("2024-01-10", "2024-01-20", True)
    w["d2"] = doc("2024-02-10", "2024-03-20", False)
    w["d3"] = doc("2024-03-01", "2024-03-02", None)

    def folder(source: str, org: str, archived: bool) -> str:
        return data.create({
            "resourceType": "List", "status": "current", "mode": "working",
            "code": {"coding": [{"system": LIST_TYPES, "code": "folder"}]},
            "subject": {"reference": f"Patient/{w['pa']}"}, "source": {"reference": source},
            "extension": [{"url": AUTHOR_ORG, "valueReference": {"reference": f"Organization/{org}"}},
                          {"url": ARCHIVED, "valueBoolean": archived}],
            "entry": [{"item": {"reference": f"DocumentReference/{w['d1']}"}}]})["id"]

    w["l_gp"] = folder(f"Practitioner/{w['gp']}", w["org"], False)
    w["l_role"] = folder(f"PractitionerRole/{w['role']}", w["other_org"], True)
    w["l_patient"] = folder(f"Patient/{w['pa']}", w["org"], False)
    return w


def test_period_start_and_end(data, world):
    assert ids(data, "DocumentReference", {"period-start": "ge2024-02-01"}) == {world["d2"], world["d3"]}
    assert ids(data, "DocumentReference", {"period-start": "lt2024-02-01"}) == {world["d1"]}
    assert ids(data, "DocumentReference", {"period-end": "2024-03-20"}) == {world["d2"]}
    assert ids(data, "DocumentReference", {"period-end": "le2024-03-02"}) == {world["d1"], world["d3"]}


def test_is_archived_on_documents_and_lists(data, world):
    assert ids(data, "DocumentReference", {"isArchived": "true"}) == {world["d1"]}
    assert ids(data, "DocumentReference", {"isArchived": "false"}) == {world["d2"]}
    assert ids(data, "DocumentReference", {"isArchived:missing": "true"}) == {world["d3"]}
    assert ids(data, "List", {"isArchived": "true"}) == {world["l_role"]}


def test_list_author_org(data, world):
    assert ids(data, "List", {"authorOrg": f"Organization/{world['org']}"}) == {world["l_gp"], world["l_patient"]}
    assert ids(data, "List", {"authorOrg:Organization": world["other_org"]}) == {world["l_role"]}
    assert ids(data, "List", {"authorOrg:Organization.name": "centre"}) == {world["l_role"]}
    # PDSm names no target for authorOrg: a bare id or an untyped chain cannot be read, and says so
    for params in ({"authorOrg": world["org"]}, {"authorOrg.name": "clinique"}):
        r = data.get("/List", params)
        assert r.status_code == 400, r.text
        assert "names no target type" in r.text


def test_list_patient_and_source_keep_the_r4_definitions(data, world):
    everything = {world["l_gp"], world["l_role"], world["l_patient"]}
    assert ids(data, "List", {"patient": world["pa"]}) == everything  # a bare id: PDSm's patient has no target
    assert ids(data, "List", {"patient.identifier": f"urn:test:pdsm|{data.code}"}) == everything
    assert ids(data, "List", {"patient.identifier": "urn:test:pdsm|nobody"}) == set()
    assert ids(data, "List", {"source": f"Practitioner/{world['gp']}"}) == {world["l_gp"]}
    assert ids(data, "List", {"source": f"PractitionerRole/{world['role']}"}) == {world["l_role"]}
    assert ids(data, "List", {"source": f"Patient/{world['pa']}"}) == {world["l_patient"]}
    assert ids(data, "List", {"source.given": "Gaël"}) == {world["l_gp"]}
    assert ids(data, "List", {"source.family": "Pdsm"}) == {world["l_patient"]}


@pytest.mark.parametrize("name, errors", [
    ("DocumentReference-PDSmSimplifiedExample", set()),
    ("List-ExampleFolder", set()),
    # the examples' own faults: contained resources with meta.versionId, a contained one unreferenced
    ("DocumentReference-exemple-pdsm-documentreference", {"dom-3", "dom-4"}),
    ("List-ExampleSubmissionSet", {"dom-4"}),
])
def test_the_package_examples_validate_against_its_profiles(data, pdsm_tgz, name, errors):
    resource = example(pdsm_tgz, name)
    profile = resource["meta"]["profile"][0]
    r = data.client.post(f"/{resource['resourceType']}/$validate", params={"profile": profile}, json=resource)
    assert r.status_code in (200, 400, 422), r.text
    found = [i for i in r.json()["issue"] if i["severity"] in ("error", "fatal")]
    assert {i["diagnostics"].split()[1] for i in found} == errors, found
    text = r.text
    assert "ihe-designationType" not in text or "no loaded package defines it" in text  # MHD's, not loaded
