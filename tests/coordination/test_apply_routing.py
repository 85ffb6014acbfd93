"""`PlanDefinition/$apply` routes each action to the care team member qualified for it, through
HTTP on a server of its own: only active CareTeams within their period and memberships current
now; profession and specialty matched exactly; an action nobody can take left as a draft without
owner, with a warning; every preview valid against the guide's profiles, its author the
`practitioner` parameter or the caller; a second application of a protocol the patient follows
refused (409, nothing written) unless `mode=new`, also when two applies race."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from fhir_server.config import Settings
from fhir_server.security import local_issuer
from tests.bundle.support import dump, dump_difference, mongo
from tests.conftest import start_server

G15 = "https://mos.esante.gouv.fr/NOS/TRE_G15-ProfessionSante/FHIR/TRE-G15-ProfessionSante"
R38 = "https://mos.esante.gouv.fr/NOS/TRE_R38-SpecialiteOrdinale/FHIR/TRE-R38-SpecialiteOrdinale"
ROLE = "https://fhir-server.dev/ig/coordination/CodeSystem/coord-cs-participant-role"
GUIDE = "https://fhir-server.dev/ig/coordination/StructureDefinition"
PROFESSIONS = {"gp": "10", "specialist": "10", "nurse": "60", "physiotherapist": "70", "pharmacist": "21"}
CARDIOLOGY, GENERAL, PNEUMOLOGY = "SM04", "SM54", "SM40"


@pytest.fixture(scope="module")
def apply_server(tmp_path_factory, r4_examples):
    running = start_server(tmp_path_factory.mktemp("apply"), extra_env={"FHIR_AUDIT": "false"})
    yield running
    running.stop()


@pytest.fixture(scope="module")
def http(apply_server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=apply_server.base_url, timeout=120,
                      headers={"Accept": "application/fhir+json"}) as client:
        yield client


@pytest.fixture(scope="module")
def database(apply_server):
    client = mongo(apply_server)
    yield client
    client.close()


def bearer(server, user: str) -> dict[str, str]:
    token, _ = local_issuer.issue(Settings(data_dir=server.data_dir), user, "user/*.cruds")
    return {"Authorization": f"Bearer {token}"}


def put(http: httpx.Client, resource: dict[str, Any]) -> None:
    r = http.put(f"/{resource['resourceType']}/{resource['id']}", json=resource)
    assert r.status_code in (200, 201), r.text


def role(kind: str) -> dict[str, Any]:
    """What a participant role (or a PractitionerRole's code) says: coordination role and profession."""
    return {"coding": [{"system": ROLE, "code": kind}, {"system": G15, "code": PROFESSIONS[kind]}]}


def practitioner_role(id_: str, kind: str, specialty: str | None = None, **more: Any) -> dict[str, Any]:
    out = {"resourceType": "PractitionerRole", "id": id_, "active": True, "practitioner": {"reference": f"Practitioner/{id_}"},
           "code": [{"coding": [{"system": G15, "code": PROFESSIONS[kind]}]}, {"coding": [{"system": ROLE, "code": kind}]}],
           **more}
    if specialty:
        out["specialty"] = [{"coding": [{"system": R38, "code": specialty}]}]
    return out


def member(ref: str, kind: str, **period: str) -> dict[str, Any]:
    out = {"role": [role(kind)], "member": {"reference": ref}}
    if period:
        out["period"] = period
    return out


def action(title: str, kind: str, specialty: str | None = None) -> dict[str, Any]:
    wanted = role(kind)
    if specialty:
        wanted["coding"].append({"system": R38, "code": specialty})
    return {"title": title, "participant": [{"type": "practitioner", "role": wanted}],
            "timingDuration": {"value": 30, "unit": "d", "system": "http://unitsofmeasure.org", "code": "d"}}


@pytest.fixture
def world(http) -> dict[str, str]:
    """A patient whose active team has a GP, a pneumologist, a nurse whose membership ended, a
    nurse whose PractitionerRole is no longer active, a current nurse, a physiotherapist who joins in 2999, and the structure (its pharmacist in a
    team that is inactive, another in a team whose period ended); a protocol asking for each."""
    u = uuid.uuid4().hex[:8]
    ids = {k: f"{k}-{u}" for k in ("pat", "org", "gp", "pneumo", "cardio", "old-nurse", "retired", "nurse", "physio",
                                    "pharma", "pharma2", "team", "gone-team", "past-team", "plan")}
    put(http, {"resourceType": "Organization", "id": ids["org"], "name": "MSP des Tilleuls"})
    put(http, {"resourceType": "Patient", "id": ids["pat"], "name": [{"family": "Routage"}]})
    for key, kind, specialty in (("gp", "gp", GENERAL), ("pneumo", "specialist", PNEUMOLOGY),
                                 ("cardio", "specialist", CARDIOLOGY), ("old-nurse", "nurse", None),
                                 ("retired", "nurse", None), ("nurse", "nurse", None), ("physio", "physiotherapist", None),
                                 ("pharma", "pharmacist", None), ("pharma2", "pharmacist", None)):
        put(http, {"resourceType": "Practitioner", "id": ids[key]})
        put(http, practitioner_role(ids[key], kind, specialty, organization={"reference": f"Organization/{ids['org']}"}))
    patient, org = f"Patient/{ids['pat']}", {"reference": f"Organization/{ids['org']}"}
    put(http, {**practitioner_role(ids["retired"], "nurse"), "active": False})
    put(http, team(ids["team"], patient, org, [
        member(f"PractitionerRole/{ids['old-nurse']}", "nurse", start="2019-01-01", end="2020-06-30"),
        member(f"PractitionerRole/{ids['gp']}", "gp"),
        member(f"PractitionerRole/{ids['pneumo']}", "specialist"),
        member(f"PractitionerRole/{ids['retired']}", "nurse"),
        member(f"PractitionerRole/{ids['nurse']}", "nurse", start="2021-01-01"),
        member(f"PractitionerRole/{ids['physio']}", "physiotherapist", start="2999-01-01")]))
    put(http, {**team(ids["gone-team"], patient, org, [member(f"PractitionerRole/{ids['pharma']}", "pharmacist")]),
               "status": "inactive"})
    put(http, {**team(ids["past-team"], patient, org, [member(f"PractitionerRole/{ids['pharma2']}", "pharmacist")]),
               "period": {"start": "2018", "end": "2020"}})
    put(http, {"resourceType": "PlanDefinition", "id": ids["plan"], "url": f"http://example.org/{u}/ic", "version": "1",
               "name": "IC", "title": "Insuffisance cardiaque", "status": "active",
               "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/plan-definition-type",
                                    "code": "clinical-protocol"}]},
               "goal": [{"description": {"text": "Poids stable"}}],
               "action": [action("Pesée", "nurse"), action("Consultation", "gp"),
                          action("Avis cardiologique", "specialist", CARDIOLOGY),
                          action("Réadaptation", "physiotherapist"), action("Revue d'ordonnance", "pharmacist")]})
    return ids


