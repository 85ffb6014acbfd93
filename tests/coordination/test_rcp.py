"""The RCP from planning to decision, through HTTP on a server of its own, with professionals'
tokens from the local issuer (the équipe de soins rule applies to them):

plan an RCP listing two patients → hold it (fulfilled): the meeting's Encounter and one per
patient, partOf it, created once whatever is written again → a decision per patient, linked to
its Encounter, with follow-up Tasks that join the patient's CarePlan, and a message to the
patient's care team. Refusals leave every collection as it was. Then the coordinator's queries
(profiles/README.md, "RCP")."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from tests.bundle.support import dump, dump_difference, mongo
from tests.conftest import ROOT, die_with_pytest, start_server

IG = "https://fhir-server.dev/ig/coordination"
RCP = {"coding": [{"system": f"{IG}/CodeSystem/coord-cs-meeting-type", "code": "rcp"}]}
RCP_TOKEN = f"{IG}/CodeSystem/coord-cs-meeting-type|rcp"
ENCOUNTER_CLASS = {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"}
DECISION = {"coding": [{"system": f"{IG}/CodeSystem/coord-cs-document-type", "code": "rcp-report"}]}
DECISION_TOKEN = f"{IG}/CodeSystem/coord-cs-document-type|rcp-report"
STRUCTURE = f"{IG}/StructureDefinition/coord-ext-structure"
TAG = uuid.uuid4().hex[:6]
MSP, OTHER_MSP = f"msp-{TAG}", f"msp2-{TAG}"
PEOPLE = ("gp", "nurse", "kine")  # gp: teams A, B, C; nurse: team A and RCP participant; kine: team A only
A, B, C = (f"pat{x}-{TAG}" for x in "abc")


@pytest.fixture(scope="module")
def rcp_server(tmp_path_factory, r4_examples):
    running = start_server(tmp_path_factory.mktemp("rcp"), extra_env={"FHIR_AUDIT": "false"})
    yield running
    running.stop()


@pytest.fixture(scope="module")
def admin(rcp_server) -> Iterator[httpx.Client]:
    """Open mode without a token: everything (the directory, patients and teams are set up so)."""
    with httpx.Client(base_url=rcp_server.base_url, timeout=60, headers={"Accept": "application/fhir+json"}) as c:
        yield c


@pytest.fixture(scope="module")
def as_user(rcp_server):
    """An HTTP client per professional, with a token of the local issuer naming their role."""
    clients: dict[str, httpx.Client] = {}

    def client(who: str) -> httpx.Client:
        if who not in clients:
            env = {k: v for k, v in os.environ.items() if not k.startswith("FHIR_AUTH_")}
            env["FHIR_DATA_DIR"] = str(rcp_server.data_dir)
            done = subprocess.run([sys.executable, "-m", "fhir_server", "token", "--user",
                                   f"PractitionerRole/{who}-{TAG}"], env=env, cwd=ROOT, capture_output=True,
                                  text=True, timeout=60, preexec_fn=die_with_pytest)
            assert done.returncode == 0, done.stderr
            clients[who] = httpx.Client(base_url=rcp_server.base_url, timeout=60, headers={
                "Accept": "application/fhir+json", "Authorization": f"Bearer {done.stdout.strip()}"})
        return clients[who]

    yield client
    for c in clients.values():
        c.close()


@pytest.fixture(scope="module")
def database(rcp_server):
    client = mongo(rcp_server)
    yield client
    client.close()


def put(client: httpx.Client, resource: dict[str, Any]) -> dict[str, Any]:
    r = client.put(f"/{resource['resourceType']}/{resource['id']}", json=resource)
    assert r.status_code in (200, 201), r.text
    return r.json()


def post(client: httpx.Client, resource: dict[str, Any]) -> dict[str, Any]:
    r = client.post(f"/{resource['resourceType']}", json=resource)
    assert r.status_code == 201, r.text
    return r.json()


@pytest.fixture(scope="module")
def cpts(admin) -> None:
    """Two MSPs; a GP, a nurse and a physio at the first; three patients, each with an active
    care team and a care plan: A (gp, nurse, kine), B and C (gp only)."""
    for org in (MSP, OTHER_MSP):
        put(admin, {"resourceType": "Organization", "id": org, "name": org})
    for who in PEOPLE:
        put(admin, {"resourceType": "Practitioner", "id": f"{who}-{TAG}", "name": [{"family": who}]})
        put(admin, {"resourceType": "PractitionerRole", "id": f"{who}-{TAG}", "active": True,
                    "practitioner": {"reference": f"Practitioner/{who}-{TAG}"},
                    "organization": {"reference": f"Organization/{MSP}"}})
    members = {A: PEOPLE, B: ("gp",), C: ("gp",)}
    for patient, team in members.items():
        put(admin, {"resourceType": "Patient", "id": patient, "name": [{"family": patient}]})
        put(admin, {"resourceType": "CareTeam", "id": f"team-{patient}", "status": "active",
                    "subject": {"reference": f"Patient/{patient}"},
                    "participant": [{"member": {"reference": f"PractitionerRole/{w}-{TAG}"}} for w in team]})
        put(admin, {"resourceType": "CarePlan", "id": f"plan-{patient}", "status": "active", "intent": "plan",
                    "subject": {"reference": f"Patient/{patient}"},
                    "careTeam": [{"reference": f"CareTeam/team-{patient}"}]})


def meeting(patients: list[str], *, start: datetime, status: str = "booked", structure: str = MSP,
            people: tuple[str, ...] = ("gp", "nurse")) -> dict[str, Any]:
    return {"resourceType": "Appointment", "meta": {"profile": [f"{IG}/StructureDefinition/coord-rcp-appointment"]},
            "extension": [{"url": STRUCTURE, "valueReference": {"reference": f"Organization/{structure}"}}],
            "status": status, "serviceType": [RCP], "description": "RCP insuffisance cardiaque",
            "start": start.isoformat(), "end": (start + timedelta(hours=1)).isoformat(),
            "participant": [{"actor": {"reference": f"PractitionerRole/{w}-{TAG}"}, "status": "accepted"}
                            for w in people]
            + [{"actor": {"reference": f"Patient/{p}"}, "status": "accepted"} for p in patients]}


def encounters(client: httpx.Client, appointment: str) -> list[dict[str, Any]]:
    """The Encounters of a held RCP: the meeting's (by `appointment`) and the patients' (partOf it)."""
    bundle = client.get("/Encounter", params={"appointment": appointment, "_revinclude": "Encounter:part-of"}).json()
    return [e["resource"] for e in bundle.get("entry", [])]


def hold(client: httpx.Client, appointment: dict[str, Any]) -> dict[str, Any]:
    return put(client, {**appointment, "status": "fulfilled"})


@pytest.fixture(scope="module")
def held(cpts, as_user) -> dict[str, Any]:
    """An RCP planned and held last week by the GP, discussing A and B: (appointment, encounters)."""
    gp = as_user("gp")
    planned = post(gp, meeting([A, B], start=datetime.now(UTC) - timedelta(days=7)))
    assert encounters(gp, f"Appointment/{planned['id']}") == []  # planned: nothing held yet
    done = hold(gp, planned)
    return {"appointment": done, "encounters": encounters(gp, f"Appointment/{done['id']}")}


def patient_encounter(held: dict[str, Any], patient: str) -> str:
    [found] = [e["id"] for e in held["encounters"] if e.get("subject", {}).get("reference") == f"Patient/{patient}"]
    return f"Encounter/{found}"


def validate(client: httpx.Client, resource: dict[str, Any], profile: str) -> None:
    r = client.post(f"/{resource['resourceType']}/$validate", params={"profile": f"{IG}/StructureDefinition/{profile}"},
                    json=resource)
    errors = [i for i in r.json().get("issue", []) if i["severity"] in ("error", "fatal")]
    assert r.status_code == 200 and not errors, r.text


def test_holding_an_rcp_creates_the_meeting_and_one_encounter_per_patient(held, admin):
    appointment, found = held["appointment"], held["encounters"]
    [meeting_] = [e for e in found if "subject" not in e]
    patients = sorted(e["subject"]["reference"] for e in found if "subject" in e)
    assert patients == [f"Patient/{A}", f"Patient/{B}"]
    for encounter in found:
        assert encounter["type"] == [RCP] and encounter["status"] == "finished"
        assert encounter["appointment"] == [{"reference": f"Appointment/{appointment['id']}"}]
        assert encounter["period"] == {"start": appointment["start"], "end": appointment["end"]}
        assert {p["individual"]["reference"] for p in encounter["participant"]} == {
            f"PractitionerRole/gp-{TAG}", f"PractitionerRole/nurse-{TAG}"}
        assert encounter["serviceProvider"] == {"reference": f"Organization/{MSP}"}
        if encounter is not meeting_:
            assert encounter["partOf"] == {"reference": f"Encounter/{meeting_['id']}"}
        validate(admin, encounter, "coord-rcp-encounter")


def test_holding_again_creates_nothing_twice(held, as_user):
    gp = as_user("gp")
    key = f"Appointment/{held['appointment']['id']}"
    current = gp.get(f"/{key}").json()
    hold(gp, {**current, "comment": "compte rendu à suivre"})  # an update of a held RCP
    put(gp, {**gp.get(f"/{key}").json(), "status": "booked"})
    hold(gp, gp.get(f"/{key}").json())  # held again
    assert sorted(e["id"] for e in encounters(gp, key)) == sorted(e["id"] for e in held["encounters"])


def test_a_patient_added_to_a_held_rcp_gets_their_encounter(cpts, as_user):
    gp = as_user("gp")
    done = hold(gp, post(gp, meeting([A], start=datetime.now(UTC) - timedelta(days=3))))
    key = f"Appointment/{done['id']}"
    assert len(encounters(gp, key)) == 2
    done["participant"].append({"actor": {"reference": f"Patient/{C}"}, "status": "accepted"})
    put(gp, done)
    found = encounters(gp, key)
    assert sorted(e.get("subject", {}).get("reference", "") for e in found) == ["", f"Patient/{A}", f"Patient/{C}"]


def test_encounters_a_transaction_writes_itself_count_for_their_rcp_only(cpts, as_user):
    """Two RCPs held in one transaction, the first with its meeting's Encounter written by the
    client: the server adds the first's patient encounter under that meeting, and the second's
    meeting and patient encounter under a meeting of its own."""
    gp = as_user("gp")
    start = datetime.now(UTC) - timedelta(days=5)
    first = {**meeting([A], start=start, status="fulfilled"), "_url": f"urn:uuid:{uuid.uuid4()}"}
    first_url = first["_url"]
    written = {"resourceType": "Encounter", "status": "finished", "class": ENCOUNTER_CLASS, "type": [RCP],
               "participant": [{"individual": {"reference": f"PractitionerRole/gp-{TAG}"}}],
               "appointment": [{"reference": first_url}]}
    second = meeting([B], start=start, status="fulfilled")
    r = gp.post("", json=transaction(first, written, second))
    assert r.status_code == 200, r.text
    first_key, meeting_key, second_key = [e["response"]["location"].split("/_history")[0] for e in r.json()["entry"]]
    found = encounters(gp, first_key)
    assert sorted((e.get("subject", {}).get("reference", ""), e.get("partOf", {}).get("reference", "")) for e in found) \
        == [("", ""), (f"Patient/{A}", meeting_key)]
    found = encounters(gp, second_key)
    [own] = [f"Encounter/{e['id']}" for e in found if "subject" not in e]
    assert own != meeting_key
    assert [(e["subject"]["reference"], e["partOf"]["reference"]) for e in found if "subject" in e] == [
        (f"Patient/{B}", own)]


def test_an_rcp_without_professionals_cannot_be_held(cpts, admin, database):
    before = dump(database)
    bare = meeting([A, B], start=datetime.now(UTC), status="fulfilled", people=())
    del bare["meta"]  # the profile wants two participants; the rule wants professionals among them
    r = admin.post("/Appointment", json=bare)
    assert r.status_code == 422, r.text
    assert r.json()["issue"][0]["expression"] == ["Appointment.participant"]
    assert dump(database) == before, dump_difference(before, dump(database))


def test_who_does_not_reach_every_patient_discussed_cannot_hold_the_rcp(cpts, as_user, database):
    """The physio is in A's team only and not a participant: the RCP about A and B is not theirs."""
    planned = post(as_user("gp"), meeting([A, B], start=datetime.now(UTC) - timedelta(days=1)))
    before = dump(database)
    r = as_user("kine").put(f"/Appointment/{planned['id']}", json={**planned, "status": "fulfilled"})
    assert r.status_code == 403, r.text
    assert dump(database) == before, dump_difference(before, dump(database))


