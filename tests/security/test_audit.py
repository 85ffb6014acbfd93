"""The audit trail through HTTP, with tokens from a real OpenID provider: every request, bundle
entry and refusal leaves exactly one AuditEvent in the BALP shape, naming the user, the client,
its address, the request id and the patients concerned; AuditEvents are searchable with an audit
scope only, can never be changed or deleted, and none is lost on a clean stop."""

from __future__ import annotations

import base64
import time
import uuid

import httpx
import pytest

from tests.conftest import start_server
from tests.oidc.provider import Client
from tests.robustness.support import fail_point, mongo
from tests.security.conftest import AUDIENCE, bearer

# the records written here belong to no care team: what is tested is the trail, not the équipe de soins rule
SERVER_ENV = {"FHIR_EMBEDDED_TEST_COMMANDS": "1", "FHIR_ACCESS_RULE": "scopes"}
AUDITOR = "system/AuditEvent.rs"
CLIENTS = [
    Client("ehr", scope=["user/*.cruds"], claims={"fhirUser": "Practitioner/gp-audit"}),
    Client("auditor", scope=[AUDITOR, "system/AuditEvent.cruds"]),
    Client("backend", scope=["system/*.cruds"]),
]


@pytest.fixture(scope="module")
def ehr(provider) -> dict[str, str]:
    return bearer(provider.token("ehr", scope="user/*.cruds"))


@pytest.fixture(scope="module")
def auditor(provider) -> dict[str, str]:
    return bearer(provider.token("auditor", scope=AUDITOR))


def events_of(http: httpx.Client, auditor: dict[str, str], request_id: str, expected: int,
              timeout: float = 15) -> list[dict]:
    """The AuditEvents naming `request_id`, once `expected` of them are there (the trail writes
    within a second); then a little longer, to be sure no more come."""
    deadline = time.monotonic() + timeout
    while True:
        bundle = http.get("/AuditEvent", params={"entity:identifier": request_id, "_count": 100}, headers=auditor).json()
        found = [e["resource"] for e in bundle.get("entry", ()) if e["search"]["mode"] == "match"]
        if len(found) >= expected or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    if len(found) == expected:
        time.sleep(1.2)
        again = http.get("/AuditEvent", params={"entity:identifier": request_id, "_count": 100}, headers=auditor).json()
        found = [e["resource"] for e in again.get("entry", ()) if e["search"]["mode"] == "match"]
    return found


def patients(event: dict) -> set[str]:
    return {e["what"]["reference"] for e in event.get("entity", ())
            if e.get("role", {}).get("code") == "1" and "what" in e}


def subtype(event: dict) -> str | None:
    return (event.get("subtype") or [{}])[0].get("code")


def agent(event: dict, code: str) -> dict:
    return next(a for a in event["agent"] if a["type"]["coding"][0]["code"] == code)


def resource(http, headers, type_, body, **extra) -> dict:
    created = http.post(f"/{type_}", json={"resourceType": type_, **body}, headers={**headers, **extra})
    assert created.status_code == 201, created.text
    return created.json()


