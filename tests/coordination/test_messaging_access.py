"""Secure messaging under the équipe de soins rule, with tokens from a real OpenID provider.

| user | is | for patient P |
|---|---|---|
| nurse | PractitionerRole at the MSP | in P's care team: writes to the GP and to the outsider |
| gp | two roles (MSP, hospital) | in P's care team |
| outsider | a role at a health centre | not in P's team: gets the message addressed to him, not its attachment |

A receipt is written by the recipient who read (for themselves, their roles, their structure's
box): the sender cannot fake one; `$mark-read` takes the recipients the token's user acts as.
A reply to a message the caller may not see is refused exactly like one to a message that does
not exist."""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

import pytest

from tests.bundle.support import dump, dump_difference, mongo
from tests.oidc.provider import Client
from tests.security.conftest import bearer, http, provider, secured  # noqa: F401 — the module's fixtures

TAG = uuid.uuid4().hex[:6]
ADMIN = "system/*.cruds"
USER = "user/*.cruds"
READ_BY = "https://fhir-server.dev/ig/coordination/StructureDefinition/coord-ext-read-by"
PEOPLE = ("gp", "nurse", "outsider")
PRACTITIONER = {who: f"{who}-{TAG}" for who in PEOPLE}
P, Q = f"p-{TAG}", f"q-{TAG}"
ROLES = {"gp": [f"gp-msp-{TAG}", f"gp-ch-{TAG}"], "nurse": [f"nurse-{TAG}"], "outsider": [f"outsider-{TAG}"]}
MSP, CH, CDS = f"msp-{TAG}", f"ch-{TAG}", f"cds-{TAG}"
CLIENTS = [Client("backend", scope=[ADMIN])] + [
    Client(who, scope=[USER], claims={"fhirUser": f"Practitioner/{PRACTITIONER[who]}"}) for who in PEOPLE]


def role(who: str, i: int = 0) -> str:
    return f"PractitionerRole/{ROLES[who][i]}"


def _world() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [{"resourceType": "Organization", "id": o, "name": o} for o in (MSP, CH, CDS)]
    out += [{"resourceType": "Practitioner", "id": PRACTITIONER[who]} for who in PEOPLE]
    for who, organizations in (("gp", (MSP, CH)), ("nurse", (MSP,)), ("outsider", (CDS,))):
        out += [{"resourceType": "PractitionerRole", "id": ROLES[who][i], "active": True,
                 "practitioner": {"reference": f"Practitioner/{PRACTITIONER[who]}"},
                 "organization": {"reference": f"Organization/{org}"}} for i, org in enumerate(organizations)]
    for patient in (P, Q):
        out += [
            {"resourceType": "Patient", "id": patient, "name": [{"family": f"Secret{patient}"}]},
            {"resourceType": "DocumentReference", "id": f"doc-{patient}", "status": "current",
             "subject": {"reference": f"Patient/{patient}"},
             "content": [{"attachment": {"contentType": "text/plain", "url": f"Binary/bin-{patient}"}}]},
            {"resourceType": "Binary", "id": f"bin-{patient}", "contentType": "text/plain",
             "securityContext": {"reference": f"DocumentReference/doc-{patient}"},
             "data": base64.b64encode(b"compte rendu").decode()}]
    out.append({"resourceType": "CareTeam", "id": f"team-{P}", "status": "active", "subject": {"reference": f"Patient/{P}"},
                "participant": [{"member": {"reference": role("nurse")}}, {"member": {"reference": role("gp")}}]})
    out.append(_message(f"msg-{Q}", Q, role("nurse"), [role("nurse")]))  # about Q, naming neither gp nor outsider
    return out


def _message(id_: str | None, patient: str, sender: str, recipients: list[str], **more: Any) -> dict[str, Any]:
    body = {"resourceType": "Communication", "status": "completed", "sent": "2026-03-01T10:00:00Z",
            "subject": {"reference": f"Patient/{patient}"}, "sender": {"reference": sender},
            "recipient": [{"reference": r} for r in recipients], "payload": [{"contentString": "pansement"}], **more}
    return {**body, "id": id_} if id_ else body


@pytest.fixture(scope="module")
def admin(provider) -> dict[str, str]:  # noqa: F811
    return bearer(provider.token("backend", scope=ADMIN))


@pytest.fixture(scope="module")
def world(http, admin) -> None:  # noqa: F811
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}} for r in _world()]}
    response = http.post("/", json=bundle, headers=admin)
    assert response.status_code == 200, response.text


@pytest.fixture(scope="module")
def tokens(provider, world) -> dict[str, dict[str, str]]:  # noqa: F811
    return {who: bearer(provider.token(who, scope=USER)) for who in PEOPLE}


@pytest.fixture(scope="module")
def database(secured):  # noqa: F811
    client = mongo(secured)
    yield client
    client.close()


def send(http, token: dict[str, str], body: dict[str, Any]) -> str:  # noqa: F811
    r = http.post("/Communication", json=body, headers=token)
    assert r.status_code == 201, r.text
    return r.json()["id"]


def readers(resource: dict[str, Any]) -> list[str]:
    return [part["valueReference"]["reference"] for ext in resource.get("extension") or ()
            if ext["url"] == READ_BY for part in ext["extension"] if part["url"] == "reader"]


def refused(http, database, token, method: str, url: str, body: Any, status: int,  # noqa: F811
            headers: dict[str, str] | None = None) -> dict[str, Any]:
    before = dump(database)
    r = http.request(method, url, content=json.dumps(body),
                     headers={"Content-Type": "application/fhir+json", **token, **(headers or {})})
    assert r.status_code == status, (r.status_code, r.text[:1500])
    assert dump(database) == before, dump_difference(before, dump(database))
    return r.json()


