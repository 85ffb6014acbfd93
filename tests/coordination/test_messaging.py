"""Secure messaging through HTTP, in open mode, on a server of its own: read receipts per
recipient (`read-by`, "unread for X" as `read-by:not=X`, `received` left to delivery), the
`$mark-read` operation and its race (every reader ends up in read-by), replies that stay in
their thread, attachments of the message's patient, and the inboxes of a professional, of a
role and of a structure's MSSanté box. Every refusal is a 4xx naming the element, with every
collection as it was."""

from __future__ import annotations

import base64
import json
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.bundle.support import dump, dump_difference, mongo
from tests.conftest import start_server

READ_BY = "https://fhir-server.dev/ig/coordination/StructureDefinition/coord-ext-read-by"
TOPICS = "https://fhir-server.dev/ig/coordination/CodeSystem/coord-cs-message-topic"
MSSANTE_BOX = "secretariat@msp-test.mssante.fr"
PATCH = {"Content-Type": "application/json-patch+json"}


@pytest.fixture(scope="module")
def messaging_server(tmp_path_factory, r4_examples):
    running = start_server(tmp_path_factory.mktemp("messaging"), extra_env={"FHIR_AUDIT": "false"})
    yield running
    running.stop()


@pytest.fixture(scope="module")
def http(messaging_server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=messaging_server.base_url, timeout=60,
                      headers={"Accept": "application/fhir+json"}) as client:
        yield client


@pytest.fixture(scope="module")
def database(messaging_server):
    client = mongo(messaging_server)
    yield client
    client.close()


def _create(http: httpx.Client, resource: dict[str, Any]) -> str:
    r = http.post(f"/{resource['resourceType']}", json=resource)
    assert r.status_code == 201, r.text
    return f"{resource['resourceType']}/{r.json()['id']}"


@pytest.fixture(scope="module")
def world(http) -> dict[str, str]:
    """Two patients; a GP with two roles (MSP and hospital), a nurse and a cardiologist; the MSP
    with its MSSanté box; a document (and its Binary) of each patient."""
    out: dict[str, str] = {
        "msp": _create(http, {"resourceType": "Organization", "name": "MSP", "telecom": [
            {"system": "email", "value": MSSANTE_BOX}]}),
        "hospital": _create(http, {"resourceType": "Organization", "name": "CH"}),
        "p": _create(http, {"resourceType": "Patient", "name": [{"family": "Message"}]}),
        "q": _create(http, {"resourceType": "Patient", "name": [{"family": "Autre"}]}),
    }
    for who in ("gp", "nurse", "cardio"):
        out[who] = _create(http, {"resourceType": "Practitioner", "name": [{"family": who}]})
    for role, who, org in (("gp-msp", "gp", "msp"), ("gp-ch", "gp", "hospital"), ("nurse-msp", "nurse", "msp"),
                           ("cardio-ch", "cardio", "hospital")):
        out[role] = _create(http, {"resourceType": "PractitionerRole", "practitioner": {"reference": out[who]},
                                   "organization": {"reference": out[org]},
                                   "telecom": [{"system": "email", "value": f"{role}@test.mssante.fr"}]})
    for patient in ("p", "q"):
        doc = _create(http, {"resourceType": "DocumentReference", "status": "current",
                             "subject": {"reference": out[patient]},
                             "content": [{"attachment": {"contentType": "text/plain", "title": "CR"}}]})
        out[f"doc-{patient}"] = doc
        out[f"bin-{patient}"] = _create(http, {"resourceType": "Binary", "contentType": "text/plain",
                                               "securityContext": {"reference": doc},
                                               "data": base64.b64encode(b"compte rendu").decode()})
    return out


def message(world: dict[str, str], sender: str, recipients: list[str], patient: str | None = "p",
            topic: str = "information", **more: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "resourceType": "Communication", "status": "completed", "sent": "2026-03-01T10:00:00Z",
        "category": [{"coding": [{"system": TOPICS, "code": "information"}]}],
        "topic": {"coding": [{"system": TOPICS, "code": topic}]},
        "sender": {"reference": world[sender]},
        "recipient": [{"reference": world[r]} for r in recipients],
        "payload": [{"contentString": f"message {uuid.uuid4().hex[:6]}"}], **more}
    if patient:
        body["subject"] = {"reference": world[patient]}
    return body


