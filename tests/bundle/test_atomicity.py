"""A failing transaction leaves the database exactly as it was: every document of every
collection of the embedded database compared before and after (read with pymongo, never written),
and the system history through HTTP.

The failing entry is always the LAST one, after entries of every kind that would have written
(create, update, delete, patch, conditional update, a type never stored before). Failures are
tried both before the database is touched (a structurally invalid resource) and inside the
MongoDB transaction (version conflict, unresolvable references, patch failures, several
matches), and — with the embedded database's `failCommand` fail point — at every single write
command of the commit.
"""

from __future__ import annotations

import base64
import json

import httpx
import pytest

from .support import (
    FHIR_JSON,
    assert_error,
    dump,
    dump_difference,
    entry,
    location,
    mongo,
    new_id,
    response_bundle,
    start_server,
    status,
    system,
    system_history,
    transact,
    urn,
)


@pytest.fixture(scope="module")
def txn_server(tmp_path_factory, r4_examples):
    # no audit trail: its writes would take the faults meant for the transaction's writes
    running = start_server(tmp_path_factory.mktemp("atomicity"), extra_env={"FHIR_EMBEDDED_TEST_COMMANDS": "1",
                                                                             "FHIR_AUDIT": "false"})
    yield running
    running.stop()


@pytest.fixture(scope="module")
def db(txn_server):
    with mongo(txn_server) as client:
        yield client


@pytest.fixture
def http(txn_server):
    with httpx.Client(base_url=txn_server.base_url, timeout=120, headers={"Accept": FHIR_JSON}) as c:
        yield c


def _patient(**fields):
    return {"resourceType": "Patient", **fields}


def _ident(sys_: str, value: str) -> dict:
    return {"identifier": [{"system": sys_, "value": value}]}


def _prepared(http) -> dict[str, str]:
    """Resources the transaction's leading entries update, delete and patch."""
    s = system()
    ids = {"update": new_id(), "delete": new_id(), "patch": new_id(), "cond": new_id(), "other": new_id(),
           "system": s}
    for key in ("update", "delete", "patch", "other"):
        r = http.put(f"/Patient/{ids[key]}", json=_patient(id=ids[key], active=True))
        assert r.status_code == 201, r.text
    r = http.put(f"/Patient/{ids['cond']}", json=_patient(id=ids["cond"], **_ident(s, "cond")))
    assert r.status_code == 201, r.text
    r = http.post("/Practitioner", json={"resourceType": "Practitioner", **_ident(s, "npi")})
    assert r.status_code == 201, r.text
    return ids


def _leading(ids: dict[str, str]) -> list[dict]:
    """Entries that all succeed on their own, of every kind."""
    s = ids["system"]
    pat = urn()
    binary = {"resourceType": "Binary", "contentType": "application/json-patch+json",
              "data": base64.b64encode(json.dumps([{"op": "replace", "path": "/active", "value": False}]).encode()
                                       ).decode()}
    return [
        entry("POST", "Patient", _patient(**_ident(s, "new")), pat),
        entry("POST", "Observation", {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                                      "subject": {"reference": pat},
                                      "performer": [{"reference": f"Practitioner?identifier={s}|npi"}]}, urn()),
        entry("POST", "Basic", {"resourceType": "Basic", "code": {"text": "first Basic ever"},
                                "subject": {"reference": pat}}, urn(), ifNoneExist=f"identifier={s}|basic"),
        entry("PUT", f"Patient/{ids['update']}", _patient(id=ids["update"], active=False,
                                                          generalPractitioner=[{"reference": pat}])),
        entry("DELETE", f"Patient/{ids['delete']}"),
        entry("PATCH", f"Patient/{ids['patch']}", binary),
        entry("PUT", f"Patient?identifier={s}|cond", _patient(gender="other", **_ident(s, "cond"))),
        entry("PUT", f"Device/{new_id()}", None),
    ]


def _finish(entries: list[dict]) -> list[dict]:
    device = entries[-1]
    device["resource"] = {"resourceType": "Device", "id": device["request"]["url"].split("/")[1]}
    return entries


def _fhirpath_patch(op: str, path: str, **value) -> dict:
    parts = [{"name": "type", "valueCode": op}, {"name": "path", "valueString": path}]
    if value:
        parts.append({"name": "value", **value})
    return {"resourceType": "Parameters", "parameter": [{"name": "operation", "part": parts}]}


