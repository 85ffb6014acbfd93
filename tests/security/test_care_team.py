"""The équipe de soins rule through HTTP, with tokens from a real OpenID provider.

A small CPTS: two MSPs, six professionals and six patients, each patient with a record
(Observation, Condition, DocumentReference and its Binary, CarePlan, Task). Who may see what:

| user | sees | because |
|---|---|---|
| gp (Practitioner) | P1; P6's CareTeam | médecin traitant of P1 through their role; P5's consent denies all sharing; P6's team, which names them, is inactive |
| nurse (role at MSP A) | P1 | in P1's team; P4's consent denies her role |
| pharmacist (MSP B) | P2 | P2's team has MSP B as a member |
| physio | the CareTeams of P1 and P3 | her memberships ended in 2025, another starts in 2099: the teams name her, nothing more |
| coordinator (CPTS) | P3: Patient, CareTeam, CarePlan, Task | P3's team is run by the CPTS |
| outsider (health centre) | one Communication about P1 | it is addressed to him |

Every read, search and write form must show each user exactly that: nothing else in any body
(ids, names, totals), 404 for what is hidden exactly as for what does not exist, 403 for writes.
"""

from __future__ import annotations

import base64
import json
import time
import uuid

import httpx
import pytest

from fhir_server.storage.embedded import client_uri
from tests.conftest import free_port, start_server
from tests.oidc.provider import Client
from tests.security.conftest import AUDIENCE, bearer

TAG = uuid.uuid4().hex[:6]
ADMIN = "system/*.cruds"
USER = "user/*.cruds"
AUDITOR = "system/AuditEvent.rs"
ROLE_SYSTEM = "https://fhir-server.dev/ig/coordination/CodeSystem/coord-cs-participant-role"
PATIENTS = [f"p{n}-{TAG}" for n in range(1, 7)]
P1, P2, P3, P4, P5, P6 = PATIENTS
NAMES = {p: f"Secret{chr(65 + i)}{TAG}" for i, p in enumerate(PATIENTS)}  # family names, looked for in bodies
PEOPLE = ("gp", "nurse", "pharmacist", "physio", "coordinator", "outsider")
PRACTITIONER = {who: f"{who}-{TAG}" for who in PEOPLE}
ROLE = {who: f"{who}-role-{TAG}" for who in PEOPLE}
MSP_A, MSP_B, CPTS, CDS = f"msp-a-{TAG}", f"msp-b-{TAG}", f"cpts-{TAG}", f"cds-{TAG}"
CLINICAL_TYPES = ("Observation", "Condition", "DocumentReference")
COORDINATION_TYPES = ("CarePlan", "Task", "CareTeam")
# what each user reaches: patient → the types they see of that patient's record (None: all)
REACHES: dict[str, dict[str, tuple[str, ...] | None]] = {
    "gp": {P1: None}, "nurse": {P1: None}, "pharmacist": {P2: None}, "physio": {},
    "coordinator": {P3: ("Patient", *COORDINATION_TYPES)}, "outsider": {},
}
DB_PORT = free_port()  # a second server shares the first one's embedded database
SERVER_ENV = {"FHIR_EMBEDDED_DB_PORT": str(DB_PORT)}
# resources that name the user, seen whatever their patient ("that resource only")
NAMED: dict[str, set[tuple[str, str]]] = {
    "gp": {("CareTeam", P6)}, "nurse": {("Communication", P1)}, "pharmacist": set(),
    "physio": {("CareTeam", P1), ("CareTeam", P3)}, "coordinator": set(), "outsider": {("Communication", P1)},
}
CLIENTS = [Client("backend", scope=[ADMIN, AUDITOR])] + [
    Client(who, scope=[USER], claims={"fhirUser": f"Practitioner/{PRACTITIONER[who]}"}) for who in PEOPLE]


def _role(who: str, organization: str, code: str) -> dict:
    return {"resourceType": "PractitionerRole", "id": ROLE[who], "active": True,
            "practitioner": {"reference": f"Practitioner/{PRACTITIONER[who]}"},
            "organization": {"reference": f"Organization/{organization}"},
            "code": [{"coding": [{"system": ROLE_SYSTEM, "code": code}]}]}


def _team(id_: str, patient: str, members: list[tuple[str, dict | None]], status: str = "active",
          structure: str | None = None) -> dict:
    team = {"resourceType": "CareTeam", "id": id_, "status": status, "subject": {"reference": f"Patient/{patient}"},
            "participant": [{"member": {"reference": ref}, **({"period": period} if period else {})}
                            for ref, period in members]}
    if structure:
        team["managingOrganization"] = [{"reference": f"Organization/{structure}"}]
    return team


