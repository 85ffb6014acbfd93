"""A consistent CPTS dataset of any size, as transaction bundles: `fhir-server demo-data`.

A CPTS with two MSPs and a health centre; general practitioners, nurses, physiotherapists, a
cardiologist, a pharmacist and a coordinator, each with a PractitionerRole in one structure (RPPS
numbers with their check digit, MSSanté addresses); protocols (heart failure, diabetes); and per
patient (test INS with a valid key): a médecin traitant (`generalPractitioner`), a care team run by
one structure, a care plan following a protocol with its tasks, a secure message thread, and for
some an RCP (planned meeting, held meeting, decision), a shared document, or a Consent objecting to
sharing with one professional. Then the CPTS's first week: every professional's agenda (Schedule,
Slots), the week's patients booking some Slots, and an RCP discussing two patients, held, with the
Encounters, decisions, follow-up Tasks and care-team messages the server itself would write when an
RCP is held and decided (coordination/rcp.py), so that loading adds nothing. Every coordination
resource declares the profile it follows. Ids are derived from the seed, and every entry is a PUT:
loading the same dataset twice changes nothing.

The care teams vary with the patient's number n, so that the équipe de soins rule has something
to decide (examples/README.md lists who reaches whom in the examples):

- n % 4 == 0: a team run by the first MSP: its GP and nurse, the MSP itself (an Organization
  member: everyone holding a role there, its physiotherapist too), the pharmacist, the cardiologist.
- n % 4 == 1: run by the second MSP: its GP, physiotherapist and nurse (member since 2025-07-01,
  taking over from a nurse of the first MSP whose membership ended on 2025-06-30), the
  pharmacist, the cardiologist; when n % 8 == 1, an active Consent denies the cardiologist.
- n % 4 == 2: run by the CPTS, a mix: the second MSP's nurse, the first MSP's physiotherapist,
  the pharmacist, the cardiologist. The médecin traitant, a GP of the health centre, is not a
  member; a nurse of the health centre, outside the team, is sent one message.
- n % 4 == 3: run by the health centre: its GP, nurse and cardiologist, an MSP physiotherapist,
  the pharmacist.

The coordinator (at the CPTS) is in no care team: a coordinator's patients are those of the
structure that runs their team (CareTeam.managingOrganization and the coord-ext-structure
extension, also on the CarePlan, the Tasks and the RCP Appointment).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from fhir_server import jsonio
from fhir_server.coordination import rcp
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
# coordination role → (profession code TRE_G15, specialty TRE_R38 or None)
TRADES = {
    "gp": ("10", "SM54"),
    "nurse": ("60", None),
    "pharmacist": ("21", None),
    "physiotherapist": ("70", None),
    "specialist": ("10", "SM04"),
    "coordinator": ("60", None),
}
# (id suffix, name, type): the CPTS first, then the structures that are part of it
STRUCTURES = [
    ("cpts", "CPTS du Val de Seine", "cpts"),
    ("msp0", "MSP des Tilleuls", "msp"),
    ("msp1", "MSP du Port", "msp"),
    ("cds2", "Centre de santé Pasteur", "cds"),
]
# Professional n holds a PractitionerRole of SLOTS[n % len(SLOTS)]: (structure index, role). The
# first len(SLOTS) professionals are the examples' directory; larger datasets repeat the cycle.
SLOTS = [
    (1, "gp"),
    (1, "nurse"),
    (1, "physiotherapist"),
    (2, "gp"),
    (2, "nurse"),
    (2, "physiotherapist"),
    (3, "gp"),
    (3, "nurse"),
    (3, "specialist"),
    (0, "pharmacist"),
    (0, "coordinator"),
]
# Membership dates: a nurse of the first MSP followed the n % 4 == 1 patients until ENDED, then
# the second MSP's nurse took over (well before the generated activity, which starts in 2026).
ENDED = "2025-06-30"
TAKEN_OVER = "2025-07-01"
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
    directory = _directory(data, rnd, s, professionals=max(len(SLOTS), patients // 20))
    protocols = _protocols(data, s, directory)
    charts = [_patient(data, rnd, s, n, directory, protocols, f"20-patients-{n // per_file + 1:04d}")
              for n in range(patients)]
    _week(data, s, directory, charts)
    return data


def _directory(data: Dataset, rnd: random.Random, s: str, professionals: int) -> dict[str, Any]:
    file = "00-directory"
    structures = []
    for key, name, kind in STRUCTURES:
        org: dict[str, Any] = {
            "resourceType": "Organization",
            "id": f"{s}-{key}",
            "meta": profile("coord-structure"),
            "identifier": [
                {"system": SIRET, "value": f"{rnd.randrange(10**13, 10**14)}"}
                if kind == "cpts"
                else {"system": FINESS, "value": f"75{rnd.randrange(10**6, 10**7)}"}
            ],
            "active": True,
            "type": [{"coding": [coding(CS + "coord-cs-structure-type", kind)]}],
            "name": name,
        }
        if structures:
            org["partOf"] = {"reference": f"Organization/{structures[0]['id']}"}
        structures.append(data.add(file, org))
    roster: dict[tuple[str, str], list[str]] = {}
    for n in range(professionals):
        where, role = SLOTS[n % len(SLOTS)]
        code, specialty = TRADES[role]
        structure = structures[where]
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
        roster.setdefault((structure["id"], role), []).append(role_resource["id"])
    return {
        "cpts": structures[0]["id"],
        "structures": [o["id"] for o in structures[1:]],
        "names": {o["id"]: o["name"] for o in structures},
        "roster": roster,
    }


def _ascii(text: str) -> str:
    import unicodedata

    return "".join(c for c in unicodedata.normalize("NFKD", text) if c.isascii() and c.isalnum())


def _protocols(data: Dataset, s: str, directory: dict[str, Any]) -> list[dict[str, Any]]:
    file = "10-protocols"

    def participant(role: str, specialty: str | None) -> dict[str, Any]:
        code = {"gp": "10", "nurse": "60", "pharmacist": "21", "physiotherapist": "70", "specialist": "10"}.get(role)
        codings = [coding(CS + "coord-cs-participant-role", role)] + ([coding(G15, code)] if code else [])
        codings += [coding(R38, specialty)] if specialty else []  # $apply matches it on PractitionerRole.specialty
        return {"type": "practitioner", "role": {"coding": codings}}

    def action(id_: str, title: str, role: str, days: int, specialty: str | None = None) -> dict[str, Any]:
        return {
            "id": id_,
            "title": title,
            "participant": [participant(role, specialty)],
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
                action("4", "Avis cardiologique", "specialist", 90, specialty="SM04"),
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


def _team(rnd: random.Random, directory: dict[str, Any], n: int, since: str) -> tuple[str, dict[str, str], list]:
    """The structure running patient n's care team (see the module docstring); the professional
    of each role named in the patient's resources (role → PractitionerRole id: the médecin
    traitant as "gp", the nurse standing in as "stand-in"); the team's CareTeam.participant."""
    cpts = directory["cpts"]
    msp0, msp1, cds = directory["structures"]
    roster = directory["roster"]

    def pick(structure: str, role: str) -> str:
        return rnd.choice(roster[(structure, role)])

    pattern = n % 4
    home = [msp0, msp1, cpts, cds][pattern]
    named = {
        "gp": pick(cds if pattern >= 2 else home, "gp"),
        "nurse": pick(msp1 if pattern == 2 else home, "nurse"),
        "pharmacist": pick(cpts, "pharmacist"),
        "physiotherapist": pick({0: msp0, 1: msp1, 2: msp0, 3: rnd.choice([msp0, msp1])}[pattern], "physiotherapist"),
        "specialist": pick(cds, "specialist"),
        "coordinator": pick(cpts, "coordinator"),
    }

    def member(role: str, **period: str) -> dict[str, Any]:
        out: dict[str, Any] = {
            "role": [{"coding": _role_codings(role)}],
            "member": {"reference": f"PractitionerRole/{named[role]}"},
        }
        if period:
            out["period"] = period
        return out

    if pattern == 0:  # the physiotherapist is a member through the MSP itself
        structure = {
            "role": [{"text": f"Équipe de la structure ({directory['names'][msp0]}) : tous ceux qui y exercent"}],
            "member": {"reference": f"Organization/{msp0}"},
        }
        members = [member("gp"), member("nurse"), structure, member("pharmacist"), member("specialist")]
    elif pattern == 1:  # the nurse took over from a nurse of the other MSP
        former = member("nurse", start=since, end=ENDED)
        former["member"]["reference"] = f"PractitionerRole/{pick(msp0, 'nurse')}"
        members = [member("gp"), member("nurse", start=TAKEN_OVER), former]
        members += [member(role) for role in ("physiotherapist", "pharmacist", "specialist")]
    else:  # patterns 2 and 3; in the mix, the médecin traitant is not a member
        members = [member(role) for role in ("gp", "nurse", "physiotherapist", "pharmacist", "specialist")]
        if pattern == 2:
            members = members[1:]
            named["stand-in"] = pick(cds, "nurse")
    return home, named, members