def send(http: httpx.Client, body: dict[str, Any]) -> str:
    r = http.post("/Communication", json=body)
    assert r.status_code == 201, r.text
    return r.json()["id"]


def mark_read(http: httpx.Client, id_: str, reader: str) -> httpx.Response:
    return http.post(f"/Communication/{id_}/$mark-read", json={
        "resourceType": "Parameters", "parameter": [{"name": "reader", "valueReference": {"reference": reader}}]})


def readers(resource: dict[str, Any]) -> list[str]:
    return [part["valueReference"]["reference"] for ext in resource.get("extension") or ()
            if ext["url"] == READ_BY for part in ext["extension"] if part["url"] == "reader"]


def ids(http: httpx.Client, params: Any) -> set[str]:
    r = http.get("/Communication", params=params)
    assert r.status_code == 200, r.text
    return {e["resource"]["id"] for e in r.json().get("entry", []) if e["search"]["mode"] == "match"}


def refused(http: httpx.Client, database, method: str, url: str, body: Any, status: int, element: str,
            headers: dict[str, str] | None = None) -> dict[str, Any]:
    """The request is refused with `status`, naming `element`, and nothing at all changed."""
    before = dump(database)
    r = http.request(method, url, content=json.dumps(body), headers={
        "Content-Type": "application/fhir+json", **(headers or {})})
    assert r.status_code == status, (r.status_code, r.text[:1500])
    outcome = r.json()
    assert outcome["resourceType"] == "OperationOutcome", outcome
    assert any(element in issue.get("expression", []) for issue in outcome["issue"]), outcome
    assert dump(database) == before, dump_difference(before, dump(database))
    return outcome


# -- read receipts per recipient -----------------------------------------------------------------

def test_a_message_read_by_one_recipient_is_still_unread_for_the_other(http, world):
    id_ = send(http, message(world, "nurse-msp", ["gp-msp", "cardio-ch"], received="2026-03-01T10:00:05Z"))
    gp, cardio = world["gp-msp"], world["cardio-ch"]
    assert id_ in ids(http, {"recipient": gp, "read-by:not": gp})
    assert id_ in ids(http, {"recipient": cardio, "read-by:not": cardio})
    assert id_ in ids(http, {"_id": id_, "read-by:missing": "true"})

    r = mark_read(http, id_, gp)
    assert r.status_code == 200, r.text
    assert readers(r.json()) == [gp]
    assert r.json()["received"] == "2026-03-01T10:00:05Z"  # delivery, untouched by reading

    assert id_ not in ids(http, {"recipient": gp, "read-by:not": gp})
    assert id_ in ids(http, {"recipient": cardio, "read-by:not": cardio})
    assert ids(http, {"_id": id_, "read-by:missing": "true"}) == set()
    assert ids(http, {"_id": id_, "read-by": gp}) == {id_}
    assert ids(http, {"_id": id_, "read-by": cardio}) == set()

    r = mark_read(http, id_, cardio)
    assert r.status_code == 200, r.text
    assert readers(r.json()) == [gp, cardio]
    assert id_ not in ids(http, {"recipient": cardio, "read-by:not": cardio})


def test_a_message_to_a_care_team_is_read_by_each_member(http, database, world):
    team = _create(http, {"resourceType": "CareTeam", "status": "active", "subject": {"reference": world["p"]},
                          "participant": [{"member": {"reference": world["gp-msp"]}},
                                          {"member": {"reference": world["nurse-msp"]}},
                                          {"member": {"reference": world["cardio-ch"]},
                                           "period": {"start": "2020-01-01", "end": "2021-01-01"}}]})
    body = message(world, "nurse-msp", ["gp-msp"])
    body["recipient"] = [{"reference": team}]
    id_ = send(http, body)
    assert mark_read(http, id_, world["gp-msp"]).status_code == 200
    assert id_ not in ids(http, {"recipient": team, "read-by:not": world["gp-msp"]})
    assert id_ in ids(http, {"recipient": team, "read-by:not": world["nurse-msp"]})
    # a former member is no longer a recipient of the team's messages
    refused(http, database, "POST", f"/Communication/{id_}/$mark-read",
            {"resourceType": "Parameters", "parameter": [{"name": "reader", "valueReference": {
                "reference": world["cardio-ch"]}}]}, 422, "Communication.extension[1]")


