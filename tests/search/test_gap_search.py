"""The ANS GAP guide (ans.fhir.fr.gap 3.0.0, shared agendas) loaded with FHIR_PACKAGES, on a
server of its own: it starts without the dependencies nobody can fetch (a warning says so), every
SearchParameter it defines works on GAP-shaped Schedules, Slots and Appointments — Appointment
`created`, `description` (comment or description), `priority` (a token on an integer), `start`
(defined twice, once per direction of comparators: one parameter, ge and le alike), Slot `start`
(restating R4's) — and the package's examples validate against its profiles, load, and are found
by those parameters. Skipped without the package, failed under CI=true (tests/packages.py)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests import packages
from tests.conftest import start_server

from .support import Data

GAP = "https://interop.esante.gouv.fr/ig/fhir/gap/"
EXAMPLES = ("Schedule-example", "Slot-example", "Appointment-example-req-appointment")


@pytest.fixture(scope="module")
def gap_tgz():
    return packages.french_package("ans.fhir.fr.gap", "3.0.0")


@pytest.fixture(scope="module")
def gap_server(tmp_path_factory, r4_examples, gap_tgz):
    running = start_server(tmp_path_factory.mktemp("gap"),
                           extra_env={"FHIR_PACKAGES": str(gap_tgz), "FHIR_AUDIT": "false"})
    yield running
    running.stop()


@pytest.fixture(scope="module")
def data(gap_server) -> Iterator[Data]:
    with httpx.Client(base_url=gap_server.base_url, timeout=60, headers={"Accept": "application/fhir+json"}) as c:
        yield Data(c)


def example(gap_tgz, name: str) -> dict[str, Any]:
    return packages.package_example(gap_tgz, name)


def ids(data: Data, type_: str, params: dict[str, str] | list[tuple[str, str]], tagged: bool = True) -> set[str]:
    bundle = data.bundle(f"/{type_}", params, tagged)
    assert not [e for e in bundle.get("entry", ()) if e["search"]["mode"] == "outcome"], bundle
    return {e["resource"]["id"] for e in bundle.get("entry", ()) if e["search"]["mode"] == "match"}


def test_starts_and_names_its_parameters(gap_server, data):
    log = gap_server.log()
    assert "needs ans.fhir.fr.annuaire#1.0.1, which is not in the cache" in log
    assert "with another meaning" not in log  # latestStart and earliestStart are one `start`
    statement = data.client.get("/metadata").json()
    params = {r["type"]: {p["name"]: p.get("definition") for p in r.get("searchParam", ())}
              for r in statement["rest"][0]["resource"]}
    assert params["Appointment"]["created"] == GAP + "SearchParameter/GAP-Appointment-created"
    assert params["Appointment"]["description"] == GAP + "SearchParameter/GAP-Appointment-description"
    assert params["Appointment"]["priority"] == GAP + "SearchParameter/GAP-Appointment-priority"
    assert params["Appointment"]["start"] == GAP + "SearchParameter/GAP-Appointment-earliestStart"
    assert params["Slot"]["start"] == "http://hl7.org/fhir/SearchParameter/Slot-start"


@pytest.fixture(scope="module")
def world(data, gap_tgz) -> dict[str, str]:
    """GAP-shaped resources: one agenda, three slots, two appointments (one booked, one proposed)."""
    schedule = {**example(gap_tgz, "Schedule-example"), "actor": [{"display": "Dr Langdon, cabinet Paris"}]}
    schedule.pop("id")
    w = {"schedule": data.create(schedule)["id"]}

    def slot(start: str, end: str) -> str:
        resource = {**example(gap_tgz, "Slot-example"), "schedule": {"reference": f"Schedule/{w['schedule']}"},
                    "start": start, "end": end}
        resource.pop("id")
        return data.create(resource)["id"]

    w["s1"] = slot("2027-02-01T09:00:00+01:00", "2027-02-01T09:15:00+01:00")
    w["s2"] = slot("2027-02-01T09:15:00+01:00", "2027-02-01T09:30:00+01:00")
    w["s3"] = slot("2027-02-03T14:00:00+01:00", "2027-02-03T14:15:00+01:00")

    def appointment(status: str, slot_id: str, start: str, created: str, priority: int, **text: str) -> str:
        resource = {**example(gap_tgz, "Appointment-example-req-appointment"), "status": status,
                    "slot": [{"reference": f"Slot/{slot_id}"}], "start": start, "created": created,
                    "end": start.replace("09:00", "09:15"), "priority": priority, **text}
        for key in ("id", "extension", "participant"):
            resource.pop(key)
        resource["participant"] = [{"actor": {"display": "M Martin"}, "status": "accepted"}]
        if status != "booked":
            resource.pop("start"), resource.pop("end")
        return data.create(resource)["id"]

    w["booked"] = appointment("booked", w["s1"], "2027-02-01T09:00:00+01:00", "2027-01-10", 5,
                              comment="Suivi tension artérielle")
    w["proposed"] = appointment("proposed", w["s3"], "", "2027-01-20", 1, description="Renouvellement ordonnance")
    return w


def test_slot_start_both_ways(data, world):
    assert ids(data, "Slot", {"start": "ge2027-02-01T09:15:00+01:00"}) == {world["s2"], world["s3"]}
    assert ids(data, "Slot", [("start", "ge2027-02-01"), ("start", "le2027-02-01T23:59:59+01:00")]) == \
        {world["s1"], world["s2"]}
    assert ids(data, "Slot", {"schedule": f"Schedule/{world['schedule']}", "status": "free"}) == \
        {world["s2"], world["s3"]}  # s1 is busy: the booked appointment holds it


def test_appointment_start_both_ways(data, world):
    assert ids(data, "Appointment", {"start": "ge2027-02-01"}) == {world["booked"]}
    assert ids(data, "Appointment", {"start": "le2027-02-01T09:00:00+01:00"}) == {world["booked"]}
    assert ids(data, "Appointment", {"start": "lt2027-02-01T09:00:00+01:00"}) == set()
    assert ids(data, "Appointment", {"start": "gt2027-02-01"}) == set()


def test_appointment_created_description_priority(data, world):
    assert ids(data, "Appointment", {"created": "ge2027-01-15"}) == {world["proposed"]}
    assert ids(data, "Appointment", {"created": "2027-01-10"}) == {world["booked"]}
    assert ids(data, "Appointment", {"description": "suivi"}) == {world["booked"]}  # the comment
    assert ids(data, "Appointment", {"description:contains": "ordonnance"}) == {world["proposed"]}
    assert ids(data, "Appointment", {"priority": "5"}) == {world["booked"]}
    assert ids(data, "Appointment", {"priority": "1,5"}) == {world["booked"], world["proposed"]}


@pytest.mark.parametrize("name", EXAMPLES)
def test_the_package_examples_validate_against_its_profiles(data, gap_tgz, name):
    resource = example(gap_tgz, name)
    for profile in resource["meta"]["profile"]:
        r = data.client.post(f"/{resource['resourceType']}/$validate", params={"profile": profile}, json=resource)
        assert r.status_code == 200, r.text
        assert not [i for i in r.json()["issue"] if i["severity"] in ("error", "fatal")], r.text


def test_the_package_examples_load_and_are_found(data, gap_tgz):
    for name in EXAMPLES:
        resource = example(gap_tgz, name)
        r = data.client.put(f"/{resource['resourceType']}/{resource['id']}", json=resource)
        assert r.status_code in (200, 201), r.text
    assert "example" in ids(data, "Slot", [("start", "ge2019-01-04T09:15:00Z"), ("start", "lt2019-01-04T09:16:00Z")],
                            tagged=False)
    assert "example" in ids(data, "Schedule", {"identifier": "http://example.org/scheduleid|45"}, tagged=False)
    found = ids(data, "Appointment", {"created": "2019-01-02", "priority": "5", "status": "proposed"}, tagged=False)
    assert found == {"example-req-appointment"}
    # a proposed request names its slot (on another server) and holds nothing
    assert ids(data, "Appointment", {"slot": "https://exampleserver.org/fhir/Slot/example"}, tagged=False) == \
        {"example-req-appointment"}
