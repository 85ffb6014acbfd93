"""The shared agenda through HTTP, on a server of this module's own: booking an Appointment makes
its Slot busy in the same transaction; a second booking of a held Slot is 409 naming the holder
and writes nothing (every collection compared); cancelling, noshow, entered-in-error, dropping
the Slot or deleting the Appointment frees it; a transaction creating a Slot and booking it
commits it busy; Slots end after they start and do not overlap on one Schedule; racing bookings
of one Slot and racing overlapping Slot creates (real threads) leave exactly one winner; free
slots are found per practitioner role, practitioner, specialty and structure over a period."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.bundle.support import dump, dump_difference, mongo
from tests.conftest import ROOT, die_with_pytest, start_server

SPECIALTY = "https://mos.esante.gouv.fr/NOS/TRE_R38-SpecialiteOrdinale/FHIR/TRE-R38-SpecialiteOrdinale"


@pytest.fixture(scope="module")
def agenda_server(tmp_path_factory, r4_examples):
    running = start_server(tmp_path_factory.mktemp("agenda"), extra_env={"FHIR_AUDIT": "false"})
    yield running
    running.stop()


@pytest.fixture(scope="module")
def http(agenda_server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=agenda_server.base_url, timeout=60,
                      headers={"Accept": "application/fhir+json"}) as client:
        yield client


@pytest.fixture(scope="module")
def database(agenda_server):
    client = mongo(agenda_server)
    yield client
    client.close()


def create(http: httpx.Client, resource: dict[str, Any]) -> str:
    r = http.post(f"/{resource['resourceType']}", json=resource)
    assert r.status_code == 201, r.text
    return f"{resource['resourceType']}/{r.json()['id']}"


def read(http: httpx.Client, key: str) -> dict[str, Any]:
    r = http.get(f"/{key}")
    assert r.status_code == 200, r.text
    return r.json()


@pytest.fixture(scope="module")
def people(http) -> dict[str, str]:
    org = create(http, {"resourceType": "Organization", "name": "MSP des Tilleuls"})
    gp = create(http, {"resourceType": "Practitioner", "name": [{"family": "Langdon"}]})
    role = create(http, {"resourceType": "PractitionerRole", "practitioner": {"reference": gp},
                         "organization": {"reference": org}})
    patient = create(http, {"resourceType": "Patient", "name": [{"family": "Martin"}]})
    return {"org": org, "gp": gp, "role": role, "patient": patient}


def schedule(http: httpx.Client, actor: str, specialty: str = "SM54") -> str:
    return create(http, {"resourceType": "Schedule", "active": True, "actor": [{"reference": actor}],
                         "specialty": [{"coding": [{"system": SPECIALTY, "code": specialty}]}]})


def slot_resource(schedule_key: str, start: str, end: str, status: str = "free",
                  specialty: str | None = None) -> dict[str, Any]:
    out = {"resourceType": "Slot", "schedule": {"reference": schedule_key}, "status": status,
           "start": start, "end": end}
    if specialty:
        out["specialty"] = [{"coding": [{"system": SPECIALTY, "code": specialty}]}]
    return out


def slot(http: httpx.Client, schedule_key: str, start: str, end: str, status: str = "free",
         specialty: str | None = None) -> str:
    return create(http, slot_resource(schedule_key, start, end, status, specialty))


def appointment(patient: str, slots: list[str], status: str = "booked") -> dict[str, Any]:
    return {"resourceType": "Appointment", "status": status, "slot": [{"reference": s} for s in slots],
            "start": "2026-12-07T09:00:00+01:00", "end": "2026-12-07T09:15:00+01:00",
            "participant": [{"actor": {"reference": patient}, "status": "accepted"}]}


def put_status(http: httpx.Client, key: str, status: str) -> dict[str, Any]:
    resource = {**read(http, key), "status": status}
    r = http.put(f"/{key}", json=resource)
    assert r.status_code == 200, r.text
    return r.json()


_day = iter(range(1, 10_000))


@pytest.fixture
def fresh(http, people) -> dict[str, str]:
    """A Schedule of its own and one free Slot on a day of its own."""
    sched = schedule(http, people["role"])
    day = f"2027-{1 + next(_day) % 12:02d}-{1 + next(_day) % 28:02d}"
    return {"schedule": sched, "day": day,
            "slot": slot(http, sched, f"{day}T09:00:00+01:00", f"{day}T09:15:00+01:00")}


def refused(http: httpx.Client, database, method: str, path: str, body: dict[str, Any], status: int) -> str:
    """The request is refused with `status` and an OperationOutcome, and nothing at all changed."""
    before = dump(database)
    r = http.request(method, path, json=body)
    assert r.status_code == status, (r.status_code, r.text[:1500])
    assert r.json()["resourceType"] == "OperationOutcome", r.text
    after = dump(database)
    assert before == after, dump_difference(before, after)
    return r.text


# -- booking and freeing ---------------------------------------------------------------------------

def test_booking_marks_the_slot_busy(http, people, fresh):
    booked = create(http, appointment(people["patient"], [fresh["slot"]]))
    held = read(http, fresh["slot"])
    assert held["status"] == "busy" and held["meta"]["versionId"] == "2", held
    assert read(http, booked)["status"] == "booked"


def test_a_second_booking_is_409_naming_the_holder_and_writes_nothing(http, database, people, fresh):
    first = create(http, appointment(people["patient"], [fresh["slot"]]))
    text = refused(http, database, "POST", "/Appointment", appointment(people["patient"], [fresh["slot"]]), 409)
    assert first in text and fresh["slot"] in text and "Appointment.slot[0]" in text, text
    # an update that starts naming the held slot is refused the same way
    other = slot(http, fresh["schedule"], f"{fresh['day']}T10:00:00+01:00", f"{fresh['day']}T10:15:00+01:00")
    second = create(http, appointment(people["patient"], [other]))
    moved = {**read(http, second), "slot": [{"reference": other}, {"reference": fresh["slot"]}]}
    text = refused(http, database, "PUT", f"/{second}", moved, 409)
    assert first in text and "Appointment.slot[1]" in text, text


@pytest.mark.parametrize("status", ["cancelled", "noshow", "entered-in-error"])
def test_releasing_frees_the_slot_for_the_next_booking(http, people, fresh, status):
    first = create(http, appointment(people["patient"], [fresh["slot"]]))
    put_status(http, first, status)
    assert read(http, fresh["slot"])["status"] == "free"
    create(http, appointment(people["patient"], [fresh["slot"]]))
    assert read(http, fresh["slot"])["status"] == "busy"


def test_pending_is_tentative_then_booked_is_busy_and_proposed_holds_nothing(http, people, fresh):
    create(http, appointment(people["patient"], [fresh["slot"]], status="proposed"))
    assert read(http, fresh["slot"])["status"] == "free"
    pending = create(http, appointment(people["patient"], [fresh["slot"]], status="pending"))
    assert read(http, fresh["slot"])["status"] == "busy-tentative"
    put_status(http, pending, "booked")
    assert read(http, fresh["slot"])["status"] == "busy"
    put_status(http, pending, "fulfilled")
    assert read(http, fresh["slot"])["status"] == "busy"  # a held appointment keeps the time it used


def test_a_slot_no_longer_named_is_freed_and_the_new_one_taken(http, people, fresh):
    later = slot(http, fresh["schedule"], f"{fresh['day']}T11:00:00+01:00", f"{fresh['day']}T11:15:00+01:00")
    booked = create(http, appointment(people["patient"], [fresh["slot"]]))
    moved = {**read(http, booked), "slot": [{"reference": later}]}
    assert http.put(f"/{booked}", json=moved).status_code == 200
    assert read(http, fresh["slot"])["status"] == "free"
    assert read(http, later)["status"] == "busy"


def test_a_patch_cancelling_frees_the_slot(http, people, fresh):
    booked = create(http, appointment(people["patient"], [fresh["slot"]]))
    r = http.patch(f"/{booked}", content='[{"op": "replace", "path": "/status", "value": "cancelled"}]',
                   headers={"Content-Type": "application/json-patch+json"})
    assert r.status_code == 200, r.text
    assert read(http, fresh["slot"])["status"] == "free"


def test_deleting_a_booked_appointment_frees_its_slot(http, people, fresh):
    booked = create(http, appointment(people["patient"], [fresh["slot"]]))
    assert http.delete(f"/{booked}").status_code in (200, 204)
    assert read(http, fresh["slot"])["status"] == "free"


def test_a_held_slot_cannot_be_freed_by_hand(http, database, people, fresh):
    booked = create(http, appointment(people["patient"], [fresh["slot"]]))
    for status in ("free", "busy-unavailable", "entered-in-error"):
        text = refused(http, database, "PUT", f"/{fresh['slot']}", {**read(http, fresh["slot"]), "status": status}, 409)
        assert booked in text and "Slot.status" in text, text


@pytest.mark.parametrize("status", ["busy-unavailable", "entered-in-error", "busy"])
def test_a_blocked_slot_cannot_be_booked(http, database, people, fresh, status):
    blocked = slot(http, fresh["schedule"], f"{fresh['day']}T14:00:00+01:00", f"{fresh['day']}T14:15:00+01:00", status)
    text = refused(http, database, "POST", "/Appointment", appointment(people["patient"], [blocked]), 409)
    assert blocked in text and "cannot be booked" in text, text


def test_booking_a_slot_that_does_not_exist_is_422(http, database, people):
    text = refused(http, database, "POST", "/Appointment", appointment(people["patient"], ["Slot/nowhere"]), 422)
    assert "Slot/nowhere" in text


# -- what the caller may see -----------------------------------------------------------------------

def token(server, user: str, scope: str, *args: str) -> dict[str, str]:
    """A `fhir-server token` of the server's local issuer."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FHIR_AUTH_")}
    env["FHIR_DATA_DIR"] = str(server.data_dir)
    done = subprocess.run([sys.executable, "-m", "fhir_server", "token", "--user", user, "--scope", scope, *args],
                          env=env, cwd=ROOT, capture_output=True, text=True, timeout=60, preexec_fn=die_with_pytest)
    assert done.returncode == 0, done.stderr
    return {"Authorization": f"Bearer {done.stdout.strip()}"}