def _consent(id_: str, patient: str, actor: str | None) -> dict:
    deny: dict = {"type": "deny"}
    if actor:
        deny["actor"] = [{"role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                                               "code": "PRCP"}]}, "reference": {"reference": actor}}]
    return {"resourceType": "Consent", "id": id_, "status": "active",
            "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope",
                                  "code": "patient-privacy"}]},
            "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
            "patient": {"reference": f"Patient/{patient}"}, "dateTime": "2026-01-01",
            "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTIN"}]},
            "provision": {"type": "permit", "provision": [deny]} if actor else deny}


def _record(patient: str) -> list[dict]:
    """A patient's record: one resource of each kind, ids `<kind>-<patient>`."""
    subject = {"reference": f"Patient/{patient}"}
    return [
        {"resourceType": "Patient", "id": patient, "name": [{"family": NAMES[patient]}], "gender": "female",
         **({"generalPractitioner": [{"reference": f"PractitionerRole/{ROLE['gp']}"}]} if patient in (P1, P5)
            else {})},
        {"resourceType": "Observation", "id": f"obs-{patient}", "status": "final", "subject": subject,
         "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7"}]},
         "valueQuantity": {"value": 70, "unit": "kg", "system": "http://unitsofmeasure.org", "code": "kg"}},
        {"resourceType": "Condition", "id": f"cond-{patient}", "subject": subject, "code": {"text": "diabète"}},
        {"resourceType": "DocumentReference", "id": f"doc-{patient}", "status": "current", "subject": subject,
         "content": [{"attachment": {"contentType": "text/plain", "url": f"Binary/bin-{patient}"}}]},
        {"resourceType": "Binary", "id": f"bin-{patient}", "contentType": "text/plain",
         "securityContext": {"reference": f"DocumentReference/doc-{patient}"},
         "data": base64.b64encode(f"compte rendu {NAMES[patient]}".encode()).decode()},
        {"resourceType": "CarePlan", "id": f"plan-{patient}", "status": "active", "intent": "plan",
         "subject": subject},
        {"resourceType": "Task", "id": f"task-{patient}", "status": "requested", "intent": "order",
         "for": subject},
    ]


def _world() -> list[dict]:
    ended = {"start": "2024-01-01", "end": "2025-06-30"}
    future = {"start": "2099-01-01"}
    out: list[dict] = [
        {"resourceType": "Organization", "id": MSP_A, "name": "MSP A"},
        {"resourceType": "Organization", "id": MSP_B, "name": "MSP B"},
        {"resourceType": "Organization", "id": CPTS, "name": "CPTS"},
        {"resourceType": "Organization", "id": CDS, "name": "Centre de santé"},
        *({"resourceType": "Practitioner", "id": PRACTITIONER[who], "name": [{"family": who}]} for who in PEOPLE),
        _role("gp", MSP_A, "gp"), _role("nurse", MSP_A, "nurse"), _role("pharmacist", MSP_B, "pharmacist"),
        _role("physio", MSP_A, "physiotherapist"), _role("coordinator", CPTS, "coordinator"),
        _role("outsider", CDS, "specialist"),
        _team(f"team-{P1}", P1, [(f"PractitionerRole/{ROLE['nurse']}", None),
                                 (f"Practitioner/{PRACTITIONER['physio']}", ended),
                                 (f"PractitionerRole/{ROLE['physio']}", future)]),
        _team(f"team-{P2}", P2, [(f"Organization/{MSP_B}", None)]),
        _team(f"team-{P3}", P3, [(f"Practitioner/{PRACTITIONER['physio']}", ended)], structure=CPTS),
        _team(f"team-{P4}", P4, [(f"PractitionerRole/{ROLE['nurse']}", None)]),
        _team(f"team-{P6}", P6, [(f"PractitionerRole/{ROLE['gp']}", None)], status="inactive"),
        _consent(f"consent-{P4}", P4, f"PractitionerRole/{ROLE['nurse']}"),
        _consent(f"consent-{P5}", P5, None),
        {"resourceType": "Communication", "id": f"msg-{P1}", "status": "completed",
         "subject": {"reference": f"Patient/{P1}"},
         "sender": {"reference": f"PractitionerRole/{ROLE['nurse']}"},
         "recipient": [{"reference": f"Practitioner/{PRACTITIONER['outsider']}"}],
         "payload": [{"contentString": "pansement"}]},
    ]
    for patient in PATIENTS:
        out += _record(patient)
    return out


def _kind(type_: str) -> str:
    return {"Observation": "obs", "Condition": "cond", "DocumentReference": "doc", "Binary": "bin",
            "CarePlan": "plan", "Task": "task", "CareTeam": "team", "Consent": "consent",
            "Communication": "msg"}[type_]


def visible(who: str, type_: str, patient: str) -> bool:
    """The rule, written out for this world."""
    if (type_, patient) in NAMED[who]:
        return True
    if patient not in REACHES[who]:
        return False
    types = REACHES[who][patient]
    return types is None or type_ in types


