"""`fhir-server serve` without FHIR_MONGODB_URI: the embedded database as a child process.

Each test starts its own server (and so its own database) on its own FHIR_DATA_DIR, since
these tests stop, kill and restart them.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from lifecycle.support import (
    RunningServer,
    create_patient,
    db_processes,
    fhir_client,
    start_server,
    wait_until,
)


def stop_and_check(server: RunningServer, storage_path: Path, sig: int = signal.SIGTERM) -> int:
    code = server.stop(sig)
    survivors = db_processes(storage_path)
    assert survivors == [], f"database processes left running after the server exited: {survivors}"
    return code


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_serve_runs_the_database_as_a_child_and_stops_it(sig: int, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    server = start_server(data_dir)
    storage = data_dir / "db"
    try:
        procs = db_processes(storage)
        assert len(procs) == 1, procs
        db = procs[0]
        assert db.ppid == server.process.pid, "the database is a child of the server process"
        assert db.option("--host") == "127.0.0.1"
        # Its files are under FHIR_DATA_DIR/db.
        assert storage.is_dir() and any(storage.iterdir())
        with fhir_client(server) as client:
            patient = create_patient(client, "Child")
            assert client.get(f"/Patient/{patient['id']}").status_code == 200
    except BaseException:
        server.stop(signal.SIGKILL)
        raise
    code = stop_and_check(server, storage, sig)
    assert code == 0, f"exit code {code}\n{server.log()}"
    assert "Traceback" not in server.log()


def test_default_data_dir_is_fhir_data_in_the_working_directory(tmp_path: Path) -> None:
    workdir = tmp_path / "work"
    server = start_server(workdir, extra_env={"FHIR_DATA_DIR": ""})  # empty: the default applies
    storage = workdir / "fhir-data" / "db"
    try:
        procs = db_processes(storage)
        assert len(procs) == 1 and procs[0].ppid == server.process.pid
        assert any(storage.iterdir())
    finally:
        stop_and_check(server, storage)


def test_database_does_not_outlive_a_killed_server(tmp_path: Path) -> None:
    """kill -9 of the server runs no clean-up code; the database must still not be orphaned
    (it would keep the data directory locked and the next start would fail)."""
    data_dir = tmp_path / "data"
    storage = data_dir / "db"
    for attempt in range(3):  # with data written: the database's graceful shutdown could hang then
        server = start_server(data_dir)
        assert len(db_processes(storage)) == 1
        with fhir_client(server) as client:
            pid = create_patient(client, f"Orphan{attempt}")["id"]
        server.stop(signal.SIGKILL)
        wait_until(lambda: not db_processes(storage), 30, "the database exits once its server is killed")
    # And the data directory can be used again straight away, with the acknowledged writes.
    again = start_server(data_dir)
    with fhir_client(again) as client:
        assert client.get(f"/Patient/{pid}").status_code == 200
    stop_and_check(again, storage)


def test_data_survives_a_restart(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    storage = data_dir / "db"

    server = start_server(data_dir)
    try:
        with fhir_client(server) as client:
            created = create_patient(client, "Durand", gender="female")
            pid = created["id"]
            updated_body = {**created, "name": [{"family": "Durand", "given": ["Anne"]}], "birthDate": "1970-01-02"}
            updated_body.pop("meta")
            response = client.put(f"/Patient/{pid}", json=updated_body)
            assert response.status_code == 200, response.text
            updated = response.json()
            assert updated["meta"]["versionId"] == "2"
            before = {
                "read": client.get(f"/Patient/{pid}").json(),
                "v1": client.get(f"/Patient/{pid}/_history/1").json(),
                "v2": client.get(f"/Patient/{pid}/_history/2").json(),
                "history": client.get(f"/Patient/{pid}/_history").json(),
            }
    except BaseException:
        server.stop(signal.SIGKILL)
        raise
    assert stop_and_check(server, storage) == 0, server.log()
    assert before["read"] == updated
    assert before["v1"] == created

    again = start_server(data_dir)  # same FHIR_DATA_DIR, another port
    try:
        with fhir_client(again) as client:
            assert client.get(f"/Patient/{pid}").json() == before["read"]
            assert client.get(f"/Patient/{pid}/_history/1").json() == before["v1"]
            assert client.get(f"/Patient/{pid}/_history/2").json() == before["v2"]
            history = client.get(f"/Patient/{pid}/_history").json()
            assert history["resourceType"] == "Bundle" and history["type"] == "history"
            assert [e["resource"] for e in history["entry"]] == [e["resource"] for e in before["history"]["entry"]]
            assert sorted(e["resource"]["meta"]["versionId"] for e in history["entry"]) == ["1", "2"]

            # Versions continue where they were.
            third = {**updated_body, "active": True}
            response = client.put(f"/Patient/{pid}", json=third)
            assert response.status_code == 200, response.text
            assert response.json()["meta"]["versionId"] == "3"
            assert response.headers["ETag"] == 'W/"3"'
            history = client.get(f"/Patient/{pid}/_history").json()
            assert sorted(e["resource"]["meta"]["versionId"] for e in history["entry"]) == ["1", "2", "3"]
            assert client.get(f"/Patient/{pid}/_history/1").json() == before["v1"]
    finally:
        stop_and_check(again, storage)