def patient_token(server, patient: str, scope: str) -> dict[str, str]:
    """A patient app's token."""
    return token(server, patient, scope, "--patient", patient.split("/", 1)[1])


def test_a_slot_out_of_reach_is_absent(agenda_server, http, database, people, fresh):
    other = schedule(http, people["role"])
    hidden = slot(http, other, f"{fresh['day']}T09:00:00+01:00", f"{fresh['day']}T09:15:00+01:00")
    headers = patient_token(agenda_server, people["patient"],
                            f"patient/Appointment.cruds patient/Slot.rus?schedule={fresh['schedule']}")
    answers = {}
    for name, key in (("hidden", hidden), ("absent", "Slot/nowhere")):
        before = dump(database)
        r = http.post("/Appointment", json=appointment(people["patient"], [key]), headers=headers)
        assert r.status_code == 422, r.text
        assert dump(database) == before
        answers[name] = r.json()["issue"][0]["diagnostics"].replace(key, "<slot>")
    assert answers["hidden"] == answers["absent"], answers
    assert read(http, hidden)["status"] == "free"
    r = http.post("/Appointment", json=appointment(people["patient"], [fresh["slot"]]), headers=headers)
    assert r.status_code == 201, r.text  # the slot within reach is booked by the app
    assert read(http, fresh["slot"])["status"] == "busy"