@pytest.fixture(scope="module")
def admin(provider) -> dict[str, str]:
    return bearer(provider.token("backend", scope=ADMIN))


@pytest.fixture(scope="module")
def world(http, admin) -> list[dict]:
    resources = _world()
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}} for r in resources]}
    response = http.post("/", json=bundle, headers=admin)
    assert response.status_code == 200, response.text
    return resources


@pytest.fixture(scope="module")
def tokens(provider, world) -> dict[str, dict[str, str]]:
    return {who: bearer(provider.token(who, scope=USER)) for who in PEOPLE}


def hidden_names(who: str) -> list[str]:
    """What must never appear in a body this user gets: ids and names of the patients they do not reach."""
    out = []
    named = {patient for _, patient in NAMED[who]}
    for patient in PATIENTS:
        if patient not in REACHES[who]:
            out += [NAMES[patient]] + ([] if patient in named else [patient])
    return out


def shows_nothing_hidden(who: str, response: httpx.Response) -> None:
    """Nothing the user may not see in a body (a Bundle's links, like a batch entry's 404, only
    repeat what was asked)."""
    text = json.dumps(_without_echoes(response.json()), ensure_ascii=False)
    for secret in hidden_names(who):
        assert secret not in text, (who, secret, text[:1500])


def _without_echoes(body):
    if isinstance(body, dict) and body.get("resourceType") == "Bundle":
        body = {k: v for k, v in body.items() if k != "link"}
        body["entry"] = [{k: (_without_echoes(v) if k == "resource" else v) for k, v in e.items()
                          if k not in ("link", "response")} for e in body.get("entry", ())]
    if isinstance(body, dict) and body.get("resourceType") == "OperationOutcome":
        return {}
    return body


def ids_in(bundle: dict) -> set[str]:
    return {e["resource"]["id"] for e in bundle.get("entry", ()) if e.get("search", {}).get("mode") != "outcome"}


def expected_ids(who: str, type_: str) -> set[str]:
    if type_ == "Patient":
        return {p for p in PATIENTS if visible(who, "Patient", p)}
    if type_ == "Communication":
        return {f"msg-{P1}"} if visible(who, "Communication", P1) else set()
    if type_ == "CareTeam":
        return {f"team-{p}" for p in (P1, P2, P3, P4, P6) if visible(who, type_, p)}
    return {f"{_kind(type_)}-{p}" for p in PATIENTS if visible(who, type_, p)
            and (type_ != "Consent" or p in (P4, P5))}


# -- reads and searches ---------------------------------------------------------------------------

@pytest.mark.parametrize("who", PEOPLE)
def test_each_user_reads_exactly_what_the_rule_gives(http, tokens, who):
    for patient in PATIENTS:
        for type_ in ("Patient", *CLINICAL_TYPES, "Binary", *COORDINATION_TYPES):
            id_ = patient if type_ == "Patient" else f"{_kind(type_)}-{patient}"
            if type_ == "CareTeam" and patient == P5:
                continue
            shown = http.get(f"/{type_}/{id_}", headers=tokens[who])
            want = visible(who, "DocumentReference" if type_ == "Binary" else type_, patient)
            assert shown.status_code == (200 if want else 404), (who, type_, id_, shown.text[:300])
            if not want:
                unknown = f"z{uuid.uuid4().hex[:len(id_) - 1]}"
                absent = http.get(f"/{type_}/{unknown}", headers=tokens[who])
                assert shown.text.replace(id_, "ID") == absent.text.replace(unknown, "ID")
                for suffix in ("/_history", "/_history/1"):
                    assert http.get(f"/{type_}/{id_}{suffix}", headers=tokens[who]).status_code == 404


@pytest.mark.parametrize("who", PEOPLE)
def test_searches_totals_and_counts_hold_only_what_the_rule_gives(http, tokens, who):
    for type_ in ("Patient", *CLINICAL_TYPES, *COORDINATION_TYPES, "Communication", "Consent"):
        want = expected_ids(who, type_)
        query = "_id=" + ",".join(sorted(_all_ids(type_)))
        found = http.get(f"/{type_}?{query}&_total=accurate", headers=tokens[who])
        assert found.status_code == 200, found.text
        assert ids_in(found.json()) == want, (who, type_)
        assert found.json()["total"] == len(want)
        counted = http.get(f"/{type_}?{query}&_summary=count", headers=tokens[who]).json()
        assert counted["total"] == len(want), (who, type_)
        paged = http.get(f"/{type_}?{query}&_count=1", headers=tokens[who])
        shows_nothing_hidden(who, paged)
        seen = set()
        page = paged.json()
        while True:
            seen |= ids_in(page)
            following = [link["url"] for link in page.get("link", ()) if link["relation"] == "next"]
            if not following:
                break
            page = http.get(following[0], headers=tokens[who]).json()
        assert seen == want, (who, type_)