def test_marking_again_changes_nothing(http, world):
    id_ = send(http, message(world, "nurse-msp", ["gp-msp"]))
    first = mark_read(http, id_, world["gp-msp"])
    again = mark_read(http, id_, world["gp-msp"])
    assert again.status_code == 200, again.text
    assert again.json()["meta"]["versionId"] == first.json()["meta"]["versionId"]
    assert again.json()["extension"] == first.json()["extension"]


def test_a_reader_who_is_not_a_recipient_is_refused(http, database, world):
    id_ = send(http, message(world, "nurse-msp", ["gp-msp"]))
    refused(http, database, "POST", f"/Communication/{id_}/$mark-read",
            {"resourceType": "Parameters", "parameter": [{"name": "reader", "valueReference": {
                "reference": world["cardio-ch"]}}]}, 422, "Communication.extension[0]")
    receipt = {"url": READ_BY, "extension": [{"url": "reader", "valueReference": {"reference": world["nurse-msp"]}},
                                             {"url": "time", "valueDateTime": "2026-03-01T11:00:00Z"}]}
    refused(http, database, "PATCH", f"/Communication/{id_}", [{"op": "add", "path": "/extension", "value": [receipt]}],
            422, "Communication.extension[0]", PATCH)
    refused(http, database, "POST", "/Communication", {**message(world, "nurse-msp", ["gp-msp"]),
                                                       "extension": [receipt]}, 422, "Communication.extension[0]")


def test_receipts_stay_once_written_and_are_one_per_recipient(http, database, world):
    id_ = send(http, message(world, "nurse-msp", ["gp-msp"]))
    read = mark_read(http, id_, world["gp-msp"]).json()
    refused(http, database, "PATCH", f"/Communication/{id_}", [{"op": "remove", "path": "/extension"}], 422,
            "Communication.extension", PATCH)
    refused(http, database, "PATCH", f"/Communication/{id_}",
            [{"op": "replace", "path": "/extension/0/extension/1/valueDateTime", "value": "2020-01-01T00:00:00Z"}],
            422, "Communication.extension", PATCH)
    duplicate = [{"op": "add", "path": "/extension/-", "value": read["extension"][0]}]
    refused(http, database, "PATCH", f"/Communication/{id_}", duplicate, 422, "Communication.extension[1]", PATCH)


def test_mark_read_needs_a_reader_in_open_mode(http, world):
    id_ = send(http, message(world, "nurse-msp", ["gp-msp"]))
    r = http.post(f"/Communication/{id_}/$mark-read")
    assert r.status_code == 400, r.text
    assert "reader" in r.text
    assert http.post("/Communication/nosuchmessage/$mark-read", params={"reader": world["gp-msp"]}).status_code == 404


def test_readers_racing_all_end_up_in_read_by(http, world):
    """Six recipients mark one message read at the same instant: the later units of work run
    again on the version the first committed, so every receipt is kept."""
    roles = [_create(http, {"resourceType": "PractitionerRole", "practitioner": {"reference": world["gp"]}})
             for _ in range(6)]
    body = message(world, "nurse-msp", ["gp-msp"])
    body["recipient"] = [{"reference": r} for r in roles]
    id_ = send(http, body)
    start = threading.Barrier(len(roles))
    answers: dict[str, int] = {}

    def read(role: str) -> None:
        with httpx.Client(base_url=str(http.base_url), timeout=60) as own:
            start.wait()
            answers[role] = mark_read(own, id_, role).status_code

    threads = [threading.Thread(target=read, args=(role,)) for role in roles]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert answers == {role: 200 for role in roles}
    stored = http.get(f"/Communication/{id_}").json()
    assert sorted(readers(stored)) == sorted(roles)
    for role in roles:
        assert ids(http, {"_id": id_, "read-by": role}) == {id_}