def test_a_holder_out_of_reach_is_not_named(agenda_server, http, people, fresh):
    first = create(http, appointment(people["patient"], [fresh["slot"]]))
    someone = create(http, {"resourceType": "Patient", "name": [{"family": "Autre"}]})
    headers = patient_token(agenda_server, someone, "patient/Appointment.cruds patient/Slot.rus")
    r = http.post("/Appointment", json=appointment(someone, [fresh["slot"]]), headers=headers)
    assert r.status_code == 409, r.text
    assert first not in r.text and "another appointment already holds" in r.text, r.text


# -- transactions ----------------------------------------------------------------------------------

def test_a_transaction_creating_a_slot_and_booking_it_commits_it_busy(http, people, fresh):
    slot_url, appointment_url = f"urn:uuid:{uuid.uuid4()}", f"urn:uuid:{uuid.uuid4()}"
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": slot_url, "request": {"method": "POST", "url": "Slot"},
         "resource": slot_resource(fresh["schedule"], f"{fresh['day']}T16:00:00+01:00",
                                   f"{fresh['day']}T16:30:00+01:00")},
        {"fullUrl": appointment_url, "request": {"method": "POST", "url": "Appointment"},
         "resource": appointment(people["patient"], [slot_url])}]}
    r = http.post("", json=bundle)
    assert r.status_code == 200, r.text
    slot_key = "/".join(r.json()["entry"][0]["response"]["location"].split("/")[:2])
    stored = read(http, slot_key)
    assert stored["status"] == "busy" and stored["meta"]["versionId"] == "1", stored