def _all_ids(type_: str) -> set[str]:
    if type_ == "Patient":
        return set(PATIENTS)
    if type_ == "Communication":
        return {f"msg-{P1}"}
    return {f"{_kind(type_)}-{p}" for p in PATIENTS}


@pytest.mark.parametrize("who", PEOPLE)
def test_includes_chains_has_compartments_and_everything_reveal_nothing(http, tokens, who):
    h = tokens[who]
    ids = ",".join(PATIENTS)
    forms = [
        f"/Observation?subject={','.join('Patient/' + p for p in PATIENTS)}&_include=Observation:subject",
        f"/Patient?_id={ids}&_revinclude=Observation:subject&_revinclude=CareTeam:subject",
        f"/CarePlan?_id={','.join('plan-' + p for p in PATIENTS)}&_include=CarePlan:subject"
        "&_revinclude:iterate=Observation:subject",
        *(f"/Observation?subject.name={NAMES[p]}" for p in PATIENTS),
        *(f"/Observation?subject:Patient.family={NAMES[p]}&_summary=count" for p in PATIENTS),
        *(f"/Patient?_has:Observation:subject:code=29463-7&_id={p}" for p in PATIENTS),
        *(f"/Patient?_has:Condition:subject:code:text=diab&family={NAMES[p]}&_summary=count" for p in PATIENTS),
        *(f"/Patient/{p}/Observation" for p in PATIENTS),
        *(f"/Patient/{p}/*" for p in PATIENTS),
        f"/?_type=Patient,Observation,Condition&_id={ids}",
        "/Observation/_history?_count=500", "/Patient/_history?_count=500", "/CareTeam/_history?_count=500",
        f"/DocumentReference?subject:Patient.name={NAMES[P1][:-2]}",
    ]
    for form in forms:
        answer = http.get(form, headers=h)
        assert answer.status_code == 200, (form, answer.text[:500])
        shows_nothing_hidden(who, answer)
        if "_summary=count" in form:
            patient = next(p for p in PATIENTS if NAMES[p] in form)
            assert answer.json()["total"] == (1 if visible(who, "Observation", patient) else 0), (who, form)
    for patient in PATIENTS:
        everything = http.get(f"/Patient/{patient}/$everything", headers=h)
        if visible(who, "Patient", patient):
            assert everything.status_code == 200
            shows_nothing_hidden(who, everything)
            types = {e["resource"]["resourceType"] for e in everything.json().get("entry", ())}
            if REACHES[who].get(patient) is not None:  # a coordinator: no clinical record
                assert not types & set(CLINICAL_TYPES), (who, types)
        else:
            assert everything.status_code == 404, (who, patient, everything.text[:300])


@pytest.mark.parametrize("who", PEOPLE)
def test_batches_read_only_within_the_rule(http, tokens, who):
    bundle = {"resourceType": "Bundle", "type": "batch", "entry": [
        {"request": {"method": "GET", "url": url}} for p in PATIENTS
        for url in (f"Patient/{p}", f"Observation/obs-{p}", f"Observation?subject=Patient/{p}")]}
    answer = http.post("/", json=bundle, headers=tokens[who])
    assert answer.status_code == 200
    shows_nothing_hidden(who, answer)
    for entry, patient in zip(answer.json()["entry"][::3], PATIENTS, strict=True):
        assert entry["response"]["status"].startswith("200" if visible(who, "Patient", patient) else "404")


# -- writes ---------------------------------------------------------------------------------------

def test_writes_into_a_patient_out_of_reach_are_refused_and_change_nothing(http, tokens, admin):
    nurse = tokens["nurse"]
    observation = {"resourceType": "Observation", "status": "final", "code": {"text": "poids"},
                   "subject": {"reference": f"Patient/{P2}"}}
    assert http.post("/Observation", json=observation, headers=nurse).status_code == 403
    assert http.put(f"/Observation/obs-{P2}", json={**observation, "id": f"obs-{P2}"},
                    headers=nurse).status_code == 403
    assert http.delete(f"/Observation/obs-{P2}", headers=nurse).status_code in (200, 204)  # nothing to delete
    assert http.get(f"/Observation/obs-{P2}", headers=admin).status_code == 200
    patch = [{"op": "replace", "path": "/status", "value": "cancelled"}]
    assert http.patch(f"/Observation/obs-{P2}", json=patch, headers={
        **nurse, "Content-Type": "application/json-patch+json"}).status_code == 404
    # a conditional update matching only a hidden resource creates, never overwrites it
    moved = http.put(f"/Observation?_id=obs-{P2}", json={**observation, "subject": {"reference": f"Patient/{P1}"}},
                     headers=nurse)
    assert moved.status_code == 201, moved.text
    assert http.get(f"/Observation/obs-{P2}", headers=admin).json()["subject"]["reference"] == f"Patient/{P2}"
    # naming oneself in a patient's care team does not open the record
    team = {"resourceType": "CareTeam", "status": "active", "subject": {"reference": f"Patient/{P2}"},
            "participant": [{"member": {"reference": f"PractitionerRole/{ROLE['nurse']}"}}]}
    assert http.post("/CareTeam", json=team, headers=nurse).status_code == 403
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {**observation, "subject": {"reference": f"Patient/{P1}"}},
         "request": {"method": "POST", "url": "Observation"}},
        {"resource": observation, "request": {"method": "POST", "url": "Observation"}}]}
    before = http.get("/Observation?_summary=count", headers=admin).json()["total"]
    assert http.post("/", json=bundle, headers=nurse).status_code == 403
    assert http.get("/Observation?_summary=count", headers=admin).json()["total"] == before
    # within reach, writes work
    assert http.post("/Observation", json={**observation, "subject": {"reference": f"Patient/{P1}"}},
                     headers=nurse).status_code == 201


