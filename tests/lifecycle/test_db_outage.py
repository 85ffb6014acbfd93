"""The database goes away under a running server: 503 + OperationOutcome, then recovery on its own.

Two set-ups: the embedded database (killed with SIGKILL; the server's watchdog restarts it) and
an external database given by FHIR_MONGODB_URI (a `secantusd-py` this test runs itself, stopped
and started again on the same port and files). The server process is never restarted.

Requests made during an outage must come back (an HTTP timeout of OUTAGE_TIMEOUT seconds fails
the test: no hanging) with 503, an OperationOutcome and Retry-After; never a 500.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import httpx
import pytest

from lifecycle.support import (
    HoldDown,
    OwnDatabase,
    RunningServer,
    children_db_processes,
    create_patient,
    db_processes,
    fhir_client,
    fsync,
    start_server,
    wait_until,
)

OUTAGE_TIMEOUT = 10.0  # seconds a client waits for an answer while the database is down
RECOVERY_TIMEOUT = 90.0  # the watchdog backs off up to 10 s between restarts


def assert_unavailable(response: httpx.Response) -> None:
    request = f"{response.request.method} {response.request.url.path}"
    assert response.status_code == 503, f"{request}: {response.status_code} {response.text[:300]}"
    assert response.headers["content-type"].startswith("application/fhir+json")
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome", outcome
    assert outcome["issue"] and outcome["issue"][0]["severity"] in ("error", "fatal")
    assert outcome["issue"][0]["code"] in ("transient", "timeout", "exception")
    retry_after = response.headers.get("Retry-After")
    assert retry_after is not None and retry_after.isdigit() and int(retry_after) > 0, retry_after


def requests_during_outage(client: httpx.Client, patient: dict) -> None:
    """Reads, writes, history, searches with chains and includes, operations that read the
    database their own way ($everything, $reindex, a bundle): each 503, none hangs."""
    pid = patient["id"]
    assert_unavailable(client.get(f"/Patient/{pid}"))
    assert_unavailable(client.post("/Patient", json={"resourceType": "Patient", "name": [{"family": "Lost"}]}))
    assert_unavailable(client.put(f"/Patient/{pid}", json={"resourceType": "Patient", "id": pid, "active": False}))
    assert_unavailable(client.get(f"/Patient/{pid}/_history"))
    assert_unavailable(client.get("/Observation", params={"subject.name": "lost", "_include": "Observation:subject"}))
    assert_unavailable(client.get(f"/Patient/{pid}/$everything"))
    assert_unavailable(client.post("/$reindex"))
    assert_unavailable(client.get("/_history", params={"_at": "2000"}))
    assert_unavailable(client.post("", json={"resourceType": "Bundle", "type": "transaction", "entry": [
        {"request": {"method": "POST", "url": "Patient"}, "resource": {"resourceType": "Patient"}}]}))


def assert_no_internal_error_logged(server: RunningServer) -> None:
    """What the server logs when it answers 500 (api/app.py, storage/database.py)."""
    log = server.log()
    for marker in ("unexpected error on", "database operation failed", "database failure"):
        assert marker not in log, f"the server logged {marker!r}:\n{log[-3000:]}"


def wait_for_recovery(client: httpx.Client, path: str) -> httpx.Response:
    """Poll `path` until the server answers it with something else than 503 (never a 500)."""
    seen: list[int] = []

    def answered() -> httpx.Response | None:
        response = client.get(path)
        seen.append(response.status_code)
        assert response.status_code in (200, 404, 503), f"{response.status_code}: {response.text[:300]}"
        if response.status_code == 503:
            assert_unavailable(response)
            return None
        return response

    return wait_until(answered, RECOVERY_TIMEOUT, f"the server answers {path} again (statuses seen: {seen})",
                      interval=0.2)


def check_data_and_writes(client: httpx.Client, patient: dict) -> None:
    """Earlier data is there, unchanged, and the server accepts writes again."""
    pid = patient["id"]
    response = client.get(f"/Patient/{pid}")
    assert response.status_code == 200, response.text
    assert response.json() == patient
    body = {k: v for k, v in patient.items() if k != "meta"} | {"active": True}
    response = client.put(f"/Patient/{pid}", json=body)
    assert response.status_code == 200, response.text
    assert response.json()["meta"]["versionId"] == str(int(patient["meta"]["versionId"]) + 1)
    create_patient(client, "After")


# -- embedded database ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def embedded(tmp_path_factory) -> RunningServer:
    server = start_server(tmp_path_factory.mktemp("outage-embedded"))
    yield server
    server.stop()
    assert db_processes(server.data_dir / "db") == []


def the_db(server: RunningServer):
    procs = db_processes(server.data_dir / "db")
    assert len(procs) == 1, procs
    assert procs[0].ppid == server.process.pid
    return procs[0]


def test_killed_database_503_then_the_server_recovers_by_itself(embedded: RunningServer) -> None:
    with fhir_client(embedded, timeout=OUTAGE_TIMEOUT) as client:
        patient = create_patient(client, "Before")
        db = the_db(embedded)
        # Flushed, so that this test is about recovery; losing unflushed acknowledged writes is
        # test_acknowledged_writes_survive_a_database_crash's subject.
        fsync(embedded, db.port)

        # The watchdog restarts the database within about a second; keep it down (kill -9 each
        # time it comes back) long enough to see what clients get meanwhile.
        with HoldDown(embedded.data_dir / "db") as hold:
            requests_during_outage(client, patient)
        assert db.pid in hold.killed

        wait_for_recovery(client, f"/Patient/{patient['id']}")
        assert embedded.process.poll() is None, "the server process itself kept running"
        new_db = the_db(embedded)
        assert new_db.pid != db.pid and new_db.port == db.port
        check_data_and_writes(client, patient)
    assert_no_internal_error_logged(embedded)


def test_single_kill_is_never_a_500(embedded: RunningServer) -> None:
    """One crash, requests right behind it: each answers 200 (after waiting for the restart) or
    503, and the server is back without being touched."""
    with fhir_client(embedded, timeout=OUTAGE_TIMEOUT) as client:
        patient = create_patient(client, "Single")
        db = the_db(embedded)
        fsync(embedded, db.port)
        os.kill(db.pid, signal.SIGKILL)
        response = wait_for_recovery(client, f"/Patient/{patient['id']}")
        assert response.status_code == 200, response.text
        assert the_db(embedded).pid != db.pid
        check_data_and_writes(client, patient)
    assert_no_internal_error_logged(embedded)


def test_acknowledged_writes_survive_a_database_crash(embedded: RunningServer) -> None:
    with fhir_client(embedded, timeout=OUTAGE_TIMEOUT) as client:
        for attempt in range(3):  # three tries, so a lucky background flush cannot hide the gap
            db = the_db(embedded)
            patient = create_patient(client, f"Acknowledged{attempt}")
            os.kill(db.pid, signal.SIGKILL)  # right after the 201
            response = wait_for_recovery(client, f"/Patient/{patient['id']}")
            assert response.status_code == 200, f"attempt {attempt}: 201 Created, then {response.status_code} " \
                                                f"after the database restarted: {response.text}"
            assert response.json() == patient


# -- external database (FHIR_MONGODB_URI) ---------------------------------------------------------

def test_external_database_stopped_then_started_again(tmp_path: Path) -> None:
    own = OwnDatabase(tmp_path / "own-db").start()
    data_dir = tmp_path / "data"
    try:
        server = start_server(data_dir, extra_env={"FHIR_MONGODB_URI": own.uri})
        try:
            # The server uses our database and started none of its own.
            assert children_db_processes(server.process.pid) == []
            assert not (data_dir / "db").exists() and not (data_dir / "db.log").exists()
            assert [p.pid for p in db_processes(own.storage_path)] == [own.process.pid]

            with fhir_client(server, timeout=OUTAGE_TIMEOUT) as client:
                patient = create_patient(client, "External")
                with own.client() as mongo:
                    assert mongo["fhir"]["Patient"].find_one({"_id": patient["id"]}) is not None

                own.stop()  # SIGTERM: a clean shutdown, as an operator would do
                assert db_processes(own.storage_path) == []
                requests_during_outage(client, patient)
                assert server.process.poll() is None

                own.start()  # same port, same files
                wait_for_recovery(client, f"/Patient/{patient['id']}")
                check_data_and_writes(client, patient)
                assert children_db_processes(server.process.pid) == []
            assert_no_internal_error_logged(server)
        finally:
            server.stop()
        assert server.process.returncode == 0, server.log()
    finally:
        own.stop()
    assert db_processes(own.storage_path) == []