def test_a_recipient_outside_the_care_team_gets_the_message_not_the_attachment(http, tokens):  # noqa: F811
    body = _message(None, P, role("nurse"), [role("gp"), role("outsider")])
    body["payload"] += [{"contentReference": {"reference": f"DocumentReference/doc-{P}"}},
                        {"contentAttachment": {"contentType": "text/plain", "url": f"Binary/bin-{P}"}}]
    id_ = send(http, tokens["nurse"], body)
    for who in ("gp", "outsider"):
        assert http.get(f"/Communication/{id_}", headers=tokens[who]).status_code == 200
    assert http.get(f"/DocumentReference/doc-{P}", headers=tokens["gp"]).status_code == 200
    assert http.get(f"/Binary/bin-{P}", headers={**tokens["gp"], "Accept": "application/fhir+json"}).status_code == 200
    assert http.get(f"/DocumentReference/doc-{P}", headers=tokens["outsider"]).status_code == 404
    assert http.get(f"/Binary/bin-{P}", headers={**tokens["outsider"], "Accept": "application/fhir+json"}).status_code \
        == 404
    included = http.get("/Communication", params={"_id": id_, "_include": "Communication:*"}, headers=tokens["outsider"])
    assert f"doc-{P}" not in {e["resource"]["id"] for e in included.json()["entry"]}


def test_a_sender_cannot_fake_a_receipt(http, database, tokens):  # noqa: F811
    id_ = send(http, tokens["nurse"], _message(None, P, role("nurse"), [role("gp")]))
    receipt = {"url": READ_BY, "extension": [{"url": "reader", "valueReference": {"reference": role("gp")}},
                                             {"url": "time", "valueDateTime": "2026-03-01T11:00:00Z"}]}
    outcome = refused(http, database, tokens["nurse"], "PATCH", f"/Communication/{id_}",
                      [{"op": "add", "path": "/extension", "value": [receipt]}], 403,
                      {"Content-Type": "application/json-patch+json"})
    assert outcome["issue"][0]["expression"] == ["Communication.extension[0]"], outcome
    refused(http, database, tokens["nurse"], "POST", f"/Communication/{id_}/$mark-read",
            {"resourceType": "Parameters", "parameter": [{"name": "reader", "valueReference": {
                "reference": role("gp")}}]}, 403)
    # the nurse is not a recipient: nothing to mark for her
    outcome = refused(http, database, tokens["nurse"], "POST", f"/Communication/{id_}/$mark-read", None, 422)
    assert "Communication.recipient" in json.dumps(outcome)


def test_mark_read_takes_the_recipients_the_user_acts_as(http, tokens):  # noqa: F811
    id_ = send(http, tokens["nurse"], _message(None, P, role("nurse"), [role("gp", 1), role("outsider")]))
    r = http.post(f"/Communication/{id_}/$mark-read", headers=tokens["gp"])
    assert r.status_code == 200, r.text
    assert readers(r.json()) == [role("gp", 1)]  # the GP's hospital role, the one addressed
    r = http.post(f"/Communication/{id_}/$mark-read", headers=tokens["outsider"])
    assert r.status_code == 200, r.text
    assert readers(r.json()) == [role("gp", 1), role("outsider")]
    unread = http.get("/Communication", params={"recipient": role("outsider"), "read-by:not": role("outsider")},
                      headers=tokens["outsider"])
    assert id_ not in {e["resource"]["id"] for e in unread.json().get("entry", [])}


def test_a_member_marks_a_message_to_the_care_team_read_for_themselves(http, tokens):  # noqa: F811
    id_ = send(http, tokens["nurse"], _message(None, P, role("nurse"), [f"CareTeam/team-{P}"]))
    r = http.post(f"/Communication/{id_}/$mark-read", headers=tokens["gp"])
    assert r.status_code == 200, r.text
    assert readers(r.json()) == [role("gp")]
    r = http.post(f"/Communication/{id_}/$mark-read", headers=tokens["outsider"])
    assert r.status_code == 404, r.text  # not addressed to him, about a patient he does not reach


def test_a_reply_to_a_hidden_message_is_a_reply_to_nothing(http, database, tokens):  # noqa: F811
    outcomes = []
    for target in (f"Communication/msg-{Q}", "Communication/nosuchmessage"):
        reply = _message(None, Q, role("gp"), [role("nurse")], inResponseTo=[{"reference": target}])
        outcome = refused(http, database, tokens["gp"], "POST", "/Communication", reply, 422)
        assert outcome["issue"][0]["expression"] == ["Communication.inResponseTo[0]"], outcome
        outcomes.append((outcome["issue"][0]["code"], outcome["issue"][0]["diagnostics"].split(" names ")[1]
                         .split(",", 1)[1]))
    assert outcomes[0] == outcomes[1]  # the same answer, but for the reference named


def test_an_attachment_out_of_reach_is_absent(http, database, tokens):  # noqa: F811
    body = _message(None, Q, role("gp"), [role("nurse")])
    body["payload"].append({"contentReference": {"reference": f"DocumentReference/doc-{Q}"}})
    outcome = refused(http, database, tokens["gp"], "POST", "/Communication", body, 422)
    assert outcome["issue"][0]["code"] == "not-found", outcome
    assert outcome["issue"][0]["expression"] == ["Communication.payload[1].contentReference"], outcome