def test_conditional_writes_and_apply_treat_a_hidden_match_as_absent(http, tokens, admin):
    nurse = tokens["nurse"]
    mine = {"resourceType": "Observation", "status": "final", "code": {"text": "tension"},
            "subject": {"reference": f"Patient/{P1}"}}
    created = http.post("/Observation", json=mine, headers={**nurse, "If-None-Exist": f"_id=obs-{P2}"})
    assert created.status_code == 201, created.text  # the hidden match is no match
    assert http.delete(f"/Observation?_id=obs-{P2}", headers=nurse).status_code in (200, 204)
    patch = [{"op": "replace", "path": "/status", "value": "cancelled"}]
    patched = http.patch(f"/Observation?_id=obs-{P2}", json=patch,
                         headers={**nurse, "Content-Type": "application/json-patch+json"})
    assert patched.status_code == 404, patched.text  # a conditional patch matching nothing
    assert http.get(f"/Observation/obs-{P2}", headers=admin).json()["status"] == "final"
    plan = {"resourceType": "PlanDefinition", "id": f"plan-def-{TAG}", "status": "active",
            "action": [{"title": "visite à domicile"}]}
    assert http.put(f"/PlanDefinition/{plan['id']}", json=plan, headers=admin).status_code == 201
    hidden = http.post(f"/PlanDefinition/{plan['id']}/$apply?subject=Patient/{P2}", headers=nurse)
    unknown = http.post(f"/PlanDefinition/{plan['id']}/$apply?subject=Patient/nobody-{TAG}", headers=nurse)
    assert hidden.status_code == unknown.status_code == 404
    assert hidden.text.replace(P2, "ID") == unknown.text.replace(f"nobody-{TAG}", "ID")
    assert http.post(f"/PlanDefinition/{plan['id']}/$apply?subject=Patient/{P1}", headers=nurse).status_code == 200


def test_a_new_patient_can_be_registered_with_its_care_team_in_one_transaction(http, tokens):
    gp = tokens["gp"]
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:11111111-1111-4111-8111-111111111111",
         "resource": {"resourceType": "Patient", "name": [{"family": "Nouveau"}]},
         "request": {"method": "POST", "url": "Patient"}},
        {"resource": {"resourceType": "CareTeam", "status": "active",
                      "subject": {"reference": "urn:uuid:11111111-1111-4111-8111-111111111111"},
                      "participant": [{"member": {"reference": f"PractitionerRole/{ROLE['gp']}"}}]},
         "request": {"method": "POST", "url": "CareTeam"}}]}
    answer = http.post("/", json=bundle, headers=gp)
    assert answer.status_code == 200, answer.text
    patient = answer.json()["entry"][0]["response"]["location"].split("/")[1]
    assert http.get(f"/Patient/{patient}", headers=gp).status_code == 200
    assert http.get(f"/Patient/{patient}", headers=tokens["nurse"]).status_code == 404


# -- changes take effect on the next request --------------------------------------------------------

def test_consents_memberships_and_roles_take_effect_on_the_next_request(http, tokens, admin):
    pharmacist = tokens["pharmacist"]
    assert http.get(f"/Observation/obs-{P2}", headers=pharmacist).status_code == 200
    consent = _consent(f"consent-{P2}", P2, f"Organization/{MSP_B}")
    assert http.put(f"/Consent/{consent['id']}", json=consent, headers=admin).status_code == 201
    assert http.get(f"/Observation/obs-{P2}", headers=pharmacist).status_code == 404
    assert http.put(f"/Consent/{consent['id']}", json={**consent, "status": "inactive"},
                    headers=admin).status_code == 200
    assert http.get(f"/Observation/obs-{P2}", headers=pharmacist).status_code == 200
    # the role ends: the membership through the organization ends with it
    role = _role("pharmacist", MSP_B, "pharmacist")
    assert http.put(f"/PractitionerRole/{role['id']}", json={**role, "active": False}, headers=admin).status_code == 200
    assert http.get(f"/Observation/obs-{P2}", headers=pharmacist).status_code == 404
    assert http.put(f"/PractitionerRole/{role['id']}", json=role, headers=admin).status_code == 200
    assert http.get(f"/Observation/obs-{P2}", headers=pharmacist).status_code == 200