def decision(patient: str, encounter: str, author: str = "gp", status: str = "current") -> dict[str, Any]:
    return {"resourceType": "DocumentReference", "meta": {"profile": [f"{IG}/StructureDefinition/coord-rcp-decision"]},
            "status": status, "type": DECISION, "subject": {"reference": f"Patient/{patient}"},
            "description": "titration du bêtabloquant, avis cardiologique sous un mois",
            "author": [{"reference": f"PractitionerRole/{author}-{TAG}"}],
            "content": [{"attachment": {"contentType": "text/plain", "data": "RMOpY2lzaW9u"}}],
            "context": {"encounter": [{"reference": encounter}]}}


def follow_up(patient: str, reason: str, plan: str | None = None, owner: str = "nurse") -> dict[str, Any]:
    task = {"resourceType": "Task", "meta": {"profile": [f"{IG}/StructureDefinition/coord-task"]},
            "status": "requested", "intent": "order", "description": "pesée quotidienne",
            "for": {"reference": f"Patient/{patient}"}, "authoredOn": "2026-12-01T10:00:00Z",
            "requester": {"reference": f"PractitionerRole/gp-{TAG}"},
            "owner": {"reference": f"PractitionerRole/{owner}-{TAG}"}, "reasonReference": {"reference": reason}}
    if plan is not None:
        task["basedOn"] = [{"reference": plan}]
    return task


