"""The Task state machine on every write: allowed moves pass, impossible ones are 422."""

from __future__ import annotations

import uuid

import pytest

JSON_PATCH = {"Content-Type": "application/json-patch+json"}


def task(client, status: str) -> str:
    id_ = f"t-{uuid.uuid4().hex[:12]}"
    r = client.put(f"/Task/{id_}", json={"resourceType": "Task", "id": id_, "status": status, "intent": "order"})
    assert r.status_code == 201, r.text
    return id_


def move(client, id_: str, status: str):
    return client.patch(f"/Task/{id_}", content=f'[{{"op": "replace", "path": "/status", "value": "{status}"}}]',
                        headers=JSON_PATCH)


@pytest.mark.parametrize("path", [
    ["requested", "received", "accepted", "in-progress", "on-hold", "in-progress", "completed"],
    ["draft", "requested", "ready", "in-progress", "failed"],
    ["requested", "rejected"],
    ["requested", "in-progress", "cancelled"],
    ["completed", "entered-in-error"],
])
def test_allowed_paths(client, path):
    id_ = task(client, path[0])
    for status in path[1:]:
        r = move(client, id_, status)
        assert r.status_code == 200, (status, r.text)
        assert r.json()["status"] == status


@pytest.mark.parametrize("start,to", [
    ("completed", "in-progress"), ("cancelled", "requested"), ("draft", "completed"), ("requested", "completed"),
    ("rejected", "accepted"), ("on-hold", "completed"),
])
def test_impossible_moves_are_refused_and_nothing_changes(client, start, to):
    id_ = task(client, start)
    r = move(client, id_, to)
    assert r.status_code == 422, r.text
    issue = r.json()["issue"][0]
    assert issue["code"] == "business-rule" and issue["expression"] == ["Task.status"]
    assert repr(start) in issue["diagnostics"] and repr(to) in issue["diagnostics"]
    current = client.get(f"/Task/{id_}").json()
    assert current["status"] == start and current["meta"]["versionId"] == "1"


def test_put_and_transactions_follow_the_same_rules(client, base_url):
    id_ = task(client, "completed")
    r = client.put(f"/Task/{id_}", json={"resourceType": "Task", "id": id_, "status": "in-progress", "intent": "order"})
    assert r.status_code == 422
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [{
        "resource": {"resourceType": "Task", "id": id_, "status": "requested", "intent": "order"},
        "request": {"method": "PUT", "url": f"Task/{id_}"}}]}
    r = client.post(base_url, json=bundle)
    assert r.status_code == 422 and "entry 0" in r.json()["issue"][0]["diagnostics"]
    assert client.get(f"/Task/{id_}").json()["meta"]["versionId"] == "1"


def test_a_new_task_may_start_anywhere_and_other_changes_keep_the_status(client):
    id_ = task(client, "in-progress")
    r = client.patch(f"/Task/{id_}", content=b'[{"op": "add", "path": "/description", "value": "x"}]', headers=JSON_PATCH)
    assert r.status_code == 200 and r.json()["status"] == "in-progress"