@pytest.fixture(scope="module")
def other_worker(secured, provider, tmp_path_factory):
    """A second server process on the same database: what another worker behind a load balancer is."""
    running = start_server(tmp_path_factory.mktemp("other-worker"), extra_env={
        "FHIR_MONGODB_URI": client_uri(secured.data_dir, DB_PORT),
        "FHIR_AUTH_ISSUER": provider.issuer, "FHIR_AUTH_AUDIENCE": AUDIENCE})
    with httpx.Client(base_url=running.base_url, timeout=60) as client:
        yield client
    running.stop()


def test_a_change_on_one_worker_holds_on_every_worker_from_the_next_request(http, other_worker, tokens, admin):
    nurse = tokens["nurse"]
    for _ in range(3):  # both workers have the nurse's circle cached
        assert http.get(f"/Condition/cond-{P1}", headers=nurse).status_code == 200
        assert other_worker.get(f"/Condition/cond-{P1}", headers=nurse).status_code == 200
    consent = _consent(f"consent-workers-{P1}", P1, f"PractitionerRole/{ROLE['nurse']}")
    assert http.put(f"/Consent/{consent['id']}", json=consent, headers=admin).status_code == 201
    assert other_worker.get(f"/Condition/cond-{P1}", headers=nurse).status_code == 404
    assert http.get(f"/Condition/cond-{P1}", headers=nurse).status_code == 404
    assert other_worker.delete(f"/Consent/{consent['id']}", headers=admin).status_code in (200, 204)
    assert http.get(f"/Condition/cond-{P1}", headers=nurse).status_code == 200
    assert other_worker.get(f"/Condition/cond-{P1}", headers=nurse).status_code == 200


def test_a_membership_that_ends_in_a_moment_ends_without_any_write(http, provider, admin):
    """A period boundary invalidates the cached circle by itself."""
    who = "outsider"
    token = bearer(provider.token(who, scope=USER))
    ends = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 4))
    team = _team(f"team-short-{TAG}", P6, [(f"Practitioner/{PRACTITIONER[who]}", {"end": ends})])
    assert http.put(f"/CareTeam/{team['id']}", json=team, headers=admin).status_code == 201
    assert http.get(f"/Observation/obs-{P6}", headers=token).status_code == 200
    time.sleep(5)
    assert http.get(f"/Observation/obs-{P6}", headers=token).status_code == 404
    assert http.delete(f"/CareTeam/{team['id']}", headers=admin).status_code in (200, 204)


# -- break the glass -------------------------------------------------------------------------------

def test_break_the_glass_opens_the_record_audits_it_and_tells_the_doctor(http, provider, admin, world):
    auditor = bearer(provider.token("backend", scope=AUDITOR))
    physio = bearer(provider.mint.token(scope=USER, fhirUser=f"Practitioner/{PRACTITIONER['physio']}",
                                        purpose_of_use="BTG"))
    assert http.get(f"/Observation/obs-{P1}", headers=physio).status_code == 200
    assert http.get(f"/Observation?_id=obs-{P1}", headers=physio).json()["total"] == 1
    # a consent denying everyone holds even then
    assert http.get(f"/Observation/obs-{P5}", headers=physio).status_code == 404
    deadline = time.monotonic() + 10
    while True:
        events = http.get(f"/AuditEvent?entity=Patient/{P1}&_count=200", headers=auditor).json()
        btg = [e["resource"] for e in events.get("entry", ())
               if any(c.get("code") == "BTG" for p in e["resource"].get("purposeOfEvent", ()) for c in p["coding"])]
        if btg or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert btg, "no AuditEvent with purposeOfEvent BTG"
    notices = http.get(f"/Communication?subject=Patient/{P1}&identifier=urn:fhir-server:break-the-glass|",
                       headers=admin).json()
    notices = [e["resource"] for e in notices.get("entry", ())]
    assert len(notices) == 1, notices  # once per professional, patient and day
    assert notices[0]["recipient"] == [{"reference": f"PractitionerRole/{ROLE['gp']}"}]
    assert notices[0]["sender"] == {"reference": f"Practitioner/{PRACTITIONER['physio']}"}
    # the patient without a médecin traitant: their care team is told
    http.get(f"/Patient/{P2}", headers=physio)
    told = http.get(f"/Communication?subject=Patient/{P2}&identifier=urn:fhir-server:break-the-glass|",
                    headers=admin).json()["entry"][0]["resource"]
    assert told["recipient"] == [{"reference": f"CareTeam/team-{P2}"}]


