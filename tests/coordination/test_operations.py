"""PlanDefinition/$apply and Patient/$everything through HTTP."""

from __future__ import annotations

import uuid

import pytest

G15 = "https://mos.esante.gouv.fr/NOS/TRE_G15-ProfessionSante/FHIR/TRE-G15-ProfessionSante"


def put(client, resource):
    r = client.put(f"/{resource['resourceType']}/{resource['id']}", json=resource)
    assert r.status_code in (200, 201), r.text
    return r.json()


@pytest.fixture
def world(client):
    u = uuid.uuid4().hex[:10]
    ids = {k: f"{k}-{u}" for k in ("pat", "gp", "nurse", "team", "plan", "org", "med", "obs")}
    put(client, {"resourceType": "Organization", "id": ids["org"], "name": "MSP"})
    put(client, {"resourceType": "Patient", "id": ids["pat"], "managingOrganization": {"reference": f"Organization/{ids['org']}"}})
    for role in ("gp", "nurse"):
        put(client, {"resourceType": "PractitionerRole", "id": ids[role]})
    put(client, {"resourceType": "CareTeam", "id": ids["team"], "status": "active",
                 "subject": {"reference": f"Patient/{ids['pat']}"},
                 "participant": [{"role": [{"coding": [{"system": G15, "code": code}]}],
                                  "member": {"reference": f"PractitionerRole/{ids[role]}"}}
                                 for role, code in (("gp", "10"), ("nurse", "60"))]})
    put(client, {"resourceType": "PlanDefinition", "id": ids["plan"], "url": f"http://example.org/{u}/ic",
                 "version": "2", "status": "active", "title": "Insuffisance cardiaque",
                 "goal": [{"description": {"text": "Poids stable"}}],
                 "action": [{"title": "Pesée", "participant": [{"type": "practitioner", "role": {"coding": [{"system": G15, "code": "60"}]}}],
                             "timingDuration": {"value": 7, "unit": "d", "system": "http://unitsofmeasure.org", "code": "d"},
                             "action": [{"title": "Alerte si +2 kg", "participant": [{"type": "practitioner", "role": {"coding": [{"system": G15, "code": "10"}]}}]}]},
                            {"title": "Consultation", "participant": [{"type": "practitioner", "role": {"coding": [{"system": G15, "code": "10"}]}}]},
                            {"title": "Kiné", "participant": [{"type": "practitioner", "role": {"coding": [{"system": G15, "code": "70"}]}}]}]})
    return ids


def test_apply_returns_the_care_plan_with_tasks_and_goals(client, world):
    r = client.get(f"/PlanDefinition/{world['plan']}/$apply",
                   params={"subject": f"Patient/{world['pat']}", "practitioner": f"PractitionerRole/{world['gp']}"})
    assert r.status_code == 200, r.text
    plan = r.json()
    assert plan["resourceType"] == "CarePlan" and plan["subject"]["reference"] == f"Patient/{world['pat']}"
    assert plan["instantiatesCanonical"] == [f"http://example.org/{world['plan'].split('-', 1)[1]}/ic|2"]
    assert plan["careTeam"] == [{"reference": f"CareTeam/{world['team']}"}]
    tasks = [c for c in plan["contained"] if c["resourceType"] == "Task"]
    goals = [c for c in plan["contained"] if c["resourceType"] == "Goal"]
    assert [t["description"] for t in tasks] == ["Pesée", "Alerte si +2 kg", "Consultation", "Kiné"]
    owners = [t.get("owner", {}).get("reference") for t in tasks]
    assert owners == [f"PractitionerRole/{world['nurse']}", f"PractitionerRole/{world['gp']}",
                      f"PractitionerRole/{world['gp']}", None]  # no physio: unassigned, never the team
    assert tasks[3]["status"] == "draft" and "Unassigned" in tasks[3]["statusReason"]["text"]
    assert plan["note"] == [{"text": tasks[3]["statusReason"]["text"]}]
    assert tasks[0]["restriction"]["period"]["end"] > tasks[0]["restriction"]["period"]["start"]
    assert all(t["requester"] == {"reference": f"PractitionerRole/{world['gp']}"} for t in tasks)
    assert len(goals) == 1 and plan["goal"] == [{"reference": f"#{goals[0]['id']}"}]
    assert [a["reference"]["reference"] for a in plan["activity"]] == [f"#{t['id']}" for t in tasks]
    # nothing was stored
    assert client.get("/CarePlan", params={"subject": f"Patient/{world['pat']}"}).json()["total"] == 0