def test_two_bookings_of_one_slot_in_a_transaction_are_refused_naming_the_entry(http, database, people, fresh):
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": f"urn:uuid:{uuid.uuid4()}", "request": {"method": "POST", "url": "Appointment"},
         "resource": appointment(people["patient"], [fresh["slot"]])} for _ in range(2)]}
    text = refused(http, database, "POST", "", bundle, 409)
    assert "entry 1" in text or "entry 0" in text, text
    assert read(http, fresh["slot"])["status"] == "free"


def test_a_transaction_cancelling_and_rebooking_moves_the_slot(http, people, fresh):
    first = create(http, appointment(people["patient"], [fresh["slot"]]))
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"request": {"method": "PUT", "url": first}, "resource": {**read(http, first), "status": "cancelled"}},
        {"fullUrl": f"urn:uuid:{uuid.uuid4()}", "request": {"method": "POST", "url": "Appointment"},
         "resource": appointment(people["patient"], [fresh["slot"]])}]}
    r = http.post("", json=bundle)
    assert r.status_code == 200, r.text
    assert read(http, fresh["slot"])["status"] == "busy"


# -- slots -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("end", ["T09:00:00+01:00", "T08:30:00+01:00", "T08:00:00Z"])
def test_a_slot_ending_before_it_starts_is_422(http, database, fresh, end):
    text = refused(http, database, "POST", "/Slot",
                   slot_resource(fresh["schedule"], f"{fresh['day']}T09:00:00+01:00", fresh["day"] + end), 422)
    assert '"Slot.end"' in text and "after it starts" in text, text


def test_overlapping_slots_on_one_schedule_are_refused(http, database, people, fresh):
    day, sched = fresh["day"], fresh["schedule"]
    text = refused(http, database, "POST", "/Slot",
                   slot_resource(sched, f"{day}T09:10:00+01:00", f"{day}T09:20:00+01:00"), 422)
    assert fresh["slot"] in text and "overlaps" in text, text
    refused(http, database, "POST", "/Slot", slot_resource(sched, f"{day}T07:00:00Z", f"{day}T09:00:00Z"), 422)
    # touching is not overlapping; another schedule is another agenda
    slot(http, sched, f"{day}T09:15:00+01:00", f"{day}T09:30:00+01:00")
    slot(http, schedule(http, people["gp"]), f"{day}T09:10:00+01:00", f"{day}T09:20:00+01:00")
    # a slot entered in error no longer counts
    put_status(http, fresh["slot"], "entered-in-error")
    slot(http, sched, f"{day}T09:05:00+01:00", f"{day}T09:10:00+01:00")


def test_moving_a_slot_onto_another_is_refused(http, database, fresh):
    later = slot(http, fresh["schedule"], f"{fresh['day']}T12:00:00+01:00", f"{fresh['day']}T12:15:00+01:00")
    moved = {**read(http, later), "start": f"{fresh['day']}T09:05:00+01:00"}
    text = refused(http, database, "PUT", f"/{later}", moved, 422)
    assert fresh["slot"] in text, text


def test_overlapping_slots_within_one_transaction_are_refused(http, database, fresh):
    day = fresh["day"]
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": f"urn:uuid:{uuid.uuid4()}", "request": {"method": "POST", "url": "Slot"},
         "resource": slot_resource(fresh["schedule"], f"{day}T15:00:00+01:00", f"{day}T15:30:00+01:00")}
        for _ in range(2)]}
    refused(http, database, "POST", "", bundle, 422)


def test_a_transaction_loading_a_day_of_slots_is_checked_as_a_whole(http, database, people):
    sched = schedule(http, people["role"])

    def entries(count: int) -> list[dict[str, Any]]:
        out = []
        for i in range(count):
            start = f"2028-03-01T{i // 4:02d}:{i % 4 * 15:02d}:00Z"
            end = f"2028-03-01T{(i + 1) // 4:02d}:{(i + 1) % 4 * 15:02d}:00Z" if i < 95 else "2028-03-02T00:00:00Z"
            out.append({"fullUrl": f"urn:uuid:{uuid.uuid4()}", "request": {"method": "POST", "url": "Slot"},
                        "resource": slot_resource(sched, start, end)})
        return out

    clash = entries(96)
    clash.insert(60, {**clash[40], "fullUrl": f"urn:uuid:{uuid.uuid4()}"})  # the same quarter of an hour twice
    text = refused(http, database, "POST", "", {"resourceType": "Bundle", "type": "transaction", "entry": clash}, 422)
    assert "entry 40" in text or "entry 60" in text, text
    r = http.post("", json={"resourceType": "Bundle", "type": "transaction", "entry": entries(96)})
    assert r.status_code == 200, r.text[:500]
    r = http.get("/Slot", params={"schedule": sched, "_summary": "count"})
    assert r.json()["total"] == 96


