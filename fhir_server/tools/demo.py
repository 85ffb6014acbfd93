"""A consistent CPTS dataset of any size, as transaction bundles: `fhir-server demo-data`.

A CPTS with its MSPs and a health centre; general practitioners, nurses, pharmacists,
physiotherapists, a cardiologist and a coordinator (RPPS numbers with their check digit,
MSSanté addresses); protocols (heart failure, diabetes); and per patient (test INS with a valid
key): a care team, a care plan following a protocol with its tasks, a secure message thread,
and for some an RCP (planned meeting, held meeting, decision) and a shared document. Every
resource declares the coordination profile it follows. Ids are derived from the seed, and
every entry is a PUT: loading the same dataset twice changes nothing.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from fhir_server import jsonio
from fhir_server.validation.ins import nir_key

GUIDE = "https://fhir-server.dev/ig/coordination"
SD = f"{GUIDE}/StructureDefinition/"
CS = f"{GUIDE}/CodeSystem/"
G15 = "https://mos.esante.gouv.fr/NOS/TRE_G15-ProfessionSante/FHIR/TRE-G15-ProfessionSante"
R38 = "https://mos.esante.gouv.fr/NOS/TRE_R38-SpecialiteOrdinale/FHIR/TRE-R38-SpecialiteOrdinale"
EMAIL_TYPE = "https://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-contact-point-email-type"
R256 = "https://mos.esante.gouv.fr/NOS/TRE_R256-TypeMessagerie/FHIR/TRE-R256-TypeMessagerie"
INS_TEST = "urn:oid:1.2.250.1.213.1.4.10"
RPPS = "https://rpps.esante.gouv.fr"
IDNPS = "urn:oid:1.2.250.1.71.4.2.1"
FINESS = "https://finess.esante.gouv.fr"
SIRET = "https://sirene.fr"
LOINC = "http://loinc.org"

FAMILY = [
    "Martin",
    "Bernard",
    "Dubois",
    "Thomas",
    "Robert",
    "Richard",
    "Petit",
    "Durand",
    "Leroy",
    "Moreau",
    "Simon",
    "Laurent",
    "Lefebvre",
    "Michel",
    "Garcia",
    "David",
    "Bertrand",
    "Roux",
    "Vincent",
    "Fournier",
    "Morel",
    "Girard",
    "André",
    "Lefèvre",
    "Mercier",
    "Dupont",
    "Lambert",
    "Bonnet",
    "François",
    "Martinez",
]
GIVEN_F = ["Marie", "Nathalie", "Isabelle", "Sylvie", "Catherine", "Léa", "Chloé", "Camille", "Hélène", "Élodie"]
GIVEN_M = ["Jean", "Philippe", "Michel", "Alain", "Patrick", "Nicolas", "Lucas", "Hugo", "Théo", "Étienne"]
# (profession code TRE_G15, coordination role, specialty TRE_R38 or None, label)
TRADES = [
    ("10", "gp", "SM54", "médecin généraliste"),
    ("60", "nurse", None, "infirmier"),
    ("21", "pharmacist", None, "pharmacien"),
    ("70", "physiotherapist", None, "masseur-kinésithérapeute"),
    ("10", "specialist", "SM04", "cardiologue"),
    ("60", "coordinator", None, "coordinatrice"),
]
START = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def profile(name: str) -> dict[str, Any]:
    return {"profile": [SD + name]}


def coding(system: str, code: str, display: str | None = None) -> dict[str, Any]:
    out = {"system": system, "code": code}
    if display:
        out["display"] = display
    return out


def rpps(n: int) -> str:
    """An 11-digit RPPS number whose last digit is its Luhn check digit."""
    body = f"1{n:09d}"
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch) * (2 if i % 2 == 0 else 1)
        total += d - 9 if d > 9 else d
    return body + str((10 - total % 10) % 10)


def test_ins(n: int, female: bool, born: datetime) -> str:
    nir = f"{2 if female else 1}{born.year % 100:02d}{born.month:02d}75{(n // 1000) % 1000:03d}{n % 1000:03d}"
    return f"{nir}{nir_key(nir):02d}"


@dataclass
class Dataset:
    """The resources of a CPTS, in files of transaction bundles (name → resources)."""

    seed: int
    files: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def add(self, file: str, resource: dict[str, Any]) -> dict[str, Any]:
        self.files.setdefault(file, []).append(resource)
        return resource

    def bundles(self) -> dict[str, dict[str, Any]]:
        return {
            name: {
                "resourceType": "Bundle",
                "type": "transaction",
                "entry": [
                    {
                        "fullUrl": f"urn:uuid:{_uuid(self.seed, r['resourceType'], r['id'])}",
                        "resource": r,
                        "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"},
                    }
                    for r in resources
                ],
            }
            for name, resources in self.files.items()
        }

    def write(self, out: Path) -> list[Path]:
        out.mkdir(parents=True, exist_ok=True)
        paths = []
        for name, bundle in self.bundles().items():
            path = out / f"{name}.json"
            path.write_bytes(jsonio.dumps(bundle, pretty=True) + b"\n")
            paths.append(path)
        return paths


def _uuid(seed: int, type_: str, id_: str) -> str:
    import uuid

    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"demo:{seed}:{type_}/{id_}"))


def generate(patients: int, seed: int = 1, per_file: int = 100) -> Dataset:
    rnd = random.Random(seed)
    data = Dataset(seed)
    s = f"s{seed}"
    directory = _directory(data, rnd, s, professionals=max(6, patients // 20))
    protocols = _protocols(data, s, directory)
    for n in range(patients):
        _patient(data, rnd, s, n, directory, protocols, f"20-patients-{n // per_file + 1:04d}")
    return data


def _directory(data: Dataset, rnd: random.Random, s: str, professionals: int) -> dict[str, Any]:
    file = "00-directory"
    cpts = data.add(
        file,
        {
            "resourceType": "Organization",
            "id": f"{s}-cpts",
            "meta": profile("coord-structure"),
            "identifier": [{"system": SIRET, "value": f"{rnd.randrange(10**13, 10**14)}"}],
            "active": True,
            "type": [{"coding": [coding(CS + "coord-cs-structure-type", "cpts")]}],
            "name": "CPTS du Val de Seine",
        },
    )
    structures = [cpts]
    for i, (name, kind) in enumerate(
        [("MSP des Tilleuls", "msp"), ("MSP du Port", "msp"), ("Centre de santé Pasteur", "cds")]
    ):
        structures.append(
            data.add(
                file,
                {
                    "resourceType": "Organization",
                    "id": f"{s}-{kind}{i}",
                    "meta": profile("coord-structure"),
                    "identifier": [{"system": FINESS, "value": f"75{rnd.randrange(10**6, 10**7)}"}],
                    "active": True,
                    "type": [{"coding": [coding(CS + "coord-cs-structure-type", kind)]}],
                    "name": name,
                    "partOf": {"reference": f"Organization/{cpts['id']}"},
                },
            )
        )
    roles: dict[str, list[str]] = {}
    for n in range(professionals):
        code, role, specialty, label = TRADES[n % len(TRADES)]
        female = rnd.random() < 0.6
        family, given = rnd.choice(FAMILY), rnd.choice(GIVEN_F if female else GIVEN_M)
        number = rpps(rnd.randrange(10**8, 10**9) + n)
        practitioner = data.add(
            file,
            {
                "resourceType": "Practitioner",
                "id": f"{s}-pr{n}",
                "identifier": [{"system": IDNPS, "value": "8" + number}, {"system": RPPS, "value": number}],
                "active": True,
                "name": [
                    {"family": family, "given": [given], "prefix": ["DR" if code == "10" else "MME" if female else "M"]}
                ],
                "gender": "female" if female else "male",
            },
        )
        structure = structures[1 + n % 3] if role != "coordinator" else cpts
        mail = f"{_ascii(given)}.{_ascii(family)}{n}@{'medecin' if code == '10' else 'pro'}.mssante.fr".lower()
        role_resource: dict[str, Any] = {
            "resourceType": "PractitionerRole",
            "id": f"{s}-role{n}",
            "active": True,
            "practitioner": {"reference": f"Practitioner/{practitioner['id']}"},
            "organization": {"reference": f"Organization/{structure['id']}"},
            "code": [{"coding": [coding(G15, code)]}, {"coding": [coding(CS + "coord-cs-participant-role", role)]}],
            "telecom": [
                {
                    "extension": [{"url": EMAIL_TYPE, "valueCoding": coding(R256, "MSSANTE")}],
                    "system": "email",
                    "value": mail,
                    "use": "work",
                }
            ],
        }
        if specialty:
            role_resource["specialty"] = [{"coding": [coding(R38, specialty)]}]
        data.add(file, role_resource)
        roles.setdefault(role, []).append(role_resource["id"])
    return {"cpts": cpts["id"], "structures": [o["id"] for o in structures[1:]], "roles": roles}


def _ascii(text: str) -> str:
    import unicodedata

    return "".join(c for c in unicodedata.normalize("NFKD", text) if c.isascii() and c.isalnum())


def _protocols(data: Dataset, s: str, directory: dict[str, Any]) -> list[dict[str, Any]]:
    file = "10-protocols"

    def participant(role: str) -> dict[str, Any]:
        code = {"gp": "10", "nurse": "60", "pharmacist": "21", "physiotherapist": "70", "specialist": "10"}.get(role)
        codings = [coding(CS + "coord-cs-participant-role", role)] + ([coding(G15, code)] if code else [])
        return {"type": "practitioner", "role": {"coding": codings}}

    def action(id_: str, title: str, role: str, days: int) -> dict[str, Any]:
        return {
            "id": id_,
            "title": title,
            "participant": [participant(role)],
            "timingDuration": {"value": days, "unit": "d", "system": "http://unitsofmeasure.org", "code": "d"},
        }

    out = []
    for key, title, goal, actions in [
        (
            "ic",
            "Suivi de l'insuffisance cardiaque en ville",
            "Éviter la réhospitalisation : poids stable, signes d'alerte repérés",
            [
                action("1", "Pesée et surveillance des signes d'alerte", "nurse", 7),
                action("2", "Revue de l'ordonnance et de l'observance", "pharmacist", 14),
                action("3", "Consultation de suivi", "gp", 30),
                action("4", "Avis cardiologique", "specialist", 90),
                action("5", "Réadaptation à l'effort", "physiotherapist", 60),
            ],
        ),
        (
            "diabete",
            "Diabète de type 2 : suivi partagé",
            "HbA1c dans la cible, pieds et yeux surveillés",
            [
                action("1", "Bilan biologique et HbA1c", "gp", 90),
                action("2", "Examen des pieds", "nurse", 180),
                action("3", "Entretien pharmaceutique", "pharmacist", 120),
            ],
        ),
    ]:
        out.append(
            data.add(
                file,
                {
                    "resourceType": "PlanDefinition",
                    "id": f"{s}-protocol-{key}",
                    "meta": profile("coord-protocol"),
                    "url": f"{GUIDE}/demo/PlanDefinition/{s}-protocol-{key}",
                    "version": "1",
                    "name": f"Protocole{key.capitalize()}",
                    "title": title,
                    "status": "active",
                    "type": {
                        "coding": [
                            coding("http://terminology.hl7.org/CodeSystem/plan-definition-type", "clinical-protocol")
                        ]
                    },
                    "useContext": [
                        {
                            "code": coding("http://terminology.hl7.org/CodeSystem/usage-context-type", "venue"),
                            "valueReference": {"reference": f"Organization/{directory['cpts']}"},
                        }
                    ],
                    "relatedArtifact": [{"type": "citation", "display": "Recommandations HAS, parcours de soins"}],
                    "goal": [{"description": {"text": goal}}],
                    "action": actions,
                },
            )
        )
    return out


def _member(rnd: random.Random, directory: dict[str, Any], role: str) -> str:
    return rnd.choice(directory["roles"][role])


def _patient(data: Dataset, rnd: random.Random, s: str, n: int, directory, protocols, file: str) -> None:
    female = rnd.random() < 0.5
    born = datetime(1935 + rnd.randrange(60), 1 + rnd.randrange(12), 1 + rnd.randrange(28), tzinfo=UTC)
    pid = f"{s}-pat{n}"
    subject = {"reference": f"Patient/{pid}"}
    data.add(
        file,
        {
            "resourceType": "Patient",
            "id": pid,
            "identifier": [{"use": "official", "system": INS_TEST, "value": test_ins(n, female, born)}],
            "name": [
                {"use": "official", "family": rnd.choice(FAMILY), "given": [rnd.choice(GIVEN_F if female else GIVEN_M)]}
            ],
            "gender": "female" if female else "male",
            "birthDate": born.date().isoformat(),
            "address": [
                {
                    "city": rnd.choice(["Paris", "Boulogne-Billancourt", "Issy-les-Moulineaux"]),
                    "postalCode": rnd.choice(["75015", "92100", "92130"]),
                    "country": "FRA",
                }
            ],
        },
    )
    team = {
        role: _member(rnd, directory, role)
        for role in ("gp", "nurse", "pharmacist", "physiotherapist", "specialist", "coordinator")
    }
    structure = rnd.choice(directory["structures"])
    careteam_id = f"{s}-team{n}"
    data.add(
        file,
        {
            "resourceType": "CareTeam",
            "id": careteam_id,
            "meta": profile("coord-careteam"),
            "status": "active",
            "name": "Équipe de soins",
            "subject": subject,
            "participant": [
                {"role": [{"coding": _role_codings(role)}], "member": {"reference": f"PractitionerRole/{member}"}}
                for role, member in team.items()
            ],
            "managingOrganization": [{"reference": f"Organization/{structure}"}],
        },
    )
    protocol = protocols[n % len(protocols)]
    when = START + timedelta(days=n % 200, hours=n % 8)
    gp = {"reference": f"PractitionerRole/{team['gp']}"}
    careplan_id = f"{s}-plan{n}"
    task_ids = []
    for i, action in enumerate(protocol["action"]):
        role = action["participant"][0]["role"]["coding"][0]["code"]
        status = rnd.choice(["requested", "accepted", "in-progress", "completed"]) if i < 3 else "requested"
        due = when + timedelta(days=action["timingDuration"]["value"])
        task = {
            "resourceType": "Task",
            "id": f"{s}-task{n}-{i + 1}",
            "meta": profile("coord-task"),
            "extension": [{"url": SD + "coord-ext-protocol-step", "valueString": action["id"]}],
            "basedOn": [{"reference": f"CarePlan/{careplan_id}"}],
            "status": status,
            "intent": "order",
            "description": action["title"],
            "for": subject,
            "authoredOn": when.isoformat(),
            "requester": gp,
            "owner": {"reference": f"PractitionerRole/{team.get(role, team['coordinator'])}"},
            "restriction": {"period": {"start": when.isoformat(), "end": due.isoformat()}},
        }
        if status == "completed":
            task["businessStatus"] = {"coding": [coding(CS + "coord-cs-task-business-status", "reported")]}
        data.add(file, task)
        task_ids.append(task["id"])
    goal_id = f"{s}-goal{n}"
    data.add(
        file,
        {
            "resourceType": "Goal",
            "id": goal_id,
            "lifecycleStatus": "active",
            "description": protocol["goal"][0]["description"],
            "subject": subject,
        },
    )
    data.add(
        file,
        {
            "resourceType": "CarePlan",
            "id": careplan_id,
            "meta": profile("coord-careplan"),
            "extension": [
                {"url": SD + "coord-ext-structure", "valueReference": {"reference": f"Organization/{structure}"}}
            ],
            "instantiatesCanonical": [f"{protocol['url']}|{protocol['version']}"],
            "status": "active",
            "intent": "plan",
            "category": [{"coding": [coding(CS + "coord-cs-careplan-category", "protocole")]}],
            "title": protocol["title"],
            "subject": subject,
            "period": {"start": when.isoformat()},
            "author": gp,
            "careTeam": [{"reference": f"CareTeam/{careteam_id}"}],
            "goal": [{"reference": f"Goal/{goal_id}"}],
            "activity": [{"reference": {"reference": f"Task/{t}"}} for t in task_ids],
        },
    )
    _messages(data, rnd, s, n, subject, team, when, file)
    if n % 10 == 0:
        _rcp(data, s, n, subject, team, when, file)


def _role_codings(role: str) -> list[dict[str, Any]]:
    code = {"gp": "10", "nurse": "60", "pharmacist": "21", "physiotherapist": "70", "specialist": "10"}.get(role)
    return [coding(CS + "coord-cs-participant-role", role)] + ([coding(G15, code)] if code else [])


def _messages(data: Dataset, rnd: random.Random, s: str, n: int, subject, team, when: datetime, file: str) -> None:
    thread = [
        ("nurse", "gp", "opinion", "Poids +2 kg en 3 jours, œdèmes des chevilles. Faut-il adapter le diurétique ?"),
        ("gp", "nurse", "information", "Oui : furosémide 40 mg demain matin, nouvelle pesée après-demain."),
        ("nurse", "gp", "information", "Pesée faite : -1,5 kg. Je continue le suivi quotidien."),
    ]
    previous = None
    for i, (sender, recipient, topic, text) in enumerate(thread[: 2 + n % 2]):
        sent = when + timedelta(days=3, hours=i * 5)
        message: dict[str, Any] = {
            "resourceType": "Communication",
            "id": f"{s}-msg{n}-{i + 1}",
            "meta": profile("coord-message"),
            "status": "completed",
            "category": [{"coding": [coding(CS + "coord-cs-message-topic", topic)]}],
            "subject": subject,
            "sent": sent.isoformat(),
            "recipient": [{"reference": f"PractitionerRole/{team[recipient]}"}],
            "sender": {"reference": f"PractitionerRole/{team[sender]}"},
            "payload": [{"contentString": text}],
        }
        if previous:
            message["inResponseTo"] = [{"reference": f"Communication/{previous}"}]
        if i < 1 + n % 2:  # all but the last one read
            read = sent + timedelta(hours=1)
            message["received"] = read.isoformat()
            message["extension"] = [
                {
                    "url": SD + "coord-ext-read-by",
                    "extension": [
                        {"url": "reader", "valueReference": {"reference": f"PractitionerRole/{team[recipient]}"}},
                        {"url": "time", "valueDateTime": read.isoformat()},
                    ],
                }
            ]
        data.add(file, message)
        previous = message["id"]


def _rcp(data: Dataset, s: str, n: int, subject, team, when: datetime, file: str) -> None:
    start = when + timedelta(days=14)
    members = [team[r] for r in ("gp", "nurse", "pharmacist", "specialist", "coordinator")]
    rcp = {"coding": [coding(CS + "coord-cs-meeting-type", "rcp")]}
    appointment = data.add(
        file,
        {
            "resourceType": "Appointment",
            "id": f"{s}-rcp{n}",
            "meta": profile("coord-rcp-appointment"),
            "status": "fulfilled",
            "serviceType": [rcp],
            "description": "RCP insuffisance cardiaque",
            "start": start.isoformat(),
            "end": (start + timedelta(hours=1)).isoformat(),
            "participant": [{"actor": {"reference": f"PractitionerRole/{m}"}, "status": "accepted"} for m in members]
            + [{"actor": subject, "status": "accepted", "required": "information-only"}],
        },
    )
    participants = [{"individual": {"reference": f"PractitionerRole/{m}"}} for m in members]
    meeting = data.add(
        file,
        {
            "resourceType": "Encounter",
            "id": f"{s}-rcp{n}-meeting",
            "meta": profile("coord-rcp-encounter"),
            "status": "finished",
            "class": coding("http://terminology.hl7.org/CodeSystem/v3-ActCode", "VR", "virtual"),
            "type": [rcp],
            "participant": participants,
            "appointment": [{"reference": f"Appointment/{appointment['id']}"}],
            "period": {"start": start.isoformat(), "end": (start + timedelta(hours=1)).isoformat()},
        },
    )
    discussed = data.add(
        file,
        {
            "resourceType": "Encounter",
            "id": f"{s}-rcp{n}-patient",
            "meta": profile("coord-rcp-encounter"),
            "status": "finished",
            "class": coding("http://terminology.hl7.org/CodeSystem/v3-ActCode", "VR", "virtual"),
            "type": [rcp],
            "subject": subject,
            "participant": participants,
            "partOf": {"reference": f"Encounter/{meeting['id']}"},
            "period": {"start": start.isoformat(), "end": (start + timedelta(minutes=20)).isoformat()},
        },
    )
    report = (
        "Décision : titration du bêtabloquant, consultation cardiologique sous 1 mois, pesée quotidienne maintenue."
    )
    data.add(
        file,
        {
            "resourceType": "DocumentReference",
            "id": f"{s}-rcp{n}-decision",
            "meta": profile("coord-rcp-decision"),
            "status": "current",
            "type": {"coding": [coding(CS + "coord-cs-document-type", "rcp-report")]},
            "subject": subject,
            "date": (start + timedelta(hours=2)).isoformat(),
            "author": [{"reference": f"PractitionerRole/{team['coordinator']}"}],
            "content": [
                {
                    "attachment": {
                        "contentType": "text/plain",
                        "language": "fr",
                        "data": _b64(report),
                        "title": "Compte rendu de RCP",
                    }
                }
            ],
            "context": {"encounter": [{"reference": f"Encounter/{discussed['id']}"}]},
        },
    )
    data.add(
        file,
        {
            "resourceType": "DocumentReference",
            "id": f"{s}-doc{n}",
            "status": "current",
            "type": {"coding": [coding(LOINC, "11488-4", "Consult note")]},
            "subject": subject,
            "date": (start + timedelta(days=20)).isoformat(),
            "author": [{"reference": f"PractitionerRole/{team['specialist']}"}],
            "content": [
                {
                    "attachment": {
                        "contentType": "text/plain",
                        "language": "fr",
                        "data": _b64("Avis cardiologique : FEVG 35 %, poursuite du traitement."),
                        "title": "Avis cardiologique",
                    }
                }
            ],
        },
    )


def _b64(text: str) -> str:
    import base64

    return base64.b64encode(text.encode("utf-8")).decode("ascii")