def transaction(*entries: dict[str, Any]) -> dict[str, Any]:
    """POST entries; a resource's `fullUrl` (urn:uuid) is its `_url` when it has one."""
    return {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": r.pop("_url", f"urn:uuid:{uuid.uuid4()}"), "resource": r,
         "request": {"method": "POST", "url": r["resourceType"]}} for r in entries]}


def messages_about(client: httpx.Client, patient: str) -> list[dict[str, Any]]:
    bundle = client.get("/Communication", params={"subject": f"Patient/{patient}",
                                                  "category": f"{IG}/CodeSystem/coord-cs-message-topic|rcp"}).json()
    return [e["resource"] for e in bundle.get("entry", [])]


def test_a_decision_with_its_follow_up_tasks_joins_the_care_plan_and_tells_the_team(held, as_user, admin):
    gp = as_user("gp")
    doc = {**decision(A, patient_encounter(held, A)), "_url": f"urn:uuid:{uuid.uuid4()}"}
    url = doc["_url"]
    r = gp.post("", json=transaction(doc, follow_up(A, url, f"CarePlan/plan-{A}"),
                                     follow_up(A, url, f"CarePlan/plan-{A}", owner="kine")))
    assert r.status_code == 200, r.text
    doc_key, *tasks = [e["response"]["location"].split("/_history")[0] for e in r.json()["entry"]]
    plan = gp.get(f"/CarePlan/plan-{A}").json()
    assert [a["reference"]["reference"] for a in plan["activity"]] == tasks

    [message] = messages_about(gp, A)
    assert message["about"] == [{"reference": doc_key}]
    assert message["recipient"] == [{"reference": f"CareTeam/team-{A}"}]
    assert message["sender"] == {"reference": f"PractitionerRole/gp-{TAG}"}
    assert message["encounter"] == {"reference": patient_encounter(held, A)}
    validate(admin, message, "coord-message")
    # the nurse, in the team, reads it; the decision corrected later tells nobody again
    assert [m["id"] for m in messages_about(as_user("nurse"), A)] == [message["id"]]
    current = gp.get(f"/{doc_key}").json()
    put(gp, {**current, "description": "titration du bêtabloquant, avis cardiologique sous quinze jours"})
    assert len(messages_about(gp, A)) == 1
    # a later follow-up task joins the plan too, once
    later = post(gp, follow_up(A, doc_key, f"CarePlan/plan-{A}"))
    put(gp, {**later, "status": "accepted"})
    plan = gp.get(f"/CarePlan/plan-{A}").json()
    assert [a["reference"]["reference"] for a in plan["activity"]] == [*tasks, f"Task/{later['id']}"]


