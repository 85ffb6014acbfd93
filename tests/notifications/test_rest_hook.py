"""Rest-hook Subscriptions through HTTP, delivered to a real HTTP receiver."""

from __future__ import annotations

import json
import time
import uuid

from tests.notifications.receiver import Receiver


def subscription(receiver: Receiver, path: str, criteria: str, *, payload: bool = True,
                 headers: list[str] | None = None) -> dict:
    channel = {"type": "rest-hook", "endpoint": receiver.url + path}
    if payload:
        channel["payload"] = "application/fhir+json"
    if headers:
        channel["header"] = headers
    return {"resourceType": "Subscription", "status": "requested", "reason": "test", "criteria": criteria,
            "channel": channel}


def subscribe(fhir, body: dict) -> dict:
    answer = fhir.post("/Subscription", json=body)
    assert answer.status_code == 201, answer.text
    return answer.json()


def patient(family: str, gender: str = "female") -> dict:
    return {"resourceType": "Patient", "name": [{"family": family}], "gender": gender}


def test_a_requested_subscription_becomes_active_and_matching_writes_are_posted(fhir, receiver):
    tag = uuid.uuid4().hex[:8]
    sub = subscribe(fhir, subscription(receiver, f"/{tag}", f"Patient?family=fam{tag}&gender=female",
                                       headers=["Authorization: Bearer secret-" + tag, "X-Tag: " + tag]))
    assert sub["status"] == "active"
    matching = fhir.post("/Patient", json=patient(f"fam{tag}")).json()
    fhir.post("/Patient", json=patient(f"fam{tag}", "male"))  # criteria not met
    fhir.post("/Patient", json=patient(f"other{tag}"))  # criteria not met
    got = receiver.wait(f"/{tag}", 1)
    assert got[0].headers["authorization"] == f"Bearer secret-{tag}" and got[0].headers["x-tag"] == tag
    assert got[0].headers["content-type"].startswith("application/fhir+json")
    assert json.loads(got[0].body)["id"] == matching["id"]
    updated = {**matching, "birthDate": "1970-01-01"}
    assert fhir.put(f"/Patient/{matching['id']}", json=updated).status_code == 200
    got = receiver.wait(f"/{tag}", 2)
    assert [json.loads(r.body)["meta"]["versionId"] for r in got] == ["1", "2"]
    time.sleep(1)  # nothing else comes
    assert len(receiver.on(f"/{tag}")) == 2


def test_writes_inside_a_transaction_are_notified_in_order_and_empty_payload_is_empty(fhir, receiver):
    tag = uuid.uuid4().hex[:8]
    subscribe(fhir, subscription(receiver, f"/{tag}", f"Patient?family=fam{tag}", payload=False))
    entries = [{"resource": {**patient(f"fam{tag}"), "id": f"{tag}-{i}"},
                "request": {"method": "PUT", "url": f"Patient/{tag}-{i}"}} for i in range(3)]
    answer = fhir.post("/", json={"resourceType": "Bundle", "type": "transaction", "entry": entries})
    assert answer.status_code == 200, answer.text
    got = receiver.wait(f"/{tag}", 3)
    assert all(r.body == b"" for r in got)
    time.sleep(1)
    assert len(receiver.on(f"/{tag}")) == 3


def test_an_off_subscription_is_not_notified(fhir, receiver):
    tag = uuid.uuid4().hex[:8]
    sub = subscribe(fhir, subscription(receiver, f"/{tag}", f"Patient?family=fam{tag}"))
    assert fhir.put(f"/Subscription/{sub['id']}", json={**sub, "status": "off"}).json()["status"] == "off"
    fhir.post("/Patient", json=patient(f"fam{tag}"))
    time.sleep(2)
    assert receiver.on(f"/{tag}") == []


def test_a_failing_endpoint_is_retried_until_it_takes_the_notification(fhir, receiver):
    tag = uuid.uuid4().hex[:8]
    subscribe(fhir, subscription(receiver, f"/{tag}", f"Patient?family=fam{tag}"))
    receiver.status = 500
    try:
        first = fhir.post("/Patient", json=patient(f"fam{tag}")).json()
        second = fhir.post("/Patient", json=patient(f"fam{tag}")).json()
        time.sleep(0.5)  # an attempt or two fail
    finally:
        receiver.status = 200
    got = receiver.wait(f"/{tag}", 2)
    assert [json.loads(r.body)["id"] for r in got] == [first["id"], second["id"]]  # in the order of the writes


def test_an_endpoint_that_keeps_failing_puts_the_subscription_in_error(fhir, receiver):
    tag = uuid.uuid4().hex[:8]
    sub = subscribe(fhir, subscription(receiver, "/never", f"Patient?family=fam{tag}"))
    sub = {**sub, "channel": {**sub["channel"], "endpoint": "http://127.0.0.1:9/closed"}}
    assert fhir.put(f"/Subscription/{sub['id']}", json=sub).status_code == 200
    fhir.post("/Patient", json=patient(f"fam{tag}"))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        now = fhir.get(f"/Subscription/{sub['id']}").json()
        if now["status"] == "error":
            break
        time.sleep(0.2)
    assert now["status"] == "error" and "failed 4 times" in now["error"]


def test_criteria_the_server_cannot_evaluate_are_refused(fhir, receiver):
    for criteria, status in (("Patient?no-such-param=1", 400), ("NoSuchType?x=1", 422), ("", 400),
                             ("Patient?_sort=name", 400)):
        answer = fhir.post("/Subscription", json=subscription(receiver, "/x", criteria))
        assert answer.status_code == status, (criteria, answer.text)
        issue = answer.json()["issue"][0]
        assert issue["expression"] == ["Subscription.criteria"], issue


def test_only_rest_hook_is_supported(fhir, receiver):
    body = subscription(receiver, "/x", "Patient?gender=male")
    body["channel"] = {"type": "websocket"}
    answer = fhir.post("/Subscription", json=body)
    assert answer.status_code == 422
    issue = answer.json()["issue"][0]
    assert issue["expression"] == ["Subscription.channel.type"] and "rest-hook" in issue["diagnostics"]


def test_the_capability_statement_lists_the_channel_types(fhir):
    statement = fhir.get("/metadata").json()
    entry = next(r for r in statement["rest"][0]["resource"] if r["type"] == "Subscription")
    assert "channel types supported: rest-hook" in entry["documentation"]
