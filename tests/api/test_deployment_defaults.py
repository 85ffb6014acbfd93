"""What a default deployment gives away (issue 14, "deployment defaults"), through real HTTP and
the embedded database's own port.

Every answer says `Cache-Control: no-store` and `nosniff` and names no server software; the
API docs page (scripts from a public CDN) is off; the embedded database listens on loopback only,
refuses whoever lacks the credential kept in the data folder, and nobody else on the machine can
read that folder."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from pymongo import MongoClient
from pymongo.errors import OperationFailure, PyMongoError

from fhir_server.storage.embedded import CREDENTIAL_FILE, client_uri
from tests.conftest import die_with_pytest, free_port
from tests.lifecycle.support import db_processes

from .support import assert_outcome, new_id, patient, start_server


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# -- headers ------------------------------------------------------------------------------------

def test_every_answer_is_not_cached_not_sniffed_and_anonymous(client, base_url):
    id_ = new_id("headers")
    answers = [
        client.put(f"/Patient/{id_}", json=patient(id_)),                       # 201
        client.get(f"/Patient/{id_}"),                                         # 200
        client.get("/metadata"),
        client.get("/Patient/not-there"),                                      # 404 from the router
        client.get("/Nothing"),                                                # unknown type
        httpx.get(base_url.removesuffix("/fhir") + "/elsewhere"),             # outside /fhir
        client.post("/Patient", content=b"{}", headers={"Content-Type": "text/plain"}),  # 415
        client.get("/metadata", headers={"Host": "evil.example"}),            # 400, before the router
        client.post("/Patient", json=patient(), headers={"Origin": "https://evil.example"}),  # 403
        client.get(f"/Patient/{id_}", headers={"Accept": "application/fhir+xml"}),           # 406
        client.head(f"/Patient/{id_}"),
    ]
    for r in answers:
        where = (r.request.method, str(r.request.url), r.status_code)
        assert r.headers.get("cache-control") == "no-store", where
        assert r.headers.get("x-content-type-options") == "nosniff", where
        assert "server" not in r.headers, (where, r.headers.get("server"))


def test_the_api_docs_page_is_off_by_default(client):
    for path in ("/_docs", "/_openapi.json", "/_docs/oauth2-redirect"):
        assert_outcome(client.get(path), 404)


# -- the embedded database ------------------------------------------------------------------------

def _db_port(server) -> int:
    (proc,) = db_processes(server.data_dir / "db")
    return proc.port


def test_the_embedded_database_listens_on_loopback_and_wants_the_credential(server):
    (proc,) = db_processes(server.data_dir / "db")
    assert proc.option("--host") == "127.0.0.1" and "--auth" in proc.argv, proc.argv
    with MongoClient(f"mongodb://127.0.0.1:{proc.port}/?directConnection=true",
                     serverSelectionTimeoutMS=5000) as anonymous:
        with pytest.raises(OperationFailure) as refused:
            anonymous.fhir.list_collection_names()
        assert refused.value.code == 13, refused.value  # Unauthorized
        with pytest.raises(OperationFailure):
            anonymous.fhir.Patient.find_one()
    wrong = f"mongodb://fhir-server:guessed@127.0.0.1:{proc.port}/?directConnection=true&authSource=admin"
    with MongoClient(wrong, serverSelectionTimeoutMS=5000) as guesser, pytest.raises(OperationFailure):
        guesser.fhir.list_collection_names()
    with MongoClient(client_uri(server.data_dir, proc.port), serverSelectionTimeoutMS=5000) as owner:
        assert "Patient" in owner.fhir.list_collection_names() or owner.fhir.command("ping")["ok"] == 1


def test_the_data_folder_and_credential_are_private_and_the_credential_is_not_logged(server):
    data = server.data_dir
    assert _mode(data) == 0o700
    assert _mode(data / CREDENTIAL_FILE) == 0o600
    assert _mode(data / "db") & 0o077 == 0
    for path in (data / "db").rglob("*"):
        assert _mode(path) & 0o077 == 0, (path, oct(_mode(path)))
    credential = (data / CREDENTIAL_FILE).read_text().strip()
    assert len(credential) >= 40
    logs = server.log() + (data / "db.log").read_text(errors="replace")
    assert credential not in logs


def test_a_restart_keeps_the_credential_and_the_data(request, tmp_path):
    data = tmp_path / "data"
    first = start_server(request, data)
    try:
        with httpx.Client(base_url=first.base_url, timeout=60) as c:
            id_ = new_id("restart")
            assert c.put(f"/Patient/{id_}", json=patient(id_)).status_code == 201
    finally:
        first.stop()
    credential = (data / CREDENTIAL_FILE).read_text()
    second = start_server(request, data)
    try:
        with httpx.Client(base_url=second.base_url, timeout=60) as c:
            assert c.get(f"/Patient/{id_}").status_code == 200
        assert (data / CREDENTIAL_FILE).read_text() == credential
        with MongoClient(client_uri(data, _db_port(second)), serverSelectionTimeoutMS=5000) as owner:
            assert owner.fhir.Patient.count_documents({"_id": id_}) == 1
        # a lost credential: a new one is provisioned, the database's user reset to it
        second.stop()
        (data / CREDENTIAL_FILE).unlink()
        second = start_server(request, data)
        assert (data / CREDENTIAL_FILE).read_text() != credential and _mode(data / CREDENTIAL_FILE) == 0o600
        with httpx.Client(base_url=second.base_url, timeout=60) as c:
            assert c.get(f"/Patient/{id_}").status_code == 200
    finally:
        second.stop()


def _old_umask() -> None:
    os.umask(0o022)
    die_with_pytest()


def _secantusd() -> str:
    sibling = Path(sys.executable).with_name("secantusd-py")
    return str(sibling) if sibling.exists() else "secantusd-py"


def test_a_data_folder_of_an_earlier_version_is_provisioned_and_made_private(request, tmp_path):
    """A database without users, world-readable, as earlier versions left it."""
    data = tmp_path / "old"
    (data / "db").mkdir(parents=True)
    port = free_port()
    old = subprocess.Popen([_secantusd(), "--host", "127.0.0.1", "--port", str(port), "--storage-path",
                            str(data / "db"), "--log-level", "WARNING", "--sync-on-commit"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=_old_umask)
    try:
        with MongoClient(f"mongodb://127.0.0.1:{port}/?directConnection=true", serverSelectionTimeoutMS=30000) as c:
            deadline = time.monotonic() + 30
            while True:
                try:
                    c.admin.command("ping")
                    break
                except PyMongoError:
                    assert time.monotonic() < deadline, "the old database did not start"
                    time.sleep(0.1)
            c.legacy.notes.insert_one({"_id": "kept"})
            c.admin.command("fsync")
    finally:
        old.terminate()
        old.wait(30)
    data.chmod(0o755)
    for path in (data / "db").iterdir():
        path.chmod(0o644)
    server = start_server(request, data)
    try:
        assert _mode(data) == 0o700 and _mode(data / CREDENTIAL_FILE) == 0o600
        assert all(_mode(p) & 0o077 == 0 for p in (data / "db").iterdir())
        with MongoClient(client_uri(data, _db_port(server)), serverSelectionTimeoutMS=5000) as owner:
            assert owner.legacy.notes.find_one({"_id": "kept"}) == {"_id": "kept"}
        with httpx.Client(base_url=server.base_url, timeout=60) as c:
            assert c.post("/Patient", json=patient()).status_code == 201
    finally:
        server.stop()