# -- outside the rule -------------------------------------------------------------------------------

def test_resources_of_no_patient_are_readable_by_every_member(http, tokens):
    for who in PEOPLE:
        for url in (f"/Organization/{MSP_A}", f"/Practitioner/{PRACTITIONER['gp']}",
                    f"/PractitionerRole/{ROLE['nurse']}"):
            assert http.get(url, headers=tokens[who]).status_code == 200, (who, url)


def test_a_user_token_naming_no_professional_sees_no_patient(http, provider):
    anonymous_user = bearer(provider.mint.token(scope=USER))
    assert http.get(f"/Patient?_id={','.join(PATIENTS)}", headers=anonymous_user).json().get("total") == 0
    assert http.get(f"/Organization/{MSP_A}", headers=anonymous_user).status_code == 200



# -- coordinators manage, they do not promote themselves ----------------------------------------------

def test_a_coordinator_manages_care_teams_and_tasks_but_never_joins_the_clinical_record(http, tokens, admin):
    coordinator = tokens["coordinator"]
    subject = {"reference": f"Patient/{P3}"}
    task = {"resourceType": "Task", "status": "requested", "intent": "order", "for": subject,
            "description": "organiser la visite"}
    assert http.post("/Task", json=task, headers=coordinator).status_code == 201
    assert http.post("/Observation", json={"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                                           "subject": subject}, headers=coordinator).status_code == 403
    seat = {"resourceType": "CareTeam", "status": "active", "subject": subject,
            "managingOrganization": [{"reference": f"Organization/{CPTS}"}]}
    himself = {**seat, "participant": [{"member": {"reference": f"Practitioner/{PRACTITIONER['coordinator']}"}}]}
    assert http.post("/CareTeam", json=himself, headers=coordinator).status_code == 403
    patient = http.get(f"/Patient/{P3}", headers=coordinator).json()
    as_gp = {**patient, "generalPractitioner": [{"reference": f"Practitioner/{PRACTITIONER['coordinator']}"}]}
    assert http.put(f"/Patient/{P3}", json=as_gp, headers=coordinator).status_code == 403
    other = {**seat, "participant": [{"member": {"reference": f"PractitionerRole/{ROLE['outsider']}"}}]}
    made = http.post("/CareTeam", json=other, headers=coordinator)
    assert made.status_code == 201, made.text
    outsider = tokens["outsider"]
    assert http.get(f"/Observation/obs-{P3}", headers=outsider).status_code == 200  # at once
    assert http.delete(f"/CareTeam/{made.json()['id']}", headers=admin).status_code in (200, 204)
    assert http.get(f"/Observation/obs-{P3}", headers=outsider).status_code == 404


def test_break_the_glass_cannot_make_itself_a_lasting_member(http, provider):
    physio = bearer(provider.mint.token(scope=USER, fhirUser=f"Practitioner/{PRACTITIONER['physio']}",
                                        purpose_of_use="BTG"))
    team = {"resourceType": "CareTeam", "status": "active", "subject": {"reference": f"Patient/{P2}"},
            "participant": [{"member": {"reference": f"Practitioner/{PRACTITIONER['physio']}"}}]}
    assert http.post("/CareTeam", json=team, headers=physio).status_code == 403


def test_a_binary_follows_its_security_context(http, tokens, admin):
    nurse = tokens["nurse"]
    loose = {"resourceType": "Binary", "id": f"loose-{TAG}", "contentType": "text/plain", "data": "eA=="}
    assert http.put(f"/Binary/{loose['id']}", json=loose, headers=admin).status_code == 201
    assert http.get(f"/Binary/{loose['id']}", headers=nurse).status_code == 404  # nothing says whose it is
    for patient, status in ((P2, 403), (P1, 201)):
        binary = {"resourceType": "Binary", "contentType": "text/plain", "data": "eA==",
                  "securityContext": {"reference": f"DocumentReference/doc-{patient}"}}
        assert http.post("/Binary", json=binary, headers=nurse).status_code == status, patient


def test_a_document_out_of_reach_cannot_be_replaced_and_a_replacement_is_audited(http, tokens, admin, provider):
    """A relatesTo names a document the user may not see: refused exactly as if it did not exist,
    the hidden document still current, nothing written. Within reach, the supersede the server
    makes is audited under the user who caused it."""
    nurse = tokens["nurse"]

    def replacing(patient: str, target: str) -> dict:
        return {"resourceType": "DocumentReference", "status": "current",
                "subject": {"reference": f"Patient/{patient}"},
                "relatesTo": [{"code": "replaces", "target": {"reference": target}}],
                "content": [{"attachment": {"contentType": "text/plain", "data": "eA=="}}]}

    before = http.get("/DocumentReference?_summary=count", headers=admin).json()["total"]
    hidden = http.post("/DocumentReference", json=replacing(P1, f"DocumentReference/doc-{P2}"), headers=nurse)
    absent = http.post("/DocumentReference", json=replacing(P1, f"DocumentReference/none-{TAG}"), headers=nurse)
    assert hidden.status_code == absent.status_code == 422, hidden.text
    assert hidden.text.replace(f"doc-{P2}", "ID") == absent.text.replace(f"none-{TAG}", "ID")
    shows_nothing_hidden("nurse", hidden)
    in_a_bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": replacing(P1, f"DocumentReference/doc-{P2}"), "request": {"method": "POST",
                                                                               "url": "DocumentReference"}}]}
    assert http.post("/", json=in_a_bundle, headers=nurse).status_code == 422
    # about the other patient, the write itself is out of reach
    assert http.post("/DocumentReference", json=replacing(P2, f"DocumentReference/doc-{P2}"),
                     headers=nurse).status_code == 403
    assert http.get(f"/DocumentReference/doc-{P2}", headers=admin).json()["status"] == "current"
    assert http.get("/DocumentReference?_summary=count", headers=admin).json()["total"] == before

    replaced = http.post("/DocumentReference", json=replacing(P1, f"DocumentReference/doc-{P1}"), headers=nurse)
    assert replaced.status_code == 201, replaced.text
    old = http.get(f"/DocumentReference/doc-{P1}", headers=admin).json()
    assert old["status"] == "superseded"
    auditor = bearer(provider.token("backend", scope=AUDITOR))
    written = f"DocumentReference/doc-{P1}/_history/{old['meta']['versionId']}"
    deadline = time.monotonic() + 10
    while True:
        events = [e["resource"] for e in http.get(f"/AuditEvent?entity=DocumentReference/doc-{P1}&_count=200",
                                                  headers=auditor).json().get("entry", ())]
        made = [e for e in events if e["action"] == "U"
                and any(x.get("what", {}).get("reference") == written for x in e["entity"])]
        if made or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert len(made) == 1, events
    assert made[0]["outcome"] == "0"
    assert "consequence" in next(x for x in made[0]["entity"] if x.get("what", {}).get("reference") == written)[
        "description"]
    assert {"reference": f"Practitioner/{PRACTITIONER['nurse']}"} in [a.get("who") for a in made[0]["agent"]]
    assert {"reference": f"Patient/{P1}"} in [x.get("what") for x in made[0]["entity"]]