# -- races -----------------------------------------------------------------------------------------

def race(base_url: str, requests: list[tuple[str, str, dict[str, Any]]]) -> list[httpx.Response]:
    """Send the requests at once, one thread each, released together."""
    barrier = threading.Barrier(len(requests))
    answers: list[httpx.Response | None] = [None] * len(requests)

    def send(i: int) -> None:
        method, path, body = requests[i]
        with httpx.Client(base_url=base_url, timeout=120, headers={"Accept": "application/fhir+json"}) as c:
            barrier.wait()
            answers[i] = c.request(method, path, json=body)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(requests))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return [a for a in answers if a is not None]


def test_racing_bookings_of_one_slot_leave_one_winner(agenda_server, http, people, fresh):
    answers = race(agenda_server.base_url,
                   [("POST", "/Appointment", appointment(people["patient"], [fresh["slot"]])) for _ in range(6)])
    codes = sorted(a.status_code for a in answers)
    assert codes == [201] + [409] * 5, [a.text[:300] for a in answers]
    winner = next(a for a in answers if a.status_code == 201).json()["id"]
    assert all(f"Appointment/{winner}" in a.text for a in answers if a.status_code == 409)
    found = http.get("/Appointment", params={"slot": fresh["slot"]}).json()
    assert [e["resource"]["id"] for e in found.get("entry", ())] == [winner]
    assert read(http, fresh["slot"])["status"] == "busy"


def test_racing_bookings_of_overlapping_slot_sets_leave_one_whole_booking(agenda_server, http, people, fresh):
    day, sched = fresh["day"], fresh["schedule"]
    s2 = slot(http, sched, f"{day}T09:15:00+01:00", f"{day}T09:30:00+01:00")
    s3 = slot(http, sched, f"{day}T09:30:00+01:00", f"{day}T09:45:00+01:00")
    answers = race(agenda_server.base_url, [
        ("POST", "/Appointment", appointment(people["patient"], [fresh["slot"], s2])),
        ("POST", "/Appointment", appointment(people["patient"], [s2, s3]))])
    assert sorted(a.status_code for a in answers) == [201, 409], [a.text[:300] for a in answers]
    won = next(a for a in answers if a.status_code == 201).json()
    held = {ref["reference"] for ref in won["slot"]}
    for key in (fresh["slot"], s2, s3):
        assert read(http, key)["status"] == ("busy" if key in held else "free"), key  # the loser wrote nothing


def test_racing_overlapping_slot_creates_leave_one(agenda_server, http, fresh):
    day = fresh["day"]
    answers = race(agenda_server.base_url, [
        ("POST", "/Slot", slot_resource(fresh["schedule"], f"{day}T17:{m:02d}:00+01:00", f"{day}T18:00:00+01:00"))
        for m in range(0, 30, 5)])
    codes = sorted(a.status_code for a in answers)
    assert codes == [201] + [422] * 5, [a.text[:300] for a in answers]
    found = http.get("/Slot", params={"schedule": fresh["schedule"], "start": f"ge{day}T16:00:00+01:00"}).json()
    assert len(found.get("entry", ())) == 1, found


