"""A generator of Synthea-style patient Bundles, and the checks of what the server made of them.

Like Synthea's FHIR R4 export, a patient Bundle is a transaction whose entries have `urn:uuid:`
fullUrls and reference each other by them (Patient ← Encounter ← Observation/Condition, and a
Provenance targeting every resource), while practitioners and organizations are referenced
conditionally by identifier (`Practitioner?identifier=http://hl7.org/fhir/sid/us-npi|123`),
optionally created by the same Bundle with `ifNoneExist` (Synthea's
practitionerInformation/hospitalInformation Bundles, or the entries older versions put in each
patient Bundle). References also appear nested in backbone elements, in an extension and in a
contained resource, where the server must rewrite them too.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field
from typing import Any

NPI = "http://hl7.org/fhir/sid/us-npi"  # what Synthea writes
NPI_OID = "urn:oid:2.16.840.1.113883.4.6"  # the same system, as an OID (no `://` in the reference)
SYNTHEA_ORG = "https://github.com/synthetichealth/synthea"
ORG_URN = "urn:synthea:organization"
BIRTH_ENCOUNTER = "http://example.org/fhir/StructureDefinition/first-encounter"

LOINC = [("8302-2", "Body Height", "cm", 150, 190), ("29463-7", "Body Weight", "kg", 50, 110),
         ("8867-4", "Heart rate", "/min", 55, 100), ("2339-0", "Glucose", "mg/dL", 70, 140)]
SNOMED = [("44054006", "Diabetes"), ("38341003", "Hypertension"), ("195662009", "Acute viral pharyngitis"),
          ("10509002", "Acute bronchitis")]


@dataclass(frozen=True)
class Provider:
    """A practitioner or organization, known to patient Bundles by its identifier only."""

    kind: str  # Practitioner | Organization
    system: str
    value: str
    name: str

    @property
    def condition(self) -> str:
        return f"identifier={self.system}|{self.value}"

    @property
    def reference(self) -> str:
        return f"{self.kind}?{self.condition}"

    def resource(self) -> dict[str, Any]:
        out: dict[str, Any] = {"resourceType": self.kind, "identifier": [{"system": self.system,
                                                                         "value": self.value}]}
        if self.kind == "Practitioner":
            out["name"] = [{"family": self.name, "prefix": ["Dr."]}]
            out["active"] = True
        else:
            out["name"] = self.name
            out["active"] = True
        return out

    def entry(self) -> dict[str, Any]:
        return {"fullUrl": f"urn:uuid:{uuid.uuid4()}", "resource": self.resource(),
                "request": {"method": "POST", "url": self.kind, "ifNoneExist": self.condition}}


def providers(rng: random.Random, practitioners: int = 2, organizations: int = 2, npi_system: str = NPI_OID,
              org_system: str = ORG_URN) -> tuple[list[Provider], list[Provider]]:
    tag = uuid.UUID(int=rng.getrandbits(128)).hex[:10]
    prs = [Provider("Practitioner", npi_system, f"{tag}{9999990000 + i}", f"Practitioner{i}")
           for i in range(practitioners)]
    orgs = [Provider("Organization", org_system, f"{tag}-org-{i}", f"Hospital {i}") for i in range(organizations)]
    return prs, orgs


def provider_bundle(items: list[Provider]) -> dict[str, Any]:
    """Synthea's practitionerInformation/hospitalInformation Bundle: ifNoneExist creates."""
    return {"resourceType": "Bundle", "type": "transaction", "entry": [p.entry() for p in items]}


@dataclass
class PatientBundle:
    bundle: dict[str, Any]
    patient: str  # fullUrl of the Patient
    encounters: list[tuple[str, Provider, Provider]] = field(default_factory=list)  # (fullUrl, practitioner, org)
    observations: list[tuple[str, str, Provider]] = field(default_factory=list)  # (fullUrl, encounter, performer)
    conditions: list[tuple[str, str, Provider, str]] = field(default_factory=list)  # (…, asserter, evidence obs)
    provenance: str = ""
    provenance_targets: list[str] = field(default_factory=list)  # fullUrls, in order
    provider_entries: list[Provider] = field(default_factory=list)  # ifNoneExist creates in this Bundle
    family: str = ""

    def index(self, full_url: str) -> int:
        for i, item in enumerate(self.bundle["entry"]):
            if item.get("fullUrl") == full_url:
                return i
        raise KeyError(full_url)

    @property
    def written(self) -> list[str]:
        """fullUrls of the clinical resources (everything but the provider entries)."""
        return ([self.patient] + [e[0] for e in self.encounters] + [o[0] for o in self.observations]
                + [c[0] for c in self.conditions] + [self.provenance])


