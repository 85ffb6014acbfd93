"""Secure messaging as an inbox, with plain search: unread messages (no read receipt of the
recipient: `read-by:not`; `received` is delivery), threads, marking as read."""

from __future__ import annotations

import uuid


def message(client, sender, recipient, text, in_response_to=None):
    body = {"resourceType": "Communication", "status": "completed", "sent": "2026-03-01T10:00:00Z",
            "sender": {"reference": sender}, "recipient": [{"reference": recipient}],
            "payload": [{"contentString": text}]}
    if in_response_to:
        body["inResponseTo"] = [{"reference": f"Communication/{in_response_to}"}]
    r = client.post("/Communication", json=body)
    assert r.status_code == 201, r.text
    return r.json()["id"]


def test_unread_thread_and_mark_as_read(client):
    u = uuid.uuid4().hex[:8]
    nurse, gp = f"PractitionerRole/nurse-{u}", f"PractitionerRole/gp-{u}"
    for role in (nurse, gp):  # references must resolve (referential integrity)
        assert client.put(f"/{role}", json={"resourceType": "PractitionerRole", "id": role.split("/")[1]}).status_code == 201
    first = message(client, nurse, gp, "Poids +2 kg")
    answer = message(client, gp, nurse, "Adapter le diurétique", first)
    again = message(client, nurse, gp, "Fait", answer)

    unread = client.get("/Communication", params={"recipient": gp, "read-by:not": gp, "_sort": "-sent"}).json()
    assert {e["resource"]["id"] for e in unread["entry"]} == {first, again}
    thread = client.get("/Communication", params={"in-response-to": f"Communication/{first}"}).json()
    assert [e["resource"]["id"] for e in thread["entry"]] == [answer]
    # the whole thread, from its first message, with _revinclude iterate
    whole = client.get("/Communication", params={"_id": first, "_revinclude:iterate": "Communication:in-response-to"}).json()
    assert {e["resource"]["id"] for e in whole["entry"]} == {first, answer, again}

    # mark as read: a read receipt for the reader (POST Communication/[id]/$mark-read does the same)
    patch = [{"op": "add", "path": "/extension", "value": [{
                 "url": "https://fhir-server.dev/ig/coordination/StructureDefinition/coord-ext-read-by",
                 "extension": [{"url": "reader", "valueReference": {"reference": gp}},
                               {"url": "time", "valueDateTime": "2026-03-01T11:00:00Z"}]}]}]
    r = client.patch(f"/Communication/{first}", json=patch, headers={"Content-Type": "application/json-patch+json"})
    assert r.status_code == 200, r.text
    unread = client.get("/Communication", params={"recipient": gp, "read-by:not": gp}).json()
    assert {e["resource"]["id"] for e in unread["entry"]} == {again}
    read_by = client.get("/Communication", params={"read-by": gp}).json()
    assert [e["resource"]["id"] for e in read_by["entry"]] == [first]