# -- free slots ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def week(http) -> dict[str, str]:
    """Two structures; a cardiologist (two roles, one per structure) and a GP; slots on 2027-06-07/08."""
    w = {"msp": create(http, {"resourceType": "Organization", "name": "MSP du Port"}),
         "cpts": create(http, {"resourceType": "Organization", "name": "CPTS du Littoral"}),
         "cardio": create(http, {"resourceType": "Practitioner", "name": [{"family": "Coeur"}]}),
         "gp": create(http, {"resourceType": "Practitioner", "name": [{"family": "Généraliste"}]})}
    w["cardio_msp"] = create(http, {"resourceType": "PractitionerRole", "practitioner": {"reference": w["cardio"]},
                                    "organization": {"reference": w["msp"]}})
    w["cardio_cpts"] = create(http, {"resourceType": "PractitionerRole", "practitioner": {"reference": w["cardio"]},
                                     "organization": {"reference": w["cpts"]}})
    w["gp_msp"] = create(http, {"resourceType": "PractitionerRole", "practitioner": {"reference": w["gp"]},
                                "organization": {"reference": w["msp"]}})
    s_cm = schedule(http, w["cardio_msp"], "SM04")
    s_cc = w["s_cc"] = schedule(http, w["cardio_cpts"], "SM04")
    s_gp = schedule(http, w["gp_msp"], "SM54")
    w["a"] = slot(http, s_cm, "2027-06-07T09:00:00+02:00", "2027-06-07T09:30:00+02:00")
    w["b"] = slot(http, s_cm, "2027-06-08T09:00:00+02:00", "2027-06-08T09:30:00+02:00")
    w["c"] = slot(http, s_cc, "2027-06-07T14:00:00+02:00", "2027-06-07T14:30:00+02:00")
    w["d"] = slot(http, s_gp, "2027-06-07T10:00:00+02:00", "2027-06-07T10:15:00+02:00", specialty="SM54")
    w["e"] = slot(http, s_gp, "2027-06-07T10:15:00+02:00", "2027-06-07T10:30:00+02:00", "busy-unavailable", "SM54")
    return w


def free(http: httpx.Client, params: dict[str, str]) -> set[str]:
    r = http.get("/Slot", params={"status": "free", "start": ["ge2027-06-07", "lt2027-06-09"], **params})
    assert r.status_code == 200, r.text
    bundle = r.json()
    assert not [e for e in bundle.get("entry", ()) if e["search"]["mode"] == "outcome"], bundle
    return {f"Slot/{e['resource']['id']}" for e in bundle.get("entry", ())}


def test_free_slots_of_a_practitioner_role_over_a_period(http, week):
    assert free(http, {"schedule.actor": week["cardio_msp"]}) == {week["a"], week["b"]}
    r = http.get("/Slot", params={"status": "free", "schedule.actor": week["cardio_msp"],
                                  "start": ["ge2027-06-07", "lt2027-06-08"]})
    assert {f"Slot/{e['resource']['id']}" for e in r.json().get("entry", ())} == {week["a"]}


def test_free_slots_of_a_practitioner_across_their_roles(http, week):
    found = free(http, {"schedule.actor:PractitionerRole.practitioner": week["cardio"]})
    assert found == {week["a"], week["b"], week["c"]}


def test_free_slots_of_a_specialty(http, week):
    assert free(http, {"specialty": f"{SPECIALTY}|SM54"}) >= {week["d"]}
    assert week["e"] not in free(http, {"specialty": f"{SPECIALTY}|SM54"})  # blocked, not free
    assert free(http, {"schedule.specialty": f"{SPECIALTY}|SM04"}) >= {week["a"], week["b"], week["c"]}


def test_free_slots_of_a_structure(http, week):
    found = free(http, {"schedule.actor:PractitionerRole.organization": week["msp"]})
    assert found == {week["a"], week["b"], week["d"]}
    assert free(http, {"schedule.actor:PractitionerRole.organization.name": "CPTS du Littoral"}) == {week["c"]}


# -- Slot/$find ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def finder(http, week) -> dict[str, str]:
    """Beside `week`: the cardiologist's own agenda (actor: the Practitioner), an inactive
    agenda of the MSP cardiologist role, and a HealthcareService of the MSP with its agenda."""
    f = dict(week)
    own = schedule(http, week["cardio"], "SM04")
    f["own"] = slot(http, own, "2027-06-08T16:00:00+02:00", "2027-06-08T16:30:00+02:00")
    inactive = create(http, {"resourceType": "Schedule", "active": False, "actor": [{"reference": week["cardio_msp"]}]})
    f["inactive"] = slot(http, inactive, "2027-06-07T11:00:00+02:00", "2027-06-07T11:30:00+02:00")
    service = create(http, {"resourceType": "HealthcareService", "providedBy": {"reference": week["msp"]}})
    f["service"] = slot(http, schedule(http, service, "SM54"), "2027-06-07T18:00:00+02:00",
                        "2027-06-07T18:20:00+02:00", specialty="SM54")
    f["late"] = slot(http, own, "2027-06-09T08:00:00+02:00", "2027-06-09T08:30:00+02:00")
    return f


