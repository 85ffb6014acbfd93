"""A linked dataset for include tests: organizations, practitioners, patients, encounters and
observations that all refer to each other, as one transaction Bundle.

From any resource, `_include:iterate=*` and `_revinclude:iterate=*` reach the whole dataset:
organizations form a `partOf` chain, every patient names an organization and a practitioner,
every encounter a patient, a practitioner, an organization and the patient's previous
encounter, every observation a patient, an encounter, a practitioner and another observation.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Shape:
    organizations: int = 5
    practitioners: int = 20
    patients: int = 60
    encounters: int = 100
    observations: int = 200

    @property
    def total(self) -> int:
        return self.organizations + self.practitioners + self.patients + self.encounters + self.observations


def transaction(tag: tuple[str, str], shape: Shape = Shape()) -> dict[str, Any]:
    """The dataset as a transaction; every resource carries `tag` (system, code)."""
    meta = {"tag": [{"system": tag[0], "code": tag[1]}]}
    entries: list[dict[str, Any]] = []

    def add(resource: dict[str, Any]) -> str:
        url = f"urn:uuid:{uuid.uuid4()}"
        entries.append({"fullUrl": url, "resource": {**resource, "meta": meta},
                        "request": {"method": "POST", "url": resource["resourceType"]}})
        return url

    orgs: list[str] = []
    for i in range(shape.organizations):
        org: dict[str, Any] = {"resourceType": "Organization", "name": f"Org {i}"}
        if orgs:
            org["partOf"] = {"reference": orgs[-1]}
        orgs.append(add(org))
    pracs = [add({"resourceType": "Practitioner", "name": [{"family": f"Prac{i}"}]})
             for i in range(shape.practitioners)]
    pats = [add({"resourceType": "Patient", "name": [{"family": f"Linked{i}"}], "gender": "female",
                 "birthDate": f"19{50 + i % 50}-01-01",
                 "managingOrganization": {"reference": orgs[i % len(orgs)]},
                 "generalPractitioner": [{"reference": pracs[i % len(pracs)]}]})
            for i in range(shape.patients)]
    last_encounter: dict[str, str] = {}
    encs: list[str] = []
    for i in range(shape.encounters):
        patient = pats[i % len(pats)]
        enc: dict[str, Any] = {"resourceType": "Encounter", "status": "finished",
                               "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                                         "code": "AMB"},
                               "subject": {"reference": patient},
                               "participant": [{"individual": {"reference": pracs[i % len(pracs)]}}],
                               "serviceProvider": {"reference": orgs[i % len(orgs)]},
                               "period": {"start": f"2024-01-{1 + i % 28:02d}"}}
        if patient in last_encounter:
            enc["partOf"] = {"reference": last_encounter[patient]}
        last_encounter[patient] = add(enc)
        encs.append(last_encounter[patient])
    obs: list[str] = []
    for i in range(shape.observations):
        ob: dict[str, Any] = {"resourceType": "Observation", "status": "final",
                              "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
                              "subject": {"reference": pats[i % len(pats)]},
                              "encounter": {"reference": encs[i % len(encs)]},
                              "performer": [{"reference": pracs[i % len(pracs)]}],
                              "effectiveDateTime": f"2024-02-{1 + i % 28:02d}T10:00:00Z",
                              "valueQuantity": {"value": 60 + i % 40, "unit": "/min",
                                                "system": "http://unitsofmeasure.org", "code": "/min"}}
        if obs:
            ob["hasMember"] = [{"reference": obs[-1]}]
        obs.append(add(ob))
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}