def test_json_patch_with_if_match_does_not_lose_a_receipt(http, world):
    """The other way to add a receipt: a JSON Patch `add` (to /extension, then /extension/-)
    with If-Match; the second reader on the same version gets 412, reads again and adds theirs."""
    id_ = send(http, message(world, "nurse-msp", ["gp-msp", "cardio-ch"]))
    version = http.get(f"/Communication/{id_}").headers["ETag"]

    def receipt(reader: str, path: str = "/extension") -> list[dict[str, Any]]:
        value = {"url": READ_BY, "extension": [{"url": "reader", "valueReference": {"reference": reader}},
                                               {"url": "time", "valueDateTime": "2026-03-01T11:00:00Z"}]}
        return [{"op": "add", "path": path, "value": [value] if path == "/extension" else value}]

    first = http.patch(f"/Communication/{id_}", json=receipt(world["gp-msp"]), headers={**PATCH, "If-Match": version})
    assert first.status_code == 200, first.text
    late = http.patch(f"/Communication/{id_}", json=receipt(world["cardio-ch"]), headers={**PATCH, "If-Match": version})
    assert late.status_code == 412, late.text
    again = http.patch(f"/Communication/{id_}", json=receipt(world["cardio-ch"], "/extension/-"),
                       headers={**PATCH, "If-Match": first.headers["ETag"]})
    assert again.status_code == 200, again.text
    assert readers(again.json()) == [world["gp-msp"], world["cardio-ch"]]


# -- threads -------------------------------------------------------------------------------------

def test_a_reply_stays_in_its_thread(http, database, world):
    first = send(http, message(world, "nurse-msp", ["gp-msp"]))
    reply = send(http, message(world, "gp-msp", ["nurse-msp"], inResponseTo=[{"reference": f"Communication/{first}"}]))
    again = send(http, message(world, "nurse-msp", ["gp-msp"], inResponseTo=[{"reference": f"Communication/{reply}"}]))
    assert ids(http, {"in-response-to": f"Communication/{first}"}) == {reply}
    whole = http.get("/Communication", params={"_id": first, "_revinclude:iterate": "Communication:in-response-to"})
    assert {e["resource"]["id"] for e in whole.json()["entry"]} == {first, reply, again}

    answering = {"inResponseTo": [{"reference": f"Communication/{first}"}]}
    refused(http, database, "POST", "/Communication", message(world, "gp-msp", ["nurse-msp"], patient="q",
                                                              **answering), 422, "Communication.inResponseTo[0]")
    refused(http, database, "POST", "/Communication", message(world, "gp-msp", ["nurse-msp"], patient=None,
                                                              **answering), 422, "Communication.inResponseTo[0]")
    refused(http, database, "POST", "/Communication", message(world, "gp-msp", ["nurse-msp"], topic="alert",
                                                              **answering), 422, "Communication.inResponseTo[0]")
    # an update that moves a reply to another patient is refused the same way
    moved = [{"op": "replace", "path": "/subject/reference", "value": world["q"]}]
    refused(http, database, "PATCH", f"/Communication/{reply}", moved, 422, "Communication.inResponseTo[0]", PATCH)


def test_a_reply_to_a_message_that_does_not_exist_is_refused(http, database, world):
    for target in ("Communication/nosuchmessage", "http://elsewhere.org/fhir/Communication/1"):
        outcome = refused(http, database, "POST", "/Communication", message(
            world, "gp-msp", ["nurse-msp"], inResponseTo=[{"reference": target}]), 422, "Communication.inResponseTo[0]")
        assert any(i["code"] == "not-found" for i in outcome["issue"]), outcome
    for target in ("Patient/nosuch", world["doc-p"]):  # not a message: refused by the R4 type of inResponseTo
        refused(http, database, "POST", "/Communication", message(
            world, "gp-msp", ["nurse-msp"], inResponseTo=[{"reference": target}]), 422, "Communication.inResponseTo[0]")
    first = send(http, message(world, "nurse-msp", ["gp-msp"]))
    second = message(world, "gp-msp", ["nurse-msp"], inResponseTo=[
        {"reference": f"Communication/{first}"}, {"reference": "Communication/nosuchmessage"}])
    refused(http, database, "POST", "/Communication", second, 422, "Communication.inResponseTo[1]")