LAST = {
    # before the database: structural validation
    "invalid resource": (400, lambda ids: entry("POST", "Patient", _patient(birthDate="yesterday"), urn())),
    # inside the transaction
    "ifMatch conflict": (412, lambda ids: entry("PUT", f"Patient/{ids['other']}", _patient(id=ids["other"]),
                                                urn(), ifMatch='W/"5"')),
    "unknown urn reference": (400, lambda ids: entry("POST", "Observation", {
        "resourceType": "Observation", "status": "final", "code": {"text": "x"},
        "subject": {"reference": urn()}}, urn())),
    "conditional reference without match": ((400, 404), lambda ids: entry("POST", "Observation", {
        "resourceType": "Observation", "status": "final", "code": {"text": "x"},
        "subject": {"reference": f"Patient?identifier={ids['system']}|nobody"}}, urn())),
    "patch test fails": (422, lambda ids: entry("PATCH", f"Patient/{ids['other']}", {
        "resourceType": "Binary", "contentType": "application/json-patch+json",
        "data": base64.b64encode(b'[{"op": "test", "path": "/active", "value": false}]').decode()}, urn())),
    "patched resource invalid": (422, lambda ids: entry("PATCH", f"Patient/{ids['other']}", _fhirpath_patch(
        "add", "Patient", valueString="x"), urn())),
    "patch of a deleted resource": (410, lambda ids: entry("PATCH", f"Patient/{ids['gone']}", _fhirpath_patch(
        "replace", "Patient.active", valueBoolean=True), urn())),
    "conditional update with two matches": (412, lambda ids: entry(
        "PUT", f"Patient?identifier={ids['system']}|twice", _patient(**_ident(ids["system"], "twice")), urn())),
}


@pytest.mark.parametrize("failure", list(LAST))
def test_a_failing_last_entry_leaves_the_database_as_it_was(txn_server, db, http, failure):
    ids = _prepared(http)
    gone = new_id()
    assert http.put(f"/Patient/{gone}", json=_patient(id=gone)).status_code == 201
    assert http.delete(f"/Patient/{gone}").status_code in (200, 204)
    ids["gone"] = gone
    for _ in range(2):
        assert http.post("/Patient", json=_patient(**_ident(ids["system"], "twice"))).status_code == 201
    expected_status, make_last = LAST[failure]
    if failure == "patched resource invalid":  # an `add` of an element the Patient does not have
        last = make_last(ids)
        last["resource"]["parameter"][0]["part"].insert(2, {"name": "name", "valueString": "colour"})
    else:
        last = make_last(ids)
    entries = _finish(_leading(ids)) + [last]
    history_before = system_history(http)
    before = dump(db)
    response = transact(http, txn_server.base_url, entries)
    text = assert_error(response, expected_status)
    assert f"entry {len(entries) - 1}" in text and last["fullUrl"] in text, text
    after = dump(db)
    assert after == before, dump_difference(before, after)
    assert system_history(http) == history_before
    # the same transaction without its last entry succeeds: the failure was that entry's alone
    ok = response_bundle(transact(http, txn_server.base_url, _finish(_leading(ids))), "transaction-response", 8)
    assert all(200 <= status(i) < 300 for i in ok), ok


def test_a_failure_at_any_write_of_the_commit_leaves_the_database_as_it_was(txn_server, db, http):
    """The `failCommand` fail point fails the n-th write command (insert/update/delete) the
    server sends, for n = 1, 2, … until the transaction gets through: whichever statement of the
    commit fails, nothing of the transaction stays."""
    failed_at = []
    for n in range(60):
        ids = _prepared(http)
        entries = _finish(_leading(ids))
        history_before = system_history(http)
        before = dump(db)
        db.admin.command({"configureFailPoint": "failCommand", "mode": {"skip": n, "times": 1},
                          "data": {"failCommands": ["insert", "update", "delete", "findAndModify", "bulkWrite",
                                                   "commitTransaction"],
                                   "errorCode": 8, "errorLabels": [], "appName": "fhir-server"}})
        try:
            response = transact(http, txn_server.base_url, entries)
        finally:
            db.admin.command({"configureFailPoint": "failCommand", "mode": "off"})
        if response.status_code == 200:
            break
        assert_error(response, (500, 503))
        failed_at.append(n)
        after = dump(db)
        assert after == before, f"write command {n + 1} failed:\n{dump_difference(before, after)}"
        assert system_history(http) == history_before
    else:
        pytest.fail("the transaction never got through")
    # it did fail at each write until it got through; then everything is there
    assert failed_at == list(range(len(failed_at))) and len(failed_at) >= 2, failed_at
    items = response_bundle(response, "transaction-response", 8)
    assert [status(i) for i in items][:4] == [201, 201, 201, 200]
    assert location(items[3])[1:] == (ids["update"], 2)
    assert http.get(f"/Patient/{ids['delete']}").status_code == 410
    assert http.get(f"/Patient/{ids['patch']}").json()["active"] is False