def team(id_: str, patient: str, org: dict[str, str], participants: list[dict[str, Any]]) -> dict[str, Any]:
    return {"resourceType": "CareTeam", "id": id_, "meta": {"profile": [f"{GUIDE}/coord-careteam"]}, "status": "active",
            "subject": {"reference": patient}, "managingOrganization": [org], "participant": participants}


def preview(http: httpx.Client, world: dict[str, str], headers: dict[str, str] | None = None,
            **params: str) -> httpx.Response:
    return http.get(f"/PlanDefinition/{world['plan']}/$apply", params={"subject": f"Patient/{world['pat']}", **params},
                    headers=headers or {})


def owners(plan: dict[str, Any]) -> dict[str, str | None]:
    return {t["description"]: (t.get("owner") or {}).get("reference")
            for t in plan.get("contained", ()) if t["resourceType"] == "Task"}


def assert_valid(http: httpx.Client, plan: dict[str, Any]) -> None:
    """The preview, and each resource it contains, valid against the profile it declares."""
    r = http.post("/CarePlan/$validate", json=plan)
    assert r.status_code == 200, r.text
    errors = [i for i in r.json()["issue"] if i["severity"] in ("error", "fatal")]
    assert not errors, errors
    for inner in plan["contained"]:
        r = http.post(f"/{inner['resourceType']}/$validate", json={k: v for k, v in inner.items() if k != "id"})
        assert not [i for i in r.json()["issue"] if i["severity"] in ("error", "fatal")], (inner, r.text)