def test_a_scripted_sequence_of_requests_leaves_one_event_each_with_the_right_patients(http, ehr, auditor,
                                                                                       provider):
    """Each request of the script carries its own X-Request-Id; each leaves one event."""
    a = resource(http, ehr, "Patient", {"name": [{"family": "Audit-A"}]})["id"]
    b = resource(http, ehr, "Patient", {"name": [{"family": "Audit-B"}]})["id"]
    obs = {"resourceType": "Observation", "status": "final", "code": {"text": "weight"},
           "subject": {"reference": f"Patient/{a}"}}
    run = uuid.uuid4().hex[:8]
    # (method, path, body, extra headers, subtype, action, outcome, patients)
    script = [
        ("POST", "/Observation", obs, {"Prefer": "return=minimal"}, "create", "C", "0", {a}),
        ("GET", "/Observation/{obs}", None, {}, "read", "R", "0", {a}),
        ("GET", "/Observation/{obs}/_history/1", None, {}, "vread", "R", "0", {a}),
        ("GET", f"/Observation?subject=Patient/{a}", None, {}, "search-type", "E", "0", {a}),
        ("GET", f"/Patient?_id={a},{b}", None, {}, "search-type", "E", "0", {a, b}),
        ("PUT", "/Observation/{obs}", {**obs, "status": "amended"}, {}, "update", "U", "0", {a}),
        ("PATCH", "/Observation/{obs}", [{"op": "replace", "path": "/status", "value": "final"}],
         {"Content-Type": "application/json-patch+json"}, "patch", "U", "0", {a}),
        ("GET", "/Observation/{obs}/_history", None, {}, "history-instance", "R", "0", {a}),
        ("GET", f"/Patient/{a}/$everything", None, {}, "operation", "E", "0", {a}),
        ("DELETE", "/Observation/{obs}", None, {"Prefer": "return=minimal"}, "delete", "D", "0", {a}),
        ("GET", "/Patient/does-not-exist", None, {}, "read", "R", "4", {"does-not-exist"}),
        ("PUT", f"/Patient/{b}", {"resourceType": "Patient", "id": b, "birthDate": "not a date"}, {},
         "update", "U", "4", {b}),
        ("GET", "/Observation", None, {"Authorization": "Bearer not-a-token"}, None, "R", "4", set()),
        ("GET", f"/Patient/{a}", None, {"Authorization": "Bearer " + provider.mint.token(scope="system/Group.rs")},
         "read", "R", "4", {a}),
    ]
    ids = {}
    for i, (method, path, body, headers, *_) in enumerate(script):
        request_id = f"audit-{run}-{i}"
        url = path.format(obs=ids.get("obs", "x"))
        if method == "PUT" and url.startswith("/Observation/"):
            body = {**body, "id": ids["obs"]}
        sent = {"Content-Type": "application/fhir+json", **ehr, **headers, "X-Request-Id": request_id}
        kwargs = {"content": httpx.Request("POST", "/", json=body).content} if body is not None else {}
        r = http.request(method, url, headers=sent, **kwargs)
        assert r.headers["x-request-id"] == request_id
        if i == 0:
            ids["obs"] = r.headers["location"].split("/Observation/")[1].split("/")[0]
    for i, (method, path, _, _headers, code, action, outcome, concerned) in enumerate(script):
        found = events_of(http, auditor, f"audit-{run}-{i}", 1)
        assert len(found) == 1, (i, method, path, found)
        event = found[0]
        assert event["type"]["code"] == "rest"
        assert (subtype(event), event["action"], event["outcome"]) == (code, action, outcome), (i, path, event)
        assert patients(event) == {f"Patient/{p}" for p in concerned}, (i, path, event)
        client = agent(event, "110153")
        assert client["network"]["address"] == "127.0.0.1"
        if outcome == "0":
            assert client["who"]["identifier"] == {"system": "urn:ietf:params:oauth:client-id", "value": "ehr"}
            user = agent(event, "humanuser")
            assert user["who"]["reference"] == "Practitioner/gp-audit" and user["requestor"] is True
        else:
            assert event["outcomeDesc"].startswith(("4", "401", "403", "404"))
        if code in ("search-type", "operation"):
            query = next(e for e in event["entity"] if e.get("role", {}).get("code") == "24")
            assert base64.b64decode(query["query"]).decode().startswith(f"{method} {path.lstrip('/')}")