def test_a_decision_by_a_practitioner_is_announced_by_the_rcps_structure(held, as_user):
    """coord-message sends from a role or a structure: a decision whose author is the Practitioner
    alone is announced by the structure that held the RCP."""
    gp = as_user("gp")
    doc = decision(B, patient_encounter(held, B))
    doc["author"] = [{"reference": f"Practitioner/gp-{TAG}"}]
    written = post(gp, doc)
    [message] = [m for m in messages_about(gp, B) if m["about"] == [{"reference": f"DocumentReference/{written['id']}"}]]
    assert message["sender"] == {"reference": f"Organization/{MSP}"}
    assert message["recipient"] == [{"reference": f"CareTeam/team-{B}"}]


@pytest.mark.parametrize("case", ["plain encounter", "another patient", "the meeting", "no encounter"])
def test_a_decision_must_name_its_patients_rcp_encounter(case, held, as_user, admin, database):
    gp = as_user("gp")
    if case == "plain encounter":
        plain = post(admin, {"resourceType": "Encounter", "status": "finished",
                             "class": ENCOUNTER_CLASS,
                             "subject": {"reference": f"Patient/{A}"}})
        doc, where = decision(A, f"Encounter/{plain['id']}"), "DocumentReference.context.encounter"
    elif case == "another patient":
        doc, where = decision(B, patient_encounter(held, A)), "DocumentReference.subject"
    elif case == "the meeting":
        [meeting_] = [e for e in held["encounters"] if "subject" not in e]
        doc, where = decision(A, f"Encounter/{meeting_['id']}"), "DocumentReference.context.encounter"
    else:
        doc, where = decision(A, "x"), "DocumentReference.context.encounter"
        del doc["meta"], doc["context"]
    before = dump(database)
    r = gp.post("", json=transaction(doc))
    assert r.status_code == 422, r.text
    assert r.json()["issue"][0]["expression"][0].endswith(where), r.text
    assert dump(database) == before, dump_difference(before, dump(database))