def test_only_current_members_of_active_teams_with_the_exact_role_take_actions(http, world):
    r = preview(http, world, practitioner=f"PractitionerRole/{world['gp']}")
    assert r.status_code == 200, r.text
    plan = r.json()
    assert owners(plan) == {
        "Pesée": f"PractitionerRole/{world['nurse']}",  # not the nurse whose membership ended, nor the retired one
        "Consultation": f"PractitionerRole/{world['gp']}",
        "Avis cardiologique": None,  # neither the GP nor the pneumologist: a médecin, not a cardiologist
        "Réadaptation": None,  # the physiotherapist joins in 2999
        "Revue d'ordonnance": None}  # pharmacists only in an inactive team and a team whose period ended
    assert plan["careTeam"] == [{"reference": f"CareTeam/{world['team']}"}]
    unassigned = [t for t in plan["contained"] if t["resourceType"] == "Task" and "owner" not in t]
    assert {t["status"] for t in unassigned} == {"draft"}
    assert f"{R38.rsplit('/', 1)[-1]}|{CARDIOLOGY}" in unassigned[0]["statusReason"]["text"]
    assert [n["text"] for n in plan["note"]] == [t["statusReason"]["text"] for t in unassigned]
    assert_valid(http, plan)


def test_the_qualified_member_gets_the_action_once_they_are_in_the_team(http, world):
    current = http.get(f"/CareTeam/{world['team']}").json()
    current["participant"].append(member(f"PractitionerRole/{world['cardio']}", "specialist"))
    current["participant"].append({"role": [{"text": "La structure"}], "member": {"reference": f"Organization/{world['org']}"}})
    put(http, current)
    plan = preview(http, world, practitioner=f"PractitionerRole/{world['gp']}").json()
    assert owners(plan)["Avis cardiologique"] == f"PractitionerRole/{world['cardio']}"
    # the structure is a member: its one physiotherapist's role (in force) takes the action; the
    # pharmacists of the structure are two, so the structure takes it as a whole
    assert owners(plan)["Réadaptation"] == f"PractitionerRole/{world['physio']}"
    assert owners(plan)["Revue d'ordonnance"] == f"Organization/{world['org']}"
    assert "note" not in plan
    assert_valid(http, plan)


def test_the_preview_is_authored_by_the_caller_or_the_practitioner_parameter(http, apply_server, world):
    gp_role = f"PractitionerRole/{world['gp']}"
    as_role = preview(http, world, bearer(apply_server, gp_role))
    as_person = preview(http, world, bearer(apply_server, f"Practitioner/{world['gp']}"))
    named = preview(http, world, practitioner=f"Practitioner/{world['gp']}")
    for r in (as_role, as_person, named):
        assert r.status_code == 200, r.text
        plan = r.json()
        assert plan["author"] == {"reference": gp_role}
        assert {t["requester"]["reference"] for t in plan["contained"] if t["resourceType"] == "Task"} == {gp_role}
        assert_valid(http, plan)
    anonymous = preview(http, world)
    assert anonymous.status_code == 400 and "practitioner" in anonymous.text, anonymous.text
    other = preview(http, world, bearer(apply_server, gp_role), practitioner=f"PractitionerRole/{world['nurse']}")
    assert other.status_code == 403, other.text
    unknown = preview(http, world, practitioner="PractitionerRole/nobody")
    assert unknown.status_code == 422 and "practitioner" in unknown.text, unknown.text


def test_a_patient_without_an_active_team_is_refused(http, world):
    current = http.get(f"/CareTeam/{world['team']}").json()
    put(http, {**current, "status": "inactive"})
    r = preview(http, world, practitioner=f"PractitionerRole/{world['gp']}")
    assert r.status_code == 422 and "CareTeam" in r.text, r.text


def store(http: httpx.Client, world: dict[str, str], patient: str | None = None, **extra: str) -> httpx.Response:
    parameters = [{"name": "subject", "valueReference": {"reference": f"Patient/{patient or world['pat']}"}},
                  {"name": "practitioner", "valueReference": {"reference": f"PractitionerRole/{world['gp']}"}},
                  {"name": "store", "valueBoolean": True}]
    parameters += [{"name": k, "valueCode": v} for k, v in extra.items()]
    return http.post(f"/PlanDefinition/{world['plan']}/$apply", json={"resourceType": "Parameters", "parameter": parameters})