def test_a_colleagues_agenda_is_shared_but_a_patients_schedule_is_not(http, tokens, admin):
    """Schedule is in R4's Patient compartment, yet a professional's agenda is the structure's:
    every member reads it (and finds its free Slots); a Schedule naming a patient stays in the
    patient's record; only its own actor writes an agenda."""
    gp_agenda = {"resourceType": "Schedule", "id": f"agenda-gp-{TAG}", "active": True,
                 "actor": [{"reference": f"PractitionerRole/{ROLE['gp']}"}]}
    patients = {"resourceType": "Schedule", "id": f"agenda-{P2}", "active": True,
                "actor": [{"reference": f"Patient/{P2}"}, {"reference": f"PractitionerRole/{ROLE['pharmacist']}"}]}
    slot = {"resourceType": "Slot", "id": f"slot-gp-{TAG}", "status": "free",
            "schedule": {"reference": f"Schedule/{gp_agenda['id']}"},
            "start": "2027-01-04T14:00:00Z", "end": "2027-01-04T14:15:00Z"}
    for resource in (gp_agenda, patients, slot):
        assert http.put(f"/{resource['resourceType']}/{resource['id']}", json=resource,
                        headers=admin).status_code in (200, 201)
    nurse = tokens["nurse"]
    assert http.get(f"/Schedule/{gp_agenda['id']}", headers=nurse).status_code == 200
    assert http.get(f"/Schedule/{patients['id']}", headers=nurse).status_code == 404
    assert http.get(f"/Schedule/{patients['id']}", headers=tokens["pharmacist"]).status_code == 200
    found = http.get("/Schedule", params={"_id": f"{gp_agenda['id']},{patients['id']}"}, headers=nurse).json()
    assert ids_in(found) == {gp_agenda["id"]}
    free = http.get("/Slot", params={"status": "free", "schedule.actor": f"PractitionerRole/{ROLE['gp']}"},
                    headers=nurse).json()
    assert slot["id"] in ids_in(free)
    changed = {**gp_agenda, "comment": "fermé le lundi"}
    assert http.put(f"/Schedule/{gp_agenda['id']}", json=changed, headers=nurse).status_code == 403
    assert http.put(f"/Schedule/{gp_agenda['id']}", json=changed, headers=tokens["gp"]).status_code == 200