@pytest.mark.parametrize("case", ["another patient", "no care plan", "another patient's plan", "draft decision"])
def test_a_follow_up_task_must_follow_its_decision(case, held, as_user, database):
    gp = as_user("gp")
    doc = decision(B, patient_encounter(held, B))
    if case == "draft decision":
        doc["docStatus"] = "preliminary"
    doc = post(gp, doc)
    key = f"DocumentReference/{doc['id']}"
    task, where = {
        "another patient": (follow_up(A, key, f"CarePlan/plan-{A}"), "Task.for"),
        "no care plan": (follow_up(B, key), "Task.basedOn"),
        "another patient's plan": (follow_up(B, key, f"CarePlan/plan-{A}"), "Task.basedOn[0]"),
        "draft decision": (follow_up(B, key, f"CarePlan/plan-{B}"), "Task.reasonReference"),
    }[case]
    before = dump(database)
    r = gp.post("/Task", json=task)
    assert r.status_code == 422, r.text
    assert r.json()["issue"][0]["expression"] == [where], r.text
    assert dump(database) == before, dump_difference(before, dump(database))


def test_who_is_outside_the_team_cannot_write_a_decision(held, as_user, database):
    """The physio is not in B's team. A decision about B written in the GP's name is out of their
    reach (403); one naming themselves as author is theirs to write, but B's RCP encounter is
    hidden from them, so it is refused exactly as for an encounter that does not exist. Nothing
    is written, not even the message the rule would have added."""
    kine = as_user("kine")
    before = dump(database)
    r = kine.post("/DocumentReference", json=decision(B, patient_encounter(held, B)))
    assert r.status_code == 403, r.text
    hidden = kine.post("/DocumentReference", json=decision(B, patient_encounter(held, B), author="kine"))
    absent = kine.post("/DocumentReference", json=decision(B, "Encounter/nothing", author="kine"))
    assert hidden.status_code == absent.status_code == 422, hidden.text
    [issue], [expected] = hidden.json()["issue"], absent.json()["issue"]
    assert issue["expression"] == expected["expression"] == ["DocumentReference.context.encounter"]
    assert issue["diagnostics"].replace(patient_encounter(held, B), "X") == \
        expected["diagnostics"].replace("Encounter/nothing", "X")
    assert dump(database) == before, dump_difference(before, dump(database))