def _urn(rng: random.Random) -> str:
    return f"urn:uuid:{uuid.UUID(int=rng.getrandbits(128))}"


def patient_bundle(rng: random.Random, practitioners: list[Provider], organizations: list[Provider],
                   include_providers: bool = True, encounters: int = 3, observations: int = 2,
                   conditions: int = 1) -> PatientBundle:
    family = f"Synth{rng.getrandbits(40):x}"
    patient = _urn(rng)
    out = PatientBundle({"resourceType": "Bundle", "type": "transaction", "entry": []}, patient, family=family)
    entries: list[dict[str, Any]] = []
    if include_providers:
        out.provider_entries = list(practitioners) + list(organizations)
        entries.extend(p.entry() for p in out.provider_entries)
    gp, org = rng.choice(practitioners), rng.choice(organizations)
    patient_resource: dict[str, Any] = {
        "resourceType": "Patient",
        "identifier": [{"system": "https://github.com/synthetichealth/synthea", "value": str(uuid.UUID(
            int=rng.getrandbits(128)))}],
        "name": [{"use": "official", "family": family, "given": [rng.choice(["Ana", "Bob", "Chen", "Dee"])]}],
        "gender": rng.choice(["male", "female"]),
        "birthDate": f"{rng.randint(1930, 2015)}-0{rng.randint(1, 9)}-1{rng.randint(0, 9)}",
        "generalPractitioner": [{"reference": gp.reference}],
        "managingOrganization": {"reference": org.reference},
    }
    entries.append({"fullUrl": patient, "resource": patient_resource, "request": {"method": "POST", "url": "Patient"}})
    clinical: list[dict[str, Any]] = []
    for e in range(encounters):
        enc, pr, og = _urn(rng), rng.choice(practitioners), rng.choice(organizations)
        out.encounters.append((enc, pr, og))
        day = f"20{10 + e:02d}-0{rng.randint(1, 9)}-1{rng.randint(0, 9)}"
        clinical.append({"fullUrl": enc, "resource": {
            "resourceType": "Encounter", "status": "finished",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
            "type": [{"coding": [{"system": "http://snomed.info/sct", "code": "185349003"}],
                      "text": "Encounter for check up"}],
            "subject": {"reference": patient, "display": family},
            "participant": [{"individual": {"reference": pr.reference, "display": pr.name}}],
            "period": {"start": f"{day}T09:00:00Z", "end": f"{day}T09:30:00Z"},
            "serviceProvider": {"reference": og.reference},
        }, "request": {"method": "POST", "url": "Encounter"}})
        for _ in range(observations):
            obs, performer = _urn(rng), rng.choice(practitioners)
            code, text, unit, low, high = rng.choice(LOINC)
            out.observations.append((obs, enc, performer))
            specimen = f"spec{len(out.observations)}"
            clinical.append({"fullUrl": obs, "resource": {
                "resourceType": "Observation", "status": "final",
                "contained": [{"resourceType": "Specimen", "id": specimen, "subject": {"reference": patient}}],
                "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                          "code": "vital-signs"}]}],
                "code": {"coding": [{"system": "http://loinc.org", "code": code, "display": text}], "text": text},
                "subject": {"reference": patient}, "encounter": {"reference": enc},
                "effectiveDateTime": f"{day}T09:10:00Z", "performer": [{"reference": performer.reference}],
                "specimen": {"reference": f"#{specimen}"},
                "valueQuantity": {"value": rng.randint(low, high), "unit": unit, "system": "http://unitsofmeasure.org",
                                  "code": unit},
            }, "request": {"method": "POST", "url": "Observation"}})
        for _ in range(conditions):
            cond, asserter = _urn(rng), rng.choice(practitioners)
            evidence = out.observations[-1][0]
            out.conditions.append((cond, enc, asserter, evidence))
            code, text = rng.choice(SNOMED)
            clinical.append({"fullUrl": cond, "resource": {
                "resourceType": "Condition",
                "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                                               "code": "active"}]},
                "code": {"coding": [{"system": "http://snomed.info/sct", "code": code, "display": text}], "text": text},
                "subject": {"reference": patient}, "encounter": {"reference": enc},
                "asserter": {"reference": asserter.reference},
                "evidence": [{"detail": [{"reference": evidence}]}],
                "onsetDateTime": f"{day}T09:20:00Z",
            }, "request": {"method": "POST", "url": "Condition"}})
    # The first encounter, from the Patient itself: an in-bundle reference inside an extension,
    # pointing "forwards" (Patient → Encounter → Patient).
    patient_resource["extension"] = [{"url": BIRTH_ENCOUNTER, "valueReference": {"reference": out.encounters[0][0]}}]
    entries.extend(clinical)
    out.provenance = _urn(rng)
    out.provenance_targets = [patient] + [c["fullUrl"] for c in clinical]
    entries.append({"fullUrl": out.provenance, "resource": {
        "resourceType": "Provenance",
        "target": [{"reference": u} for u in out.provenance_targets],
        "recorded": "2020-01-01T00:00:00Z",
        "agent": [{"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type",
                                        "code": "author"}]},
                   "who": {"reference": gp.reference}, "onBehalfOf": {"reference": org.reference}}],
    }, "request": {"method": "POST", "url": "Provenance"}})
    out.bundle["entry"] = entries
    return out