def found(http: httpx.Client, params: dict[str, Any], status: int = 200) -> list[str]:
    r = http.get("/Slot/$find", params={"start": "2027-06-07", "end": "2027-06-08", **params})
    assert r.status_code == status, r.text
    bundle = r.json()
    if status != 200:
        return [bundle["issue"][0]["diagnostics"]]
    assert bundle["type"] == "searchset", bundle
    return [f"Slot/{e['resource']['id']}" for e in bundle.get("entry", ())]


def test_find_a_practitioners_slots_across_their_roles_and_own_agenda(http, finder):
    f = finder
    assert found(http, {"practitioner": f["cardio"]}) == [f["a"], f["c"], f["b"], f["own"]]  # by start
    assert found(http, {"practitioner": f["cardio"].split("/")[1], "organization": f["cpts"]}) == [f["c"]]


def test_find_a_structures_slots(http, finder):
    f = finder
    assert found(http, {"organization": f["msp"]}) == [f["a"], f["d"], f["service"], f["b"]]
    assert found(http, {"organization": f["msp"], "specialty": f"{SPECIALTY}|SM54"}) == [f["d"], f["service"]]


def test_find_by_specialty_reads_the_schedule_when_the_slot_says_none(http, finder):
    f = finder
    cardiology = found(http, {"specialty": "SM04"})
    assert [f["a"], f["c"], f["b"], f["own"]] == [s for s in cardiology if s in set(f.values())]


def test_find_paginates_and_refuses_bad_input(http, finder):
    f = finder
    r = http.get("/Slot/$find", params={"start": "2027-06-07", "end": "2027-06-08", "practitioner": f["cardio"],
                                        "_count": "2"})
    first = r.json()
    assert [e["resource"]["id"] for e in first["entry"]] == [f["a"].split("/")[1], f["c"].split("/")[1]]
    following = next(link["url"] for link in first["link"] if link["relation"] == "next")
    assert [e["resource"]["id"] for e in http.get(following).json()["entry"]] == \
        [f["b"].split("/")[1], f["own"].split("/")[1]]
    r = http.get("/Slot/$find", params={"start": "2027-06-07"})
    assert r.status_code == 400 and "'end'" in r.text, r.text
    assert "is not after start" in found(http, {"start": "2027-06-09"}, 400)[0]
    assert "not a FHIR date" in found(http, {"end": "next week"}, 400)[0]
    assert "has no parameter 'doctor'" in found(http, {"doctor": "x"}, 400)[0]
    assert "must be Practitioner/<id>" in found(http, {"practitioner": "Patient/x"}, 400)[0]
    assert found(http, {"practitioner": "nobody"}) == []


def test_find_by_post_with_parameters(http, finder):
    body = {"resourceType": "Parameters", "parameter": [
        {"name": "start", "valueDateTime": "2027-06-07T00:00:00+02:00"},
        {"name": "end", "valueDate": "2027-06-09"},
        {"name": "practitioner", "valueReference": {"reference": finder["cardio"]}},
        {"name": "specialty", "valueCoding": {"system": SPECIALTY, "code": "SM04"}}]}
    r = http.post("/Slot/$find", json=body)
    assert r.status_code == 200, r.text
    assert [f"Slot/{e['resource']['id']}" for e in r.json()["entry"]] == \
        [finder["a"], finder["c"], finder["b"], finder["own"], finder["late"]]


def test_find_sees_only_what_the_caller_may(agenda_server, http, finder):
    """The cardiologist's token reads the slots of one agenda only (a granular scope)."""
    headers = token(agenda_server, finder["cardio"], f"user/Slot.rs?schedule={finder['s_cc']} user/Schedule.rs "
                                                     "user/PractitionerRole.rs user/Practitioner.rs")
    r = http.get("/Slot/$find", params={"start": "2027-06-07", "end": "2027-06-08", "practitioner": finder["cardio"]},
                 headers=headers)
    assert r.status_code == 200, r.text
    assert [f"Slot/{e['resource']['id']}" for e in r.json().get("entry", ())] == [finder["c"]]


def test_find_is_declared(http):
    statement = http.get("/metadata").json()
    slot_ = next(r for r in statement["rest"][0]["resource"] if r["type"] == "Slot")
    assert {"name": "find", "definition": "https://fhir-server.dev/ig/coordination/OperationDefinition/"
                                          "coord-op-slot-find"} in slot_["operation"]
    assert "end" in {p["name"] for p in slot_["searchParam"]}