def test_the_coordinator_queries(cpts, admin, as_user, held):
    """Upcoming RCPs of a structure, patients awaiting discussion there, decisions without
    follow-up; in a structure of its own (a third MSP) so that other tests' RCPs stay out."""
    gp = as_user("gp")
    structure, d = f"msp3-{TAG}", f"patd-{TAG}"
    put(admin, {"resourceType": "Organization", "id": structure, "name": structure})
    put(admin, {"resourceType": "Patient", "id": d, "name": [{"family": d}]})
    put(admin, {"resourceType": "CareTeam", "id": f"team-{d}", "status": "active", "subject": {"reference": f"Patient/{d}"},
                "participant": [{"member": {"reference": f"PractitionerRole/gp-{TAG}"}}]})
    now = datetime.now(UTC)
    hold(gp, post(gp, meeting([d], start=now - timedelta(days=2), structure=structure)))
    upcoming = post(gp, meeting([C], start=now + timedelta(days=7), structure=structure))
    post(gp, meeting([B], start=now + timedelta(days=8)))  # another structure's
    found = gp.get("/Appointment", params={
        "service-type": RCP_TOKEN, "status": "booked,proposed,pending", "structure": f"Organization/{structure}",
        "date": f"ge{now.strftime('%Y-%m-%dT%H:%M:%SZ')}", "_sort": "date"}).json()
    assert [e["resource"]["id"] for e in found["entry"]] == [upcoming["id"]]

    awaiting = gp.get("/Appointment", params={"service-type": RCP_TOKEN, "status": "booked,proposed,pending",
                                              "structure": f"Organization/{structure}",
                                              "_include": "Appointment:patient"}).json()
    patients = {e["resource"]["id"] for e in awaiting["entry"] if e["resource"]["resourceType"] == "Patient"}
    assert patients == {C}

    followed = post(gp, decision(A, patient_encounter(held, A)))
    post(gp, follow_up(A, f"DocumentReference/{followed['id']}", f"CarePlan/plan-{A}"))
    bare = post(gp, decision(B, patient_encounter(held, B)))
    discussed = gp.get("/Encounter", params={
        "appointment": f"Appointment/{held['appointment']['id']}", "_revinclude": "Encounter:part-of",
        "_revinclude:iterate": "DocumentReference:encounter"}).json()
    kinds = {(e["resource"]["resourceType"], e["resource"]["id"]) for e in discussed["entry"]}
    assert {("Encounter", e["id"]) for e in held["encounters"]} <= kinds
    assert {("DocumentReference", followed["id"]), ("DocumentReference", bare["id"])} <= kinds
    searched = gp.get("/DocumentReference", params={"type": DECISION_TOKEN, "status": "current",
                                                     "_revinclude": "Task:reason-reference"}).json()
    entries = [e["resource"] for e in searched["entry"]]
    followed_up = {t["reasonReference"]["reference"] for t in entries if t["resourceType"] == "Task"}
    without = {d["id"] for d in entries if d["resourceType"] == "DocumentReference"
               and f"DocumentReference/{d['id']}" not in followed_up}
    assert bare["id"] in without and followed["id"] not in without
    assert f"DocumentReference/{followed['id']}" in followed_up