def _patient(data: Dataset, rnd: random.Random, s: str, n: int, directory, protocols, file: str) -> dict[str, Any]:
    """Patient n's record, in `file`; returns what the week's agenda and RCP need of it."""
    female = rnd.random() < 0.5
    born = datetime(1935 + rnd.randrange(60), 1 + rnd.randrange(12), 1 + rnd.randrange(28), tzinfo=UTC)
    pid = f"{s}-pat{n}"
    subject = {"reference": f"Patient/{pid}"}
    when = START + timedelta(days=n % 200, hours=n % 8)
    since = (when - timedelta(days=500)).date().isoformat()  # the team's start: before ENDED for every n
    structure, team, members = _team(rnd, directory, n, since)
    gp = {"reference": f"PractitionerRole/{team['gp']}"}
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
            "generalPractitioner": [gp],
        },
    )
    in_structure = [{"url": SD + "coord-ext-structure", "valueReference": {"reference": f"Organization/{structure}"}}]
    careteam_id = f"{s}-team{n}"
    data.add(
        file,
        {
            "resourceType": "CareTeam",
            "id": careteam_id,
            "meta": profile("coord-careteam"),
            "extension": in_structure,
            "status": "active",
            "name": f"Équipe de soins — {directory['names'][structure]}",
            "subject": subject,
            "period": {"start": since},
            "participant": members,
            "managingOrganization": [{"reference": f"Organization/{structure}"}],
        },
    )
    if n % 8 == 1:
        _consent(data, s, n, subject, team["specialist"], structure, when, file)
    protocol = protocols[n % len(protocols)]
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
            "extension": [{"url": SD + "coord-ext-protocol-step", "valueString": action["id"]}, *in_structure],
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
    careplan = data.add(
        file,
        {
            "resourceType": "CarePlan",
            "id": careplan_id,
            "meta": profile("coord-careplan"),
            "extension": in_structure,
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
    if "stand-in" in team:
        _stand_in(data, s, n, subject, team, when, file)
    if n % 10 == 0:
        _rcp(data, s, n, subject, team, in_structure, when, file)
    return {"n": n, "file": file, "subject": subject, "team": team, "careteam": careteam_id, "careplan": careplan,
            "in_structure": in_structure}


def _consent(data: Dataset, s: str, n: int, subject, denied: str, structure: str, when: datetime, file: str) -> None:
    """The patient objects to sharing with one professional (L.1110-4 CSP): sharing within the
    équipe de soins permitted, except with that PractitionerRole."""
    signed = when - timedelta(days=30)
    data.add(
        file,
        {
            "resourceType": "Consent",
            "id": f"{s}-consent{n}",
            "status": "active",
            "scope": {"coding": [coding("http://terminology.hl7.org/CodeSystem/consentscope", "patient-privacy")]},
            "category": [{"coding": [coding(LOINC, "59284-0", "Patient Consent")]}],
            "patient": subject,
            "dateTime": signed.isoformat(),
            "performer": [subject],
            "organization": [{"reference": f"Organization/{structure}"}],
            "sourceAttachment": {
                "contentType": "text/plain",
                "language": "fr",
                "data": _b64("Je m'oppose au partage de mes données de santé avec ce professionnel."),
                "title": "Opposition au partage (article L.1110-4 du code de la santé publique)",
            },
            "policyRule": {"coding": [coding("http://terminology.hl7.org/CodeSystem/v3-ActCode", "OPTIN")]},
            "provision": {
                "type": "permit",
                "provision": [
                    {
                        "type": "deny",
                        "period": {"start": signed.isoformat()},
                        "actor": [
                            {
                                "role": {
                                    "coding": [
                                        coding(
                                            "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                                            "IRCP",
                                            "information recipient",
                                        )
                                    ]
                                },
                                "reference": {"reference": f"PractitionerRole/{denied}"},
                            }
                        ],
                    }
                ],
            },
        },
    )


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


def _stand_in(data: Dataset, s: str, n: int, subject, team, when: datetime, file: str) -> None:
    """A nurse outside the care team, asked by the médecin traitant to stand in for a few days:
    the message names them, nothing else of the patient's does."""
    sent = when + timedelta(days=10)
    data.add(
        file,
        {
            "resourceType": "Communication",
            "id": f"{s}-msg{n}-stand-in",
            "meta": profile("coord-message"),
            "status": "completed",
            "category": [{"coding": [coding(CS + "coord-cs-message-topic", "task")]}],
            "subject": subject,
            "sent": sent.isoformat(),
            "recipient": [{"reference": f"PractitionerRole/{team['stand-in']}"}],
            "sender": {"reference": f"PractitionerRole/{team['gp']}"},
            "payload": [
                {
                    "contentString": "Pourriez-vous assurer la pesée à domicile les deux prochains jours, "
                    "pendant l'absence de l'infirmier(ère) habituel(le) ?"
                }
            ],
        },
    )


def _rcp(data: Dataset, s: str, n: int, subject, team, in_structure, when: datetime, file: str) -> None:
    start = when + timedelta(days=14)
    members = [team[r] for r in ("gp", "nurse", "pharmacist", "specialist", "coordinator")]
    rcp = {"coding": [coding(CS + "coord-cs-meeting-type", "rcp")]}
    appointment = data.add(
        file,
        {
            "resourceType": "Appointment",
            "id": f"{s}-rcp{n}",
            "meta": profile("coord-rcp-appointment"),
            "extension": in_structure,
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
    decision = data.add(
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
    _notice(data, file, f"{s}-rcp{n}-notice", decision, f"CareTeam/{s}-team{n}")
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


def _notice(data: Dataset, file: str, id_: str, decision: dict[str, Any], team: str) -> None:
    """The message the server sends the patient's care team when the decision is written."""
    key = f"DocumentReference/{decision['id']}"
    [encounter] = decision["context"]["encounter"]
    message = rcp.notice(decision, key, encounter["reference"], [team], decision["author"][0]["reference"],
                         decision["date"])
    data.add(file, {"resourceType": "Communication", "id": id_, **message})


# -- the CPTS's first week ----------------------------------------------------------------------

WEEK_DAYS = 5  # Monday to Friday, from START's Monday
AFTERNOON = [(14, 0), (14, 30)]  # each professional's bookable slots, every day: 30 minutes each
BOOKED = [("nurse", 0, "Soins infirmiers à domicile"), ("gp", 1, "Consultation de suivi")]  # role, slot, what


def _week(data: Dataset, s: str, directory: dict[str, Any], charts: list[dict[str, Any]]) -> None:
    """START's week at the CPTS: every professional's agenda (a Schedule, two afternoon Slots a
    day) in the directory, the week's patients (the first five, one a day) booking a visit with
    their nurse and their médecin traitant (those Slots busy, in the patient's file, with the
    Appointment that holds them), and on Thursday an RCP at the CPTS discussing two patients."""
    monday = START.replace(hour=0, minute=0) - timedelta(days=START.weekday())
    booked: dict[str, tuple[dict[str, Any], str, str]] = {}  # slot id → (chart, role, what)
    for chart in charts[:WEEK_DAYS]:
        for role, i, what in BOOKED:
            booked[_slot_id(chart["team"][role], chart["n"], i)] = (chart, role, what)
    for (_, role), ids in directory["roster"].items():
        if role == "coordinator":
            continue
        for role_id in ids:
            _agenda(data, role_id, monday, booked)
    if len(charts) > 2 and charts[0]["file"] == charts[2]["file"]:
        _week_rcp(data, s, directory, [charts[0], charts[2]], monday + timedelta(days=3))


def _slot_id(role_id: str, day: int, i: int) -> str:
    return f"{role_id}-slot{day}{i}"


def _agenda(data: Dataset, role_id: str, monday: datetime, booked: dict[str, tuple[dict[str, Any], str, str]]) -> None:
    schedule = data.add(
        "00-directory",
        {
            "resourceType": "Schedule",
            "id": f"{role_id}-agenda",
            "active": True,
            "actor": [{"reference": f"PractitionerRole/{role_id}"}],
            "planningHorizon": {"start": monday.isoformat(), "end": (monday + timedelta(days=WEEK_DAYS)).isoformat()},
            "comment": "Consultations et visites de l'après-midi",
        },
    )
    for day in range(WEEK_DAYS):
        for i, (hour, minute) in enumerate(AFTERNOON):
            start = monday + timedelta(days=day, hours=hour, minutes=minute)
            id_ = _slot_id(role_id, day, i)
            slot = {
                "resourceType": "Slot",
                "id": id_,
                "schedule": {"reference": f"Schedule/{schedule['id']}"},
                "status": "busy" if id_ in booked else "free",
                "start": start.isoformat(),
                "end": (start + timedelta(minutes=30)).isoformat(),
            }
            if id_ not in booked:
                data.add("00-directory", slot)
                continue
            chart, role, what = booked[id_]
            data.add(chart["file"], slot)  # busy from the start: the Appointment below holds it
            data.add(
                chart["file"],
                {
                    "resourceType": "Appointment",
                    "id": f"{id_}-booking",
                    "extension": chart["in_structure"],
                    "status": "booked",
                    "description": what,
                    "start": slot["start"],
                    "end": slot["end"],
                    "slot": [{"reference": f"Slot/{id_}"}],
                    "participant": [
                        {"actor": chart["subject"], "status": "accepted"},
                        {"actor": {"reference": f"PractitionerRole/{role_id}"}, "status": "accepted"},
                    ],
                },
            )


# the week's RCP: per patient discussed, the decision and its follow-up (owner's role, task, days to do it)
WEEK_DECISIONS = [
    ("Titration du bêtabloquant par le médecin traitant ; pesée quotidienne maintenue.", "gp",
     "Consultation de titration du bêtabloquant", 14),
    ("Éducation thérapeutique : signes d'alerte et pesée quotidienne, à domicile.", "nurse",
     "Séances d'éducation thérapeutique à domicile", 21),
]


def _week_rcp(data: Dataset, s: str, directory: dict[str, Any], charts: list[dict[str, Any]], day: datetime) -> None:
    """An RCP at the CPTS, held at lunchtime: the meeting's and each patient's Encounters, a
    decision per patient by its cardiologist, the follow-up Task it asks for (in the patient's
    CarePlan) and the message to the patient's care team, as the server makes them."""
    file = charts[-1]["file"]
    start = day + timedelta(hours=12, minutes=30)
    team0, team1 = charts[0]["team"], charts[1]["team"]
    roles = [team0["coordinator"], team0["specialist"], team1["specialist"], team0["gp"], team1["nurse"],
             team0["pharmacist"]]
    roles = list(dict.fromkeys(roles))
    patients = [c["subject"]["reference"] for c in charts]
    appointment = data.add(
        file,
        {
            "resourceType": "Appointment",
            "id": f"{s}-week-rcp",
            "meta": profile("coord-rcp-appointment"),
            "extension": [{"url": SD + "coord-ext-structure",
                           "valueReference": {"reference": f"Organization/{directory['cpts']}"}}],
            "status": "fulfilled",
            "serviceType": [{"coding": [coding(CS + "coord-cs-meeting-type", "rcp")]}],
            "description": "RCP de la CPTS : insuffisance cardiaque",
            "start": start.isoformat(),
            "end": (start + timedelta(hours=1)).isoformat(),
            "participant": [{"actor": {"reference": f"PractitionerRole/{r}"}, "status": "accepted"} for r in roles]
            + [{"actor": {"reference": p}, "status": "accepted"} for p in patients],
        },
    )
    key = f"Appointment/{appointment['id']}"
    shared = rcp.meeting_encounter(appointment, key, [f"PractitionerRole/{r}" for r in roles] + patients)
    meeting = data.add(file, {"resourceType": "Encounter", "id": f"{s}-week-rcp-meeting", **shared})
    for k, (chart, (text, owner, task, days)) in enumerate(zip(charts, WEEK_DECISIONS, strict=True)):
        n = chart["n"]
        encounter = rcp.patient_encounter(shared, chart["subject"]["reference"], f"Encounter/{meeting['id']}")
        encounter = data.add(file, {"resourceType": "Encounter", "id": f"{s}-week-rcp-pat{n}",
                                    **{k_: v for k_, v in encounter.items() if k_ != "resourceType"}})
        author = f"PractitionerRole/{chart['team']['specialist']}"
        written = start + timedelta(hours=2, minutes=10 * k)
        decision = data.add(
            file,
            {
                "resourceType": "DocumentReference",
                "id": f"{s}-week-rcp-decision{n}",
                "meta": profile("coord-rcp-decision"),
                "status": "current",
                "docStatus": "final",
                "type": {"coding": [coding(CS + "coord-cs-document-type", "rcp-report")]},
                "subject": chart["subject"],
                "date": written.isoformat(),
                "author": [{"reference": author}],
                "description": text,
                "content": [{"attachment": {"contentType": "text/plain", "language": "fr", "data": _b64(text),
                                            "title": "Compte rendu de RCP"}}],
                "context": {"encounter": [{"reference": f"Encounter/{encounter['id']}"}]},
            },
        )
        follow_up = data.add(
            file,
            {
                "resourceType": "Task",
                "id": f"{s}-week-rcp-task{n}",
                "meta": profile("coord-task"),
                "extension": chart["in_structure"],
                "basedOn": [{"reference": f"CarePlan/{chart['careplan']['id']}"}],
                "status": "requested",
                "intent": "order",
                "description": task,
                "for": chart["subject"],
                "authoredOn": written.isoformat(),
                "requester": {"reference": author},
                "owner": {"reference": f"PractitionerRole/{chart['team'][owner]}"},
                "reasonReference": {"reference": f"DocumentReference/{decision['id']}"},
                "restriction": {"period": {"start": written.isoformat(),
                                           "end": (written + timedelta(days=days)).isoformat()}},
            },
        )
        chart["careplan"]["activity"].append({"reference": {"reference": f"Task/{follow_up['id']}"}})
        _notice(data, file, f"{s}-week-rcp-notice{n}", decision, f"CareTeam/{chart['careteam']}")


def _b64(text: str) -> str:
    import base64

    return base64.b64encode(text.encode("utf-8")).decode("ascii")
