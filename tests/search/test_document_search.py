"""IHE MHD Find Document References (ITI-67) and Find Document Lists (ITI-66), with the search
parameters MHD and the ANS PDSm guide name, on the session server (R4 core and our guide).

Every parameter the two transactions name is tried on documents and lists shaped as MHD
comprehensive ones (written here from the specification), and must find exactly the resources
it should. `creation`, `designationType` and `sourceId` are MHD's own parameters, which no
loaded package defines: our guide (profiles/) does, and the CapabilityStatement says so.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from .support import Data, uid

GUIDE = "https://fhir-server.dev/ig/coordination/SearchParameter/"
INS = "urn:oid:1.2.250.1.213.1.4.8"  # INS-NIR, the French national health identifier
LIST_TYPES = "https://profiles.ihe.net/ITI/MHD/CodeSystem/MHDlistTypes"
MHD_EXT = "https://profiles.ihe.net/ITI/MHD/StructureDefinition/"
LOINC = "http://loinc.org"
CONFIDENTIALITY = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
FORMAT = "http://ihe.net/fhir/ihe.formatcode.fhir/CodeSystem/formatcode"
EVENT = "https://mos.esante.gouv.fr/NOS/TRE_A00-ProducteurDocNonPS/FHIR/TRE-A00-ProducteurDocNonPS"
FACILITY = "https://mos.esante.gouv.fr/NOS/TRE_R02-SecteurActivite/FHIR/TRE-R02-SecteurActivite"
SETTING = "https://mos.esante.gouv.fr/NOS/TRE_A01-CadreExercice/FHIR/TRE-A01-CadreExercice"
CLASS = "https://mos.esante.gouv.fr/NOS/TRE_A03-ClasseDocument/FHIR/TRE-A03-ClasseDocument"
URI = "urn:ietf:rfc:3986"

# The parameters ITI-67 and ITI-66 name (MHD 4.2), with those the PDSm server statement adds.
ITI67 = {"author", "category", "creation", "event", "facility", "format", "identifier", "patient", "period",
         "related", "relatesto", "security-label", "setting", "status", "subject", "type"}
ITI66 = {"code", "date", "designationType", "identifier", "patient", "source", "sourceId", "status", "subject",
         "title"}


def coding(system: str, code: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code}]}


def ins(sex: str) -> str:
    """A fresh INS-NIR with its key (97 − NIR mod 97): sex, year, month, department 75, commune,
    order drawn at random."""
    nir = f"{sex}{random.randint(40, 99)}{random.randint(1, 12):02d}75{random.randint(1, 999_999):06d}"
    return f"{nir}{97 - int(nir) % 97:02d}"


class World:
    """Two patients (each with an INS), two practitioners, an encounter, four documents and
    three lists, tagged for one test module."""

    def __init__(self, data: Data):
        self.data = data
        self.ins = {"a": ins("1"), "b": ins("2")}
        self.pa = data.create({"resourceType": "Patient", "name": [{"family": "Lemaire", "given": ["Alice"]}],
                               "identifier": [{"system": INS, "value": self.ins["a"]}]})["id"]
        self.pb = data.create({"resourceType": "Patient", "name": [{"family": "Bernard", "given": ["Basile"]}],
                               "identifier": [{"system": INS, "value": self.ins["b"]}]})["id"]
        self.dupont = data.create({"resourceType": "Practitioner",
                                   "name": [{"family": "Dupont", "given": ["Jeanne"]}]})["id"]
        self.leroy = data.create({"resourceType": "Practitioner", "name": [{"family": "Leroy", "given": ["Marc"]}]})["id"]
        self.encounter = data.create({"resourceType": "Encounter", "status": "finished",
                                      "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                                                "code": "AMB"},
                                      "subject": {"reference": f"Patient/{self.pa}"}})["id"]
        self.ids = {"d1": uid("doc"), "d2": uid("doc"), "ss": uid("set")}
        self.d1 = self.document(
            self.pa, self.dupont, "current", "11488-4", "N", "2024-03-10T10:00:00+01:00", "urn:ihe:iti:xds-sd:pdf:2008",
            "GENERATION_AUTO", "SA01", "AMBULATOIRE", ("2024-03-01", "2024-03-05"),
            masterIdentifier={"system": URI, "value": f"urn:oid:1.2.250.{self.ids['d1']}"},
            related=[{"reference": f"Encounter/{self.encounter}"}])
        self.d2 = self.document(
            self.pb, self.leroy, "superseded", "34133-9", "R", "2024-03-11T08:00:00Z", "urn:ihe:pcc:xds-ms:2007",
            "PATIENT", "SA07", "LIBERAL", ("2024-04-02", "2024-04-20"),
            identifier=[{"system": URI, "value": f"urn:uuid:{self.ids['d2']}"}])
        self.d3 = self.document(self.pa, None, "entered-in-error", "11488-4", "N", "2024-03-12", None,
                                None, None, None, None)
        self.d4 = self.document(self.pb, None, "current", "18842-5", "V", "2010-06-15T12:00:00Z", None,
                                None, None, None, None)
        self.d5 = self.document(self.pa, None, "current", "18842-5", "N", None, None, None, None, None, None,
                                relatesTo=[{"code": "appends", "target": {"reference": f"DocumentReference/{self.d1}"}}])
        self.ss1 = self.lists("submissionset", self.pa, f"Practitioner/{self.dupont}", "2024-03-10T11:00:00+01:00",
                             "current", designation="11502-2", source_id="urn:oid:1.2.250.1.999.1",
                             identifier=self.ids["ss"], items=[self.d1])
        self.folder = self.lists("folder", self.pb, f"Practitioner/{self.leroy}", "2024-05-01", "current",
                                designation="34133-9", items=[self.d4])
        self.ss2 = self.lists("submissionset", self.pb, f"Patient/{self.pb}", "2024-06-01", "retired",
                             source_id="urn:oid:1.2.250.1.999.2", items=[self.d2])

    def document(self, patient: str, author: str | None, status: str, type_code: str, label: str,
                 creation: str | None, format_code: str | None, event: str | None, facility: str | None,
                 setting: str | None, period: tuple[str, str] | None, **more: Any) -> str:
        attachment: dict[str, Any] = {"contentType": "application/pdf", "url": f"urn:test:{uid()}"}
        if creation:
            attachment["creation"] = creation
        content: dict[str, Any] = {"attachment": attachment}
        if format_code:
            content["format"] = {"system": FORMAT, "code": format_code}
        context: dict[str, Any] = {}
        if event:
            context["event"] = [coding(EVENT, event)]
        if facility:
            context["facilityType"] = coding(FACILITY, facility)
        if setting:
            context["practiceSetting"] = coding(SETTING, setting)
        if period:
            context["period"] = {"start": period[0], "end": period[1]}
        if "related" in more:
            context["related"] = more.pop("related")
        resource: dict[str, Any] = {
            "resourceType": "DocumentReference", "status": status, "type": coding(LOINC, type_code),
            "category": [coding(CLASS, "10" if type_code == "11488-4" else "20")],
            "subject": {"reference": f"Patient/{patient}"}, "securityLabel": [coding(CONFIDENTIALITY, label)],
            "content": [content], **more}
        if author:
            resource["author"] = [{"reference": f"Practitioner/{author}"}]
        if context:
            resource["context"] = context
        return self.data.create(resource)["id"]

    def lists(self, kind: str, patient: str, source: str, date: str, status: str, designation: str | None = None,
             source_id: str | None = None, identifier: str | None = None, items: list[str] = ()) -> str:
        extensions = []
        if designation:
            extensions.append({"url": f"{MHD_EXT}ihe-designationType", "valueCodeableConcept": coding(LOINC, designation)})
        if source_id:
            extensions.append({"url": f"{MHD_EXT}ihe-sourceId", "valueIdentifier": {"system": URI, "value": source_id}})
        resource: dict[str, Any] = {
            "resourceType": "List", "status": status, "mode": "working", "code": coding(LIST_TYPES, kind),
            "subject": {"reference": f"Patient/{patient}"}, "source": {"reference": source}, "date": date,
            "identifier": [{"system": URI, "value": f"urn:uuid:{identifier or uid()}"}],
            "entry": [{"item": {"reference": f"DocumentReference/{i}"}} for i in items]}
        if extensions:
            resource["extension"] = extensions
        return self.data.create(resource)["id"]


@pytest.fixture(scope="module")
def world(base_url) -> Iterator[World]:
    with httpx.Client(base_url=base_url, timeout=60, headers={"Accept": "application/fhir+json"}) as client:
        yield World(Data(client))


def found(world: World, type_: str, pairs: list[tuple[str, str]] = (), **params: str) -> set[str]:
    """The ids of the matches (of this module's resources); no parameter may have been ignored.
    Keyword names: `__` stands for `.` and `_` for `-` (`patient__identifier`, `security_label`)."""
    pairs = list(pairs) + [(_name(k), v) for k, v in params.items()]
    bundle = world.data.bundle(f"/{type_}", pairs)
    outcomes = [e for e in bundle.get("entry", ()) if e["search"]["mode"] == "outcome"]
    assert not outcomes, outcomes
    ids = [e["resource"]["id"] for e in bundle.get("entry", ()) if e["search"]["mode"] == "match"]
    assert len(ids) == bundle.get("total", len(ids)), bundle
    return set(ids)


def _name(keyword: str) -> str:
    return keyword[:1] + keyword[1:].replace("__", ".").replace("_", "-")


def docs(world: World, *names: str) -> set[str]:
    return {getattr(world, n) for n in names}


# -- ITI-67: DocumentReference ------------------------------------------------------------------

@pytest.mark.parametrize("value, expected", [
    ("2024-03-10", {"d1"}),
    ("eq2024-03-10", {"d1"}),
    ("ne2024-03-10", {"d2", "d3", "d4"}),
    ("gt2024-03-10", {"d2", "d3"}),
    ("lt2024-03-11", {"d1", "d4"}),
    ("ge2024-03-11", {"d2", "d3"}),
    ("le2024-03-11", {"d1", "d2", "d4"}),
    ("sa2024-03-10", {"d2", "d3"}),
    ("eb2024-03-12", {"d1", "d2", "d4"}),
    ("ap2010-06-15", {"d4"}),  # 10% of 16 years either side: the 2024 documents are far outside
    ("2024-03-10T09:00:00Z", {"d1"}),  # the same instant as 10:00+01:00
    ("2024-03", {"d1", "d2", "d3"}),
    ("ge2024-03-10T09:30:00Z", {"d2", "d3"}),
])
def test_creation_with_every_prefix(world, value, expected):
    """`creation` (MHD DocumentReference-Creation) on content.attachment.creation; a document
    without a creation date (d5) matches no prefix, `ne` included."""
    assert found(world, "DocumentReference", creation=value) == docs(world, *expected)


def test_creation_is_defined_by_our_guide_and_stated(world):
    r = world.data.client.get("/metadata")
    statement = {res["type"]: {p["name"]: p for p in res.get("searchParam", ())}
                 for res in r.json()["rest"][0]["resource"]}
    assert statement["DocumentReference"]["creation"] == {
        "name": "creation", "definition": GUIDE + "coord-sp-documentreference-creation", "type": "date"}
    assert statement["List"]["designationType"]["definition"] == GUIDE + "coord-sp-list-designation-type"
    assert statement["List"]["sourceId"]["definition"] == GUIDE + "coord-sp-list-source-id"
    assert ITI67 <= set(statement["DocumentReference"]), ITI67 - set(statement["DocumentReference"])
    assert ITI66 <= set(statement["List"]), ITI66 - set(statement["List"])


def test_patient_and_its_ins(world):
    assert found(world, "DocumentReference", patient=world.pa) == docs(world, "d1", "d3", "d5")
    assert found(world, "DocumentReference", patient=f"Patient/{world.pb}") == docs(world, "d2", "d4")
    ins = f"{INS}|{world.ins['a']}"
    assert found(world, "DocumentReference", patient__identifier=ins) == docs(world, "d1", "d3", "d5")
    assert found(world, "DocumentReference", **{"patient:Patient.identifier": ins}) == docs(world, "d1", "d3", "d5")
    assert found(world, "DocumentReference", patient__identifier=f"{INS}|nobody") == set()
    assert found(world, "DocumentReference", subject=f"Patient/{world.pb}") == docs(world, "d2", "d4")


def test_author_given_and_family(world):
    assert found(world, "DocumentReference", author__given="Jeanne") == docs(world, "d1")
    assert found(world, "DocumentReference", author__family="Leroy") == docs(world, "d2")
    assert found(world, "DocumentReference", author__family="dup") == docs(world, "d1")  # string: starts with
    assert found(world, "DocumentReference", **{"author:Practitioner.family": "Leroy"}) == docs(world, "d2")
    assert found(world, "DocumentReference", author__given="Basile") == set()  # a patient's name, not an author's
    assert found(world, "DocumentReference", author=f"Practitioner/{world.dupont}") == docs(world, "d1")


def test_status_type_category(world):
    assert found(world, "DocumentReference", status="current") == docs(world, "d1", "d4", "d5")
    assert found(world, "DocumentReference", status="superseded,entered-in-error") == docs(world, "d2", "d3")
    assert found(world, "DocumentReference", type=f"{LOINC}|11488-4") == docs(world, "d1", "d3")
    assert found(world, "DocumentReference", type="18842-5") == docs(world, "d4", "d5")
    assert found(world, "DocumentReference", category=f"{CLASS}|20") == docs(world, "d2", "d4", "d5")


def test_security_label_and_format_tokens(world):
    assert found(world, "DocumentReference", security_label=f"{CONFIDENTIALITY}|N") == docs(world, "d1", "d3", "d5")
    assert found(world, "DocumentReference", security_label="R,V") == docs(world, "d2", "d4")
    assert found(world, "DocumentReference", **{"security-label:not": f"{CONFIDENTIALITY}|N"}) == \
        docs(world, "d2", "d4")
    assert found(world, "DocumentReference", format=f"{FORMAT}|urn:ihe:iti:xds-sd:pdf:2008") == docs(world, "d1")
    assert found(world, "DocumentReference", format="urn:ihe:pcc:xds-ms:2007") == docs(world, "d2")
    assert found(world, "DocumentReference", **{"format:missing": "true"}) == docs(world, "d3", "d4", "d5")


def test_event_facility_setting_period(world):
    assert found(world, "DocumentReference", event=f"{EVENT}|GENERATION_AUTO") == docs(world, "d1")
    assert found(world, "DocumentReference", event="PATIENT") == docs(world, "d2")
    assert found(world, "DocumentReference", facility=f"{FACILITY}|SA07") == docs(world, "d2")
    assert found(world, "DocumentReference", setting=f"{SETTING}|AMBULATOIRE") == docs(world, "d1")
    assert found(world, "DocumentReference", period="2024-03") == docs(world, "d1")  # eq: the period lies within March
    assert found(world, "DocumentReference", period="ge2024-04-01") == docs(world, "d2")
    assert found(world, "DocumentReference", period="lt2024-04-01") == docs(world, "d1")


def test_related_relatesto_identifier(world):
    assert found(world, "DocumentReference", related=f"Encounter/{world.encounter}") == docs(world, "d1")
    assert found(world, "DocumentReference", relatesto=f"DocumentReference/{world.d1}") == docs(world, "d5")
    assert found(world, "DocumentReference", relatesto=world.d1) == docs(world, "d5")
    assert found(world, "DocumentReference", relation="appends") == docs(world, "d5")
    assert found(world, "DocumentReference", relation="replaces") == set()
    assert found(world, "DocumentReference", identifier=f"{URI}|urn:oid:1.2.250.{world.ids['d1']}") == docs(world, "d1")
    assert found(world, "DocumentReference", identifier=f"urn:uuid:{world.ids['d2']}") == docs(world, "d2")


def test_a_find_as_mhd_sends_it(world):
    """An ITI-67 query: the patient's INS, current documents, a type and a creation window."""
    assert found(world, "DocumentReference", [
        ("patient.identifier", f"{INS}|{world.ins['a']}"), ("status", "current"), ("type", f"{LOINC}|11488-4"),
        ("creation", "ge2024-03-01"), ("creation", "lt2024-04-01")]) == docs(world, "d1")


# -- ITI-66: List ---------------------------------------------------------------------------------

def test_list_code_status_date(world):
    assert found(world, "List", code=f"{LIST_TYPES}|submissionset") == docs(world, "ss1", "ss2")
    assert found(world, "List", code=f"{LIST_TYPES}|folder") == docs(world, "folder")
    assert found(world, "List", status="retired") == docs(world, "ss2")
    assert found(world, "List", date="2024-03-10") == docs(world, "ss1")
    assert found(world, "List", date="ge2024-05-01") == docs(world, "folder", "ss2")


def test_list_patient_subject_source(world):
    assert found(world, "List", patient=world.pa) == docs(world, "ss1")
    assert found(world, "List", patient__identifier=f"{INS}|{world.ins['b']}") == docs(world, "folder", "ss2")
    assert found(world, "List", subject=f"Patient/{world.pb}") == docs(world, "folder", "ss2")
    assert found(world, "List", source__given="Jeanne") == docs(world, "ss1")
    assert found(world, "List", source__family="Leroy") == docs(world, "folder")
    assert found(world, "List", source__family="Bernard") == docs(world, "ss2")  # the patient as source
    assert found(world, "List", **{"source:Patient.family": "Bernard"}) == docs(world, "ss2")
    assert found(world, "List", **{"source:Practitioner.family": "Bernard"}) == set()


def test_list_designation_type_source_id_identifier(world):
    assert found(world, "List", designationType=f"{LOINC}|11502-2") == docs(world, "ss1")
    assert found(world, "List", designationType="34133-9") == docs(world, "folder")
    assert found(world, "List", sourceId=f"{URI}|urn:oid:1.2.250.1.999.2") == docs(world, "ss2")
    assert found(world, "List", sourceId="urn:oid:1.2.250.1.999.1") == docs(world, "ss1")
    assert found(world, "List", **{"designationType:missing": "true"}) == docs(world, "ss2")
    assert found(world, "List", identifier=f"{URI}|urn:uuid:{world.ids['ss']}") == docs(world, "ss1")


def test_list_item_and_documents_of_a_submission_set(world):
    assert found(world, "List", item=f"DocumentReference/{world.d2}") == docs(world, "ss2")
    assert found(world, "DocumentReference", _list=world.ss1) == docs(world, "d1")