def test_a_message_and_its_reply_in_one_transaction(http, world):
    first, reply = f"urn:uuid:{uuid.uuid4()}", f"urn:uuid:{uuid.uuid4()}"
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": first, "resource": message(world, "nurse-msp", ["gp-msp"]),
         "request": {"method": "POST", "url": "Communication"}},
        {"fullUrl": reply, "resource": message(world, "gp-msp", ["nurse-msp"], inResponseTo=[{"reference": first}]),
         "request": {"method": "POST", "url": "Communication"}}]}
    r = http.post("", json=bundle)
    assert r.status_code == 200, r.text


# -- attachments ---------------------------------------------------------------------------------

def test_attachments_of_the_message_patient(http, database, world):
    ok = message(world, "nurse-msp", ["gp-msp"])
    ok["payload"] += [{"contentReference": {"reference": world["doc-p"]}},
                      {"contentReference": {"reference": world["bin-p"]}},
                      {"contentAttachment": {"contentType": "text/plain", "url": world["bin-p"]}},
                      {"contentAttachment": {"contentType": "text/plain", "url": "https://elsewhere.org/cr.pdf"}}]
    send(http, ok)

    for payload, element in (
            ({"contentReference": {"reference": world["doc-q"]}}, "Communication.payload[1].contentReference"),
            ({"contentReference": {"reference": world["bin-q"]}}, "Communication.payload[1].contentReference"),
            ({"contentReference": {"reference": "DocumentReference/nosuch"}}, "Communication.payload[1].contentReference"),
            ({"contentAttachment": {"contentType": "text/plain", "url": world["bin-q"]}},
             "Communication.payload[1].contentAttachment.url"),
            ({"contentAttachment": {"contentType": "text/plain", "url": "Binary/nosuch"}},
             "Communication.payload[1].contentAttachment.url")):
        body = message(world, "nurse-msp", ["gp-msp"])
        body["payload"].append(payload)
        refused(http, database, "POST", "/Communication", body, 422, element)
    # a message about no patient carries no patient's document
    body = message(world, "nurse-msp", ["gp-msp"], patient=None)
    body["payload"].append({"contentReference": {"reference": world["doc-p"]}})
    refused(http, database, "POST", "/Communication", body, 422, "Communication.payload[1].contentReference")


# -- inboxes -------------------------------------------------------------------------------------

def test_inboxes_of_a_professional_a_role_and_a_structure_box(http, world):
    to_msp_role = send(http, message(world, "nurse-msp", ["gp-msp"]))
    to_ch_role = send(http, message(world, "cardio-ch", ["gp-ch"]))
    to_box = send(http, message(world, "cardio-ch", ["msp"]))
    to_cardio = send(http, message(world, "nurse-msp", ["cardio-ch"]))
    gp = world["gp"]

    role_inbox = ids(http, {"recipient": world["gp-msp"]})
    assert to_msp_role in role_inbox and to_ch_role not in role_inbox
    assert role_inbox == ids(http, {"recipient:PractitionerRole.email": "gp-msp@test.mssante.fr"})
    personal = ids(http, {"recipient.practitioner": gp})  # every role of the professional
    assert {to_msp_role, to_ch_role} <= personal and not {to_box, to_cardio} & personal
    box = ids(http, {"recipient:Organization.email": MSSANTE_BOX})  # the MSSanté organizational box
    assert to_box in box and not {to_msp_role, to_ch_role, to_cardio} & box
    assert box == ids(http, {"recipient": world["msp"]})
    worked = ids(http, {"recipient:Organization._has:PractitionerRole:organization:practitioner": gp})
    assert to_box in worked and to_cardio not in worked  # the boxes of the structures the GP works in

    # unread in the box: a receipt for the box, written by whoever works it
    assert to_box in ids(http, {"recipient": world["msp"], "read-by:not": world["msp"]})
    assert mark_read(http, to_box, world["msp"]).status_code == 200
    assert to_box not in ids(http, {"recipient": world["msp"], "read-by:not": world["msp"]})
    assert to_msp_role in ids(http, {"recipient.practitioner": gp, "read-by:missing": "true"})


def test_the_operation_is_declared(http):
    statement = http.get("/metadata").json()
    communication = next(r for r in statement["rest"][0]["resource"] if r["type"] == "Communication")
    assert {"name": "mark-read", "definition": "https://fhir-server.dev/ig/coordination/OperationDefinition/"
            "coord-op-mark-read"} in communication["operation"]