def test_applying_a_protocol_the_patient_follows_is_409_unless_mode_new(http, database, world):
    first = store(http, world)
    assert first.status_code == 201, first.text
    existing = f"CarePlan/{first.json()['id']}"
    tasks = http.get("/Task", params={"based-on": existing}).json()
    assert tasks["total"] == 5
    assert sorted(e["resource"]["status"] for e in tasks["entry"]) == ["draft"] * 3 + ["requested"] * 2
    before = dump(database)
    for again in (store(http, world), preview(http, world, practitioner=f"PractitionerRole/{world['gp']}")):
        assert again.status_code == 409, again.text
        assert existing in again.text and "mode=new" in again.text
    assert store(http, world, mode="later").status_code == 400
    writing_get = http.get(f"/PlanDefinition/{world['plan']}/$apply", params={
        "subject": f"Patient/{world['pat']}", "practitioner": f"PractitionerRole/{world['gp']}", "store": "true",
        "mode": "new"})
    assert writing_get.status_code == 400 and "POST" in writing_get.text
    assert dump(database) == before, dump_difference(before, dump(database))
    second = store(http, world, mode="new")
    assert second.status_code == 201, second.text
    plans = http.get("/CarePlan", params={"subject": f"Patient/{world['pat']}", "status": "active"}).json()
    assert plans["total"] == 2
    # a plan no longer in force does not count
    put(http, {**http.get(existing).json(), "status": "completed"})
    put(http, {**second.json(), "status": "revoked"})
    assert store(http, world).status_code == 201


def test_the_warnings_of_a_stored_plan(http, world):
    r = http.post(f"/PlanDefinition/{world['plan']}/$apply", headers={"Prefer": "return=OperationOutcome"},
                  json={"resourceType": "Parameters", "parameter": [
                      {"name": "subject", "valueReference": {"reference": f"Patient/{world['pat']}"}},
                      {"name": "practitioner", "valueReference": {"reference": f"PractitionerRole/{world['gp']}"}},
                      {"name": "store", "valueBoolean": True}]})
    assert r.status_code == 201, r.text
    warnings = [i for i in r.json()["issue"] if i["severity"] == "warning"]
    assert len(warnings) == 3 and all("Unassigned" in w["diagnostics"] for w in warnings)


def race(apply_server, world: dict[str, str], patient: str) -> list[int]:
    """Two store=true applies for `patient`, started together on two connections."""
    barrier = threading.Barrier(2)
    answers: list[int] = []

    def run() -> None:
        with httpx.Client(base_url=apply_server.base_url, timeout=120) as own:
            barrier.wait()
            answers.append(store(own, world, patient).status_code)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return answers


def test_two_concurrent_applies_make_one_plan(http, apply_server, world):
    for round_ in range(3):
        patient = f"{world['pat']}-r{round_}"
        put(http, {"resourceType": "Patient", "id": patient})
        put(http, team(f"{world['team']}-r{round_}", f"Patient/{patient}", {"reference": f"Organization/{world['org']}"},
                       [member(f"PractitionerRole/{world['gp']}", "gp")]))
        answers = race(apply_server, world, patient)
        assert sorted(answers) == [201, 409], answers
        assert http.get("/CarePlan", params={"subject": f"Patient/{patient}"}).json()["total"] == 1


def test_what_the_caller_cannot_see_is_absent(http, apply_server, world):
    # the pharmacist's only team is inactive: the patient is outside their circle, as if absent
    outside = preview(http, world, bearer(apply_server, f"PractitionerRole/{world['pharma']}"))
    assert outside.status_code == 404 and f"Patient/{world['pat']}" in outside.text, outside.text
    # a token that may not read CareTeams finds no team to route to
    token, _ = local_issuer.issue(Settings(data_dir=apply_server.data_dir), f"PractitionerRole/{world['gp']}",
                                  "user/PlanDefinition.rs user/Patient.rs user/PractitionerRole.rs")
    blind = preview(http, world, {"Authorization": f"Bearer {token}"})
    assert blind.status_code == 422 and "no active CareTeam" in blind.text, blind.text


def test_a_professional_applies_and_stores_for_their_patient(http, apply_server, world):
    r = http.post(f"/PlanDefinition/{world['plan']}/$apply", headers=bearer(apply_server, f"Practitioner/{world['gp']}"),
                  json={"resourceType": "Parameters", "parameter": [
                      {"name": "subject", "valueReference": {"reference": f"Patient/{world['pat']}"}},
                      {"name": "store", "valueBoolean": True}]})
    assert r.status_code == 201, r.text
    assert r.json()["author"] == {"reference": f"PractitionerRole/{world['gp']}"}