def provider_ids(client, items: list[Provider]) -> dict[Provider, str]:
    """The id the server holds for each provider, found by identifier (exactly one each)."""
    ids = {}
    for p in items:
        response = client.get(f"/{p.kind}", params={"identifier": f"{p.system}|{p.value}"})
        assert response.status_code == 200, response.text
        found = [e["resource"]["id"] for e in response.json().get("entry", [])]
        assert len(found) == 1, (p, found)
        ids[p] = found[0]
    return ids


def check_written(client, pb: PatientBundle, entries: list[dict[str, Any]], providers_by: dict[Provider, str]
                  ) -> dict[str, str]:
    """Reads back every resource the transaction wrote and checks every reference in it.

    `entries` are the transaction-response entries (request order). Returns fullUrl → Type/id."""
    from .support import location, read, status

    ids: dict[str, str] = {}
    for full_url in pb.written:
        item = entries[pb.index(full_url)]
        assert status(item) == 201, item
        type_, id_, version = location(item)
        assert version == 1
        ids[full_url] = f"{type_}/{id_}"
    assert len(set(ids.values())) == len(ids), "two entries got the same id"
    ref = {p: f"{p.kind}/{i}" for p, i in providers_by.items()}
    patient = read(client, ids[pb.patient])
    assert patient["name"][0]["family"] == pb.family
    first_encounter = pb.encounters[0][0]
    assert patient["extension"] == [{"url": BIRTH_ENCOUNTER, "valueReference": {"reference": ids[first_encounter]}}]
    assert patient["generalPractitioner"][0]["reference"] in ref.values(), patient["generalPractitioner"]
    assert patient["managingOrganization"]["reference"] in ref.values()
    for enc, pr, og in pb.encounters:
        resource = read(client, ids[enc])
        assert resource["subject"] == {"reference": ids[pb.patient], "display": pb.family}
        assert resource["participant"][0]["individual"] == {"reference": ref[pr], "display": pr.name}
        assert resource["serviceProvider"] == {"reference": ref[og]}
    for obs, enc, performer in pb.observations:
        resource = read(client, ids[obs])
        assert resource["subject"] == {"reference": ids[pb.patient]}
        assert resource["encounter"] == {"reference": ids[enc]}
        assert resource["performer"] == [{"reference": ref[performer]}]
        assert resource["contained"][0]["subject"] == {"reference": ids[pb.patient]}  # inside a contained resource
        assert resource["specimen"]["reference"] == "#" + resource["contained"][0]["id"]  # local: left alone
    for cond, enc, asserter, evidence in pb.conditions:
        resource = read(client, ids[cond])
        assert resource["subject"] == {"reference": ids[pb.patient]}
        assert resource["encounter"] == {"reference": ids[enc]}
        assert resource["asserter"] == {"reference": ref[asserter]}
        assert resource["evidence"] == [{"detail": [{"reference": ids[evidence]}]}]
    provenance = read(client, ids[pb.provenance])
    assert [t["reference"] for t in provenance["target"]] == [ids[u] for u in pb.provenance_targets]
    assert provenance["agent"][0]["who"]["reference"] in ref.values()
    assert provenance["agent"][0]["onBehalfOf"]["reference"] in ref.values()
    return ids
