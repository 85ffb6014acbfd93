"""Database faults under a running server: failing commands, transient errors, the database gone.

A dedicated server runs its embedded database with test commands (FHIR_EMBEDDED_TEST_COMMANDS=1);
the test connects to that database with pymongo (only to look, and to set the `failCommand` fail
point on the server's own connections, appName `fhir-server`) and checks, for every kind of write:

- a command that fails inside the write's transaction (any insert/update, or the commit itself)
  leaves every collection and the history exactly as they were, and the client gets a clean 5xx
  OperationOutcome — never a 200 for a write that was not done, never a stack trace;
- an error labelled TransientTransactionError is retried by the server: the write succeeds, once;
- the database killed (and held down) under the server: writes and transaction bundles answer 503
  with Retry-After and leave nothing; the server recovers on its own; a transaction caught by the
  crash is all there or not at all. (tests/lifecycle/test_db_outage.py covers reads, single writes
  and recovery; tests/bundle/test_atomicity.py a failure at each write of a transaction.)
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from lifecycle.support import HoldDown, db_processes, wait_until

from .support import (
    FHIR_JSON,
    JSON_PATCH,
    assert_clean,
    assert_outcome,
    client,
    dump,
    dump_difference,
    embedded_port,
    fail_point,
    history,
    mongo,
    new_id,
    start_server,
    system,
)

WRITE_COMMANDS = ["insert", "update", "delete", "findAndModify", "bulkWrite", "commitTransaction"]


@pytest.fixture(scope="module")
def server(tmp_path_factory, r4_examples):
    running = start_server(tmp_path_factory.mktemp("faults"),
                           # no audit trail: its writes would take the faults meant for the writes under test
                           extra_env={"FHIR_EMBEDDED_TEST_COMMANDS": "1", "FHIR_DB_TIMEOUT_MS": "1500",
                                      "FHIR_AUDIT": "false"})
    yield running
    running.stop()


@pytest.fixture
def db(server):
    with mongo(server) as c:
        yield c


@pytest.fixture
def http(server):
    with client(server) as c:
        yield c


# -- one write of each kind, and what it must have done when it succeeds ---------------------------
@dataclass
class Write:
    name: str
    send: Callable[[httpx.Client], httpx.Response]
    check: Callable[[httpx.Client, httpx.Response], None]  # the effect, exactly once


def _base(http: httpx.Client) -> str:
    """The base URL exactly (POST [base] for bundles, without the trailing slash httpx adds)."""
    return str(http.base_url).rstrip("/")


def _put(http: httpx.Client, ref: str, **fields: Any) -> dict:
    response = http.put(f"/{ref}", json={"resourceType": ref.split("/")[0], "id": ref.split("/")[1], **fields})
    assert response.status_code == 201, response.text
    return response.json()


def _one_match(http: httpx.Client, type_: str, identifier: str) -> dict:
    found = http.get(f"/{type_}", params={"identifier": identifier})
    assert found.status_code == 200, found.text
    entries = found.json().get("entry", [])
    assert len(entries) == 1, f"{len(entries)} {type_} match {identifier}: written {len(entries)} times?"
    return entries[0]["resource"]


def make_write(kind: str, http: httpx.Client) -> Write:
    """A fresh write of `kind` (its preconditions set up), and the check of its effect."""
    sys_ = system()
    ref = f"Patient/{new_id('fault')}"
    if kind in ("update", "patch", "delete", "transaction"):
        _put(http, ref, active=True)

    def versions_are(expected: list[int]) -> Callable[[httpx.Client, httpx.Response], None]:
        def check(c: httpx.Client, response: httpx.Response) -> None:
            assert sorted(history(c, ref)) == expected
        return check

    if kind == "create":
        def check_create(c: httpx.Client, response: httpx.Response) -> None:
            assert response.status_code == 201
            created = _one_match(c, "Patient", f"{sys_}|x")
            assert created["id"] == response.json()["id"] and list(history(c, f"Patient/{created['id']}")) == [1]
        return Write(kind, lambda c: c.post("/Patient", json={"resourceType": "Patient",
                                                               "identifier": [{"system": sys_, "value": "x"}]}),
                     check_create)
    if kind == "conditional-create":
        def check_conditional(c: httpx.Client, response: httpx.Response) -> None:
            assert response.status_code == 201
            assert _one_match(c, "Patient", f"{sys_}|x")["id"] == response.json()["id"]
        return Write(kind, lambda c: c.post("/Patient", json={"resourceType": "Patient",
                                                               "identifier": [{"system": sys_, "value": "x"}]},
                                            headers={"If-None-Exist": f"identifier={sys_}|x"}), check_conditional)
    if kind == "update":
        def check_update(c: httpx.Client, response: httpx.Response) -> None:
            assert response.status_code == 200 and response.json()["active"] is False
            versions_are([1, 2])(c, response)
        return Write(kind, lambda c: c.put(f"/{ref}", json={"resourceType": "Patient", "id": ref.split("/")[1],
                                                             "active": False}), check_update)
    if kind == "patch":
        def check_patch(c: httpx.Client, response: httpx.Response) -> None:
            assert response.status_code == 200 and c.get(f"/{ref}").json()["active"] is False
            versions_are([1, 2])(c, response)
        return Write(kind, lambda c: c.patch(f"/{ref}", content=b'[{"op":"replace","path":"/active","value":false}]',
                                             headers={"Content-Type": JSON_PATCH}), check_patch)
    if kind == "delete":
        def check_delete(c: httpx.Client, response: httpx.Response) -> None:
            assert response.status_code == 200 and c.get(f"/{ref}").status_code == 410
            versions_are([1, 2])(c, response)
        return Write(kind, lambda c: c.delete(f"/{ref}"), check_delete)
    assert kind == "transaction"
    patient = f"urn:uuid:{uuid.uuid4()}"
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": patient, "resource": {"resourceType": "Patient", "identifier": [{"system": sys_, "value": "x"}]},
         "request": {"method": "POST", "url": "Patient"}},
        {"resource": {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                      "identifier": [{"system": sys_, "value": "obs"}], "subject": {"reference": patient}},
         "request": {"method": "POST", "url": "Observation"}},
        {"resource": {"resourceType": "Patient", "id": ref.split("/")[1], "active": False},
         "request": {"method": "PUT", "url": ref}},
    ]}

    def check_transaction(c: httpx.Client, response: httpx.Response) -> None:
        assert response.status_code == 200, response.text
        created = _one_match(c, "Patient", f"{sys_}|x")
        observation = _one_match(c, "Observation", f"{sys_}|obs")
        assert observation["subject"]["reference"] == f"Patient/{created['id']}"
        versions_are([1, 2])(c, response)
    return Write(kind, lambda c: c.post(_base(c), json=bundle, headers={"Content-Type": FHIR_JSON}), check_transaction)


KINDS = ["create", "conditional-create", "update", "patch", "delete", "transaction"]


def _system_history_count(http: httpx.Client) -> int:
    """Entries of the system history (`_history` over HTTP, following its pages)."""
    count = 0
    response = http.get("/_history", params={"_count": "1000", "_elements": "id"})
    while True:
        assert response.status_code == 200, response.text[:300]
        body = response.json()
        count += len(body.get("entry", []))
        nxt = [link["url"] for link in body.get("link", []) if link["relation"] == "next"]
        if not nxt:
            return count
        response = http.get(nxt[0])


# -- failing commands ------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
def test_a_command_failing_inside_the_write_leaves_nothing(server, db, http, kind):
    """The n-th insert/update/delete/commit of the write fails (a non-transient error), for
    n = 1, 2, … until the write gets through: each failure is a clean 500/503 and changes
    nothing; the attempt that gets through writes once."""
    failures = []
    for n in range(12):
        write = make_write(kind, http)
        history_before = _system_history_count(http)
        before = dump(db)
        with fail_point(db, WRITE_COMMANDS, {"skip": n, "times": 1}, errorCode=8):
            response = write.send(http)
        if response.status_code < 300:
            write.check(http, response)
            assert _system_history_count(http) > history_before
            break
        text = assert_outcome(response, (500, 503))
        failures.append((n, response.status_code, text))
        after = dump(db)
        assert after == before, f"{kind}: command {n + 1} failed, yet:\n{dump_difference(before, after)}"
        assert _system_history_count(http) == history_before
    else:
        pytest.fail(f"{kind} never got through: {failures}")
    # it failed at each command until the fail point fell past its last one (and the commit counts)
    assert [n for n, _, _ in failures] == list(range(len(failures))) and len(failures) >= 2, failures
    assert_no_stack_trace_in_responses(failures)


def assert_no_stack_trace_in_responses(failures: list[tuple[int, int, str]]) -> None:
    for _, _, text in failures:
        assert "Traceback" not in text and "pymongo" not in text, text


@pytest.mark.parametrize("commands", [["insert", "update", "bulkWrite"], ["commitTransaction"]], ids=["write", "commit"])
@pytest.mark.parametrize("kind", KINDS)
def test_transient_transaction_error_is_retried_and_written_once(server, db, http, kind, commands):
    for times in (1, 3):
        write = make_write(kind, http)
        history_before = _system_history_count(http)
        with fail_point(db, commands, {"times": times}, errorCode=112, errorLabels=["TransientTransactionError"]):
            response = write.send(http)
        assert response.status_code < 300, f"{kind}, {times} transient failure(s): {response.status_code} {response.text}"
        write.check(http, response)
        assert _system_history_count(http) == history_before + (3 if kind == "transaction" else 1)


@pytest.mark.parametrize("kind", ["create", "update", "transaction"])
def test_connection_lost_at_commit_is_retried_and_written_once(server, db, http, kind):
    """The connection closes when the commit is sent: the driver retries the commit once; the
    write is there exactly once and the client told so."""
    write = make_write(kind, http)
    history_before = _system_history_count(http)
    with fail_point(db, ["commitTransaction"], {"times": 1}, closeConnection=True):
        response = write.send(http)
    assert response.status_code < 300, response.text
    write.check(http, response)
    assert _system_history_count(http) == history_before + (3 if kind == "transaction" else 1)


@pytest.mark.parametrize("kind", ["create", "update", "transaction"])
def test_connection_lost_inside_the_transaction_leaves_nothing(server, db, http, kind):
    """The connection closes on a write inside the transaction: nothing stays, and the client
    gets a clean answer (a success written once, or a 503 with Retry-After)."""
    write = make_write(kind, http)
    before = dump(db)
    history_before = _system_history_count(http)
    with fail_point(db, ["insert", "update", "bulkWrite"], {"times": 1}, closeConnection=True):
        response = write.send(http)
    if response.status_code < 300:
        write.check(http, response)
        return
    assert_outcome(response, (503,))
    assert response.headers.get("Retry-After", "").isdigit()
    after = dump(db)
    assert after == before, dump_difference(before, after)
    assert _system_history_count(http) == history_before


@pytest.mark.parametrize("kind", ["create", "transaction"])
def test_connection_lost_inside_the_transaction_is_retried(server, db, http, kind):
    write = make_write(kind, http)
    with fail_point(db, ["insert", "update", "bulkWrite"], {"times": 1}, closeConnection=True):
        response = write.send(http)
    assert response.status_code < 300, f"{response.status_code} {response.text}"
    write.check(http, response)


# -- the database gone -----------------------------------------------------------------------------
def assert_unavailable(response: httpx.Response) -> None:
    assert_outcome(response, (503,))
    assert response.headers.get("Retry-After", "").isdigit(), response.headers


def _wait_for_database(http: httpx.Client, ref: str) -> None:
    def back() -> bool:
        response = http.get(f"/{ref}")
        assert_clean(response, ("Patient", "OperationOutcome"))
        return response.status_code == 200
    wait_until(back, 90, "the server answers again after the database restarted", interval=0.2)


def test_writes_and_bundles_during_an_outage_leave_nothing_and_the_server_recovers(server, db, http):
    sys_ = system()
    ref = f"Patient/{new_id('outage')}"
    original = _put(http, ref, active=True, identifier=[{"system": sys_, "value": "kept"}])
    server_pid = server.process.pid
    storage = server.data_dir / "db"
    old_db = db_processes(storage)
    assert len(old_db) == 1
    history_before = _system_history_count(http)
    pid_ = ref.split("/")[1]
    transaction = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:0f5c1a3e-0000-4000-8000-000000000001",
         "resource": {"resourceType": "Patient", "identifier": [{"system": sys_, "value": "new"}]},
         "request": {"method": "POST", "url": "Patient"}},
        {"resource": {"resourceType": "Patient", "id": pid_, "active": False}, "request": {"method": "PUT", "url": ref}},
    ]}
    batch = {**transaction, "type": "batch"}
    with client(server, timeout=20) as outage, HoldDown(storage) as hold:
        created = outage.post("/Patient", json={"resourceType": "Patient", "identifier": [{"system": sys_, "value": "new"}]})
        assert_unavailable(created)
        assert_unavailable(outage.put(f"/{ref}", json={"resourceType": "Patient", "id": pid_, "active": False}))
        assert_unavailable(outage.patch(f"/{ref}", content=b'[{"op":"replace","path":"/active","value":false}]',
                                        headers={"Content-Type": JSON_PATCH}))
        assert_unavailable(outage.delete(f"/{ref}"))
        assert_unavailable(outage.post("/Patient", json={"resourceType": "Patient"},
                                       headers={"If-None-Exist": f"identifier={sys_}|new"}))
        assert_unavailable(outage.post(_base(outage), json=transaction, headers={"Content-Type": FHIR_JSON}))
        answer = outage.post(_base(outage), json=batch, headers={"Content-Type": FHIR_JSON})
        if answer.status_code == 200:  # a batch may answer entry by entry: each one unavailable
            body = assert_clean(answer, ("Bundle",))
            assert [e["response"]["status"].split()[0] for e in body["entry"]] == ["503", "503"], body
        else:
            assert_unavailable(answer)
    assert old_db[0].pid in hold.killed

    _wait_for_database(http, ref)
    assert server.process.poll() is None and server.process.pid == server_pid, "the server was not restarted"
    # nothing of what was refused is there
    assert http.get(f"/{ref}").json() == original
    assert sorted(history(http, ref)) == [1]
    found = http.get("/Patient", params={"identifier": f"{sys_}|new"})
    assert found.status_code == 200 and found.json().get("entry", []) == []
    assert _system_history_count(http) == history_before
    # and the same transaction goes through now, whole
    done = http.post(_base(http), json=transaction, headers={"Content-Type": FHIR_JSON})
    assert done.status_code == 200, done.text
    assert http.get(f"/{ref}").json()["active"] is False
    assert len(http.get("/Patient", params={"identifier": f"{sys_}|new"}).json()["entry"]) == 1


def test_database_killed_during_transactions_all_or_nothing(server, db, http):
    """Transactions of 60 resources are posted while the database is killed (once per round, at
    a random moment): each answer is a 200 (then everything is there) or a 503 (then everything
    or nothing is there), never a 500, never part of a bundle."""
    rnd = random.Random(5)
    storage = server.data_dir / "db"
    sys_ = system()
    outcomes: list[tuple[str, int]] = []
    for round_ in range(3):
        stop = threading.Event()
        sent: list[tuple[str, int]] = []

        def post_loop(round_: int = round_, stop: threading.Event = stop, sent: list = sent) -> None:
            with client(server, timeout=30) as c:
                n = 0
                while not stop.is_set() and n < 40:
                    marker = f"r{round_}-{n}"
                    entries = [{"fullUrl": f"urn:uuid:00000000-0000-4000-8000-{round_:04d}{n:04d}{i:04d}",
                                "resource": {"resourceType": "Observation", "status": "final", "code": {"text": marker},
                                             "identifier": [{"system": sys_, "value": marker}]},
                                "request": {"method": "POST", "url": "Observation"}} for i in range(60)]
                    response = c.post(_base(c), json={"resourceType": "Bundle", "type": "transaction", "entry": entries},
                                      headers={"Content-Type": FHIR_JSON})
                    assert_clean(response)
                    assert response.status_code in (200, 503), response.text[:300]
                    sent.append((marker, response.status_code))
                    n += 1

        thread = threading.Thread(target=post_loop)
        thread.start()
        time.sleep(0.3 + rnd.random())
        for proc in db_processes(storage):
            os.kill(proc.pid, signal.SIGKILL)
        time.sleep(1.0)
        stop.set()
        thread.join(120)
        assert not thread.is_alive()
        outcomes.extend(sent)
        _wait_ready(http)
    for marker, code in outcomes:
        found = http.get("/Observation", params={"identifier": f"{sys_}|{marker}", "_summary": "count"})
        assert found.status_code == 200, found.text
        total = found.json()["total"]
        if code == 200:
            assert total == 60, f"{marker}: acknowledged, yet {total} of 60 resources there"
        else:
            assert total in (0, 60), f"{marker}: {total} of 60 resources of a failed transaction are there"
    assert outcomes


def _wait_ready(http: httpx.Client) -> None:
    def back() -> bool:
        response = http.get("/Patient", params={"_count": "1"})
        assert_clean(response)
        return response.status_code == 200
    wait_until(back, 90, "the server answers again after the database restarted", interval=0.2)


# -- a commit whose answer is lost -----------------------------------------------------------------
def test_a_commit_whose_answer_is_lost_is_not_written_twice(server, monkeypatch):
    """The database commits, then the connection drops before the answer (what a database killed
    at that instant does, seen in test_database_killed_during_transactions_all_or_nothing). The
    store must find its writes there and not run the transaction again: a retry would create the
    resources of a POST a second time. The fault is injected after a real commit."""
    from pymongo.client_session import ClientSession
    from pymongo.errors import AutoReconnect

    from fhir_server.storage.database import Database
    from fhir_server.storage.embedded import client_uri
    from fhir_server.storage.store import ResourceStore, Write, now

    database = Database(client_uri(server.data_dir, embedded_port(server)), "fhir")
    store = ResourceStore(database)
    real_commit = ClientSession.commit_transaction
    lost: list[bool] = []

    def commit_then_lose_the_answer(session):
        real_commit(session)
        if not lost:
            lost.append(True)
            error = AutoReconnect("connection closed after the commit")
            error._add_error_label("TransientTransactionError")
            raise error

    monkeypatch.setattr(ClientSession, "commit_transaction", commit_then_lose_the_answer)
    id_ = new_id("lost")
    runs: list[int] = []

    def work(session):
        runs.append(1)
        when = now()
        body = f'{{"resourceType":"Patient","id":"{id_}","meta":{{"versionId":"1"}}}}'.encode()
        return [Write("Patient", id_, 1, None, when, "POST", body)]

    versions = store.transact(work)
    assert lost and len(runs) == 1, "the transaction ran again after its commit took effect"
    assert [v.version for v in versions] == [1]
    assert database.db["_history"].count_documents({"r": f"Patient/{id_}"}) == 1
    database.client.close()