def test_apply_with_store_creates_everything_in_one_transaction(client, world):
    r = client.post(f"/PlanDefinition/{world['plan']}/$apply",
                    json={"resourceType": "Parameters", "parameter": [
                        {"name": "subject", "valueString": f"Patient/{world['pat']}"},
                        {"name": "practitioner", "valueString": f"PractitionerRole/{world['gp']}"},
                        {"name": "store", "valueBoolean": True}]})
    assert r.status_code == 201, r.text
    plan = r.json()
    assert r.headers["location"].endswith(f"/CarePlan/{plan['id']}/_history/1")
    tasks = client.get("/Task", params={"based-on": f"CarePlan/{plan['id']}"}).json()
    assert tasks["total"] == 4
    refs = sorted(a["reference"]["reference"] for a in plan["activity"])
    assert refs == sorted(f"Task/{e['resource']['id']}" for e in tasks["entry"])
    goal = client.get(plan["goal"][0]["reference"].join(["/", ""]))
    assert goal.status_code == 200 and goal.json()["resourceType"] == "Goal"


def test_apply_errors(client, world):
    assert client.get(f"/PlanDefinition/{world['plan']}/$apply").status_code == 400
    assert client.get(f"/PlanDefinition/{world['plan']}/$apply", params={"subject": "Group/x"}).status_code == 400
    assert client.get(f"/PlanDefinition/{world['plan']}/$apply", params={"subject": "Patient/nobody"}).status_code == 404
    assert client.get("/PlanDefinition/nothing/$apply", params={"subject": f"Patient/{world['pat']}"}).status_code == 404
    assert client.get(f"/Patient/{world['pat']}/$apply").status_code == 404  # not an operation of Patient


def test_everything(client, world):
    obs = client.post("/Observation", json={"resourceType": "Observation", "status": "final", "code": {"text": "poids"},
                                            "subject": {"reference": f"Patient/{world['pat']}"},
                                            "effectiveDateTime": "2020-06-01",
                                            "performer": [{"reference": f"PractitionerRole/{world['nurse']}"}]}).json()
    someone_else = client.post("/Patient", json={"resourceType": "Patient"}).json()["id"]
    other = client.post("/Observation", json={"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                                              "subject": {"reference": f"Patient/{someone_else}"}}).json()
    r = client.get(f"/Patient/{world['pat']}/$everything")
    assert r.status_code == 200, r.text
    keys = {e["fullUrl"].split("/fhir/", 1)[1] for e in r.json()["entry"]}
    assert f"Patient/{world['pat']}" in keys and f"Observation/{obs['id']}" in keys
    assert f"CareTeam/{world['team']}" in keys
    assert f"Organization/{world['org']}" in keys  # referenced by the patient
    assert f"PractitionerRole/{world['nurse']}" in keys  # referenced by the observation
    assert f"Observation/{other['id']}" not in keys
    assert r.json()["total"] == len(keys)
    # start/end: the observation of 2020 is outside 2021; the care team (no date) stays
    keys_2021 = {e["fullUrl"].split("/fhir/", 1)[1] for e in
                 client.get(f"/Patient/{world['pat']}/$everything", params={"start": "2021-01-01"}).json()["entry"]}
    assert f"Observation/{obs['id']}" not in keys_2021 and f"CareTeam/{world['team']}" in keys_2021
    typed = client.get(f"/Patient/{world['pat']}/$everything", params={"_type": "Patient,Observation"}).json()
    assert {e["resource"]["resourceType"] for e in typed["entry"]} == {"Patient", "Observation"}


def test_everything_pages(client, world):
    for i in range(5):
        client.post("/Observation", json={"resourceType": "Observation", "status": "final", "code": {"text": str(i)},
                                          "subject": {"reference": f"Patient/{world['pat']}"}})
    first = client.get(f"/Patient/{world['pat']}/$everything", params={"_count": "3"}).json()
    seen, page = [], first
    while True:
        seen += [e["fullUrl"] for e in page["entry"]]
        nxt = [link["url"] for link in page["link"] if link["relation"] == "next"]
        if not nxt:
            break
        page = client.get(nxt[0]).json()
    assert len(seen) == len(set(seen)) == first["total"]


def test_everything_errors(client):
    assert client.get("/Patient/nobody/$everything").status_code == 404
    assert client.get("/Patient/x/$everything", params={"start": "not-a-date"}).status_code in (400, 404)