def test_a_bundle_leaves_one_event_for_itself_and_one_per_entry(http, ehr, auditor):
    a = resource(http, ehr, "Patient", {"name": [{"family": "Bundle"}]})["id"]
    request_id = f"bundle-{uuid.uuid4().hex[:8]}"
    transaction = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"request": {"method": "POST", "url": "Observation"}, "resource": {
            "resourceType": "Observation", "status": "final", "code": {"text": "t"},
            "subject": {"reference": f"Patient/{a}"}}},
        {"request": {"method": "GET", "url": f"Patient/{a}"}}]}
    assert http.post("/", json=transaction, headers={**ehr, "X-Request-Id": request_id}).status_code == 200
    found = events_of(http, auditor, request_id, 3)
    assert sorted(subtype(e) for e in found) == ["create", "read", "transaction"]
    assert all(patients(e) == {f"Patient/{a}"} for e in found), found
    entries = [e for e in found if subtype(e) != "transaction"]
    assert all("Bundle.entry[" in next(x["description"] for x in e["entity"] if x["type"]["code"] == "XrequestId")
               for e in entries)
    batch = {"resourceType": "Bundle", "type": "batch", "entry": [
        {"request": {"method": "GET", "url": f"Patient/{a}"}},
        {"request": {"method": "DELETE", "url": "AuditEvent/anything"}}]}
    request_id = f"batch-{uuid.uuid4().hex[:8]}"
    assert http.post("/", json=batch, headers={**ehr, "X-Request-Id": request_id}).status_code == 200
    found = events_of(http, auditor, request_id, 3)
    assert sorted((subtype(e), e["outcome"]) for e in found) == [("batch", "0"), ("delete", "4"), ("read", "0")]


def test_audit_events_are_searchable_with_an_audit_scope_only(http, ehr, auditor, provider):
    a = resource(http, ehr, "Patient", {"name": [{"family": "Searched"}]})["id"]
    request_id = f"search-{uuid.uuid4().hex[:8]}"
    assert http.get(f"/Patient/{a}", headers={**ehr, "X-Request-Id": request_id}).status_code == 200
    event = events_of(http, auditor, request_id, 1)[0]
    for params in ({"patient": a}, {"entity": f"Patient/{a}"}, {"agent": "Practitioner/gp-audit"},
                   {"outcome": "0"}, {"subtype": "read"}, {"date": f"ge{event['recorded'][:10]}"},
                   {"agent:identifier": "urn:ietf:params:oauth:client-id|ehr"}):
        bundle = http.get("/AuditEvent", params={**params, "_count": 1000}, headers=auditor).json()
        assert event["id"] in {e["resource"]["id"] for e in bundle.get("entry", ())}, params
    failures = http.get("/AuditEvent", params={"outcome": "4", "_count": 1000}, headers=auditor).json()
    assert event["id"] not in {e["resource"]["id"] for e in failures.get("entry", ())}
    # a token for everything but the audit trail does not reach it
    for headers in (ehr, bearer(provider.token("backend", scope="system/*.cruds"))):
        assert http.get("/AuditEvent", headers=headers).status_code == 403
        assert http.get(f"/AuditEvent/{event['id']}", headers=headers).status_code == 403
        system = http.get("/", params={"_type": "AuditEvent,Patient", "_id": event["id"]}, headers=headers).json()
        assert all(e["resource"]["resourceType"] != "AuditEvent" for e in system.get("entry", ()))
        everything = http.get(f"/Patient/{a}/$everything", headers=headers).json()
        assert all(e["resource"]["resourceType"] != "AuditEvent" for e in everything.get("entry", ()))
        assert http.get("/_history", headers=headers).status_code == 403  # it would list AuditEvents
    assert http.get(f"/AuditEvent/{event['id']}", headers=auditor).json()["id"] == event["id"]


def test_audit_events_can_never_be_changed_or_deleted(http, ehr, auditor, provider):
    request_id = f"immutable-{uuid.uuid4().hex[:8]}"
    http.get("/metadata", headers={"X-Request-Id": request_id})
    event = events_of(http, auditor, request_id, 1)[0]
    writer = bearer(provider.token("auditor", scope="system/AuditEvent.cruds"))
    changed = {**event, "outcome": "8"}
    for method, path, body, extra in [
            ("PUT", f"/AuditEvent/{event['id']}", changed, {}),
            ("PATCH", f"/AuditEvent/{event['id']}", [{"op": "replace", "path": "/outcome", "value": "8"}],
             {"Content-Type": "application/json-patch+json"}),
            ("DELETE", f"/AuditEvent/{event['id']}", None, {}),
            ("DELETE", "/AuditEvent?outcome=0", None, {}),
            ("PUT", f"/AuditEvent?_id={event['id']}", changed, {})]:
        r = http.request(method, path, headers={"Content-Type": "application/fhir+json", **writer, **extra},
                         content=httpx.Request("POST", "/", json=body).content if body is not None else None)
        assert r.status_code == 405, (method, path, r.text)
        assert r.json()["resourceType"] == "OperationOutcome"
    transaction = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"request": {"method": "DELETE", "url": f"AuditEvent/{event['id']}"}}]}
    assert http.post("/", json=transaction, headers=writer).status_code == 405
    again = http.get(f"/AuditEvent/{event['id']}", headers=auditor).json()
    assert again == event
    # a client may record its own events (IHE ATNA / BALP), which are then just as fixed
    own = {k: v for k, v in event.items() if k not in ("id", "meta")}
    created = http.post("/AuditEvent", json=own, headers=writer)
    assert created.status_code == 201, created.text
    assert http.delete(f"/AuditEvent/{created.json()['id']}", headers=writer).status_code == 405
    # or with an id of its own (records kept elsewhere first): PUT creates, and only creates
    own_id = f"kept-elsewhere-{uuid.uuid4().hex[:8]}"
    assert http.put(f"/AuditEvent/{own_id}", json={**own, "id": own_id}, headers=writer).status_code == 201
    again = http.put(f"/AuditEvent/{own_id}", json={**own, "id": own_id, "outcome": "8"}, headers=writer)
    assert again.status_code == 405, again.text
    assert http.get(f"/AuditEvent/{own_id}", headers=auditor).json()["outcome"] == own["outcome"]


def test_events_the_database_refuses_are_kept_and_written_later(http, ehr, auditor, secured):
    """The audit trail's inserts fail for a while (reads go on being served): the events wait
    and are all written once the database takes them again."""
    run = uuid.uuid4().hex[:8]
    a = resource(http, ehr, "Patient", {"name": [{"family": "Refused"}]})["id"]
    with mongo(secured) as client:
        with fail_point(client, ["insert"], "alwaysOn", errorCode=8, errorLabels=[]):
            for i in range(5):
                r = http.get(f"/Patient/{a}", headers={**ehr, "X-Request-Id": f"refused-{run}-{i}"})
                assert r.status_code == 200, r.text
            time.sleep(2)  # the writer tries, and fails, more than once
    for i in range(5):
        assert len(events_of(http, auditor, f"refused-{run}-{i}", 1)) == 1, i


def test_none_is_lost_on_a_clean_stop(provider, tmp_path, r4_examples):
    server = start_server(tmp_path / "stopping", extra_env={
        "FHIR_AUTH_ISSUER": provider.issuer, "FHIR_AUTH_AUDIENCE": AUDIENCE})
    token = bearer(provider.token("ehr", scope="user/*.cruds"))
    run = uuid.uuid4().hex[:8]
    try:
        with httpx.Client(base_url=server.base_url, timeout=60) as c:
            for i in range(40):
                c.get("/Patient", params={"_count": 1}, headers={**token, "X-Request-Id": f"stop-{run}-{i}"})
    finally:
        server.stop()  # at once: most of these are still queued
    again = start_server(tmp_path / "stopping", extra_env={
        "FHIR_AUTH_ISSUER": provider.issuer, "FHIR_AUTH_AUDIENCE": AUDIENCE})
    try:
        with httpx.Client(base_url=again.base_url, timeout=60) as c:
            auditor = bearer(provider.token("auditor", scope=AUDITOR))
            for i in range(40):
                found = c.get("/AuditEvent", params={"entity:identifier": f"stop-{run}-{i}"}, headers=auditor).json()
                assert found["total"] == 1, (i, found)
    finally:
        again.stop()
