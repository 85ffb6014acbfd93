"""kill -9 of the server AND its database in the middle of a bulk load, then a restart on the
same FHIR_DATA_DIR: every acknowledged write is there, intact, with its history, and nothing
half-written is visible (each transaction is all there or not at all).

Two loads: clients posting transactions in a loop (recording which were acknowledged with a
200), and `fhir-server load` of `fhir-server demo-data` bundles (over HTTP into the server, and
in-process straight into the database, where the loader process itself is killed).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import httpx
import pytest
from lifecycle.support import db_processes, wait_until

from tests.conftest import die_with_pytest

from .support import FHIR_JSON, client, history, new_id, start_server, system

CLIENTS = 2
OBSERVATIONS = 4  # per transaction, besides its Patient and the update of the shared resource


def kill_all(owner: subprocess.Popen, storage: Path) -> None:
    """SIGKILL the database first (so that it does not get the clean SIGTERM it is sent when its
    parent dies), then the process that runs it (the server, or the loader), at once."""
    for proc in db_processes(storage):
        os.kill(proc.pid, signal.SIGKILL)
    owner.send_signal(signal.SIGKILL)
    owner.wait(30)
    wait_until(lambda: not db_processes(storage), 30, "no database process left")


def _transaction(sys_: str, marker: str, shared: str) -> dict:
    patient = f"urn:uuid:{uuid.uuid4()}"
    entries = [{"fullUrl": patient, "request": {"method": "POST", "url": "Patient"},
                "resource": {"resourceType": "Patient", "identifier": [{"system": sys_, "value": marker}],
                             "name": [{"family": marker}]}}]
    for i in range(OBSERVATIONS):
        entries.append({"fullUrl": f"urn:uuid:{uuid.uuid4()}", "request": {"method": "POST", "url": "Observation"},
                        "resource": {"resourceType": "Observation", "status": "final", "code": {"text": f"{marker}/{i}"},
                                     "identifier": [{"system": sys_, "value": marker}],
                                     "subject": {"reference": patient}, "valueString": f"value {marker}/{i}"}})
    entries.append({"request": {"method": "PUT", "url": shared},
                    "resource": {"resourceType": "Patient", "id": shared.split("/")[1], "name": [{"family": marker}]}})
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def test_kill_server_and_database_during_transactions(tmp_path, r4_examples):
    data_dir = tmp_path / "data"
    server = start_server(data_dir)
    sys_ = system()
    shared = f"Patient/{new_id('shared')}"
    with client(server) as http:
        assert http.put(f"/{shared}", json={"resourceType": "Patient", "id": shared.split("/")[1],
                                            "name": [{"family": "initial"}]}).status_code == 201
    sent: dict[str, dict] = {}  # marker → the bundle, for every transaction sent
    acked: dict[str, list[str]] = {}  # marker → response locations, for every 200
    stop = threading.Event()
    lock = threading.Lock()

    def post_loop(worker: int) -> None:
        with httpx.Client(timeout=30, headers={"Accept": FHIR_JSON, "Content-Type": FHIR_JSON}) as c:
            for n in range(10_000):
                if stop.is_set():
                    return
                marker = f"w{worker}-{n}"
                bundle = _transaction(sys_, marker, shared)
                with lock:
                    sent[marker] = bundle
                try:
                    response = c.post(server.base_url, content=json.dumps(bundle))
                except httpx.HTTPError:
                    return  # the server is gone: this one is not acknowledged
                if response.status_code != 200:
                    return
                with lock:
                    acked[marker] = [e["response"]["location"] for e in response.json()["entry"]]

    threads = [threading.Thread(target=post_loop, args=(w,)) for w in range(CLIENTS)]
    for thread in threads:
        thread.start()
    try:
        wait_until(lambda: len(acked) >= 12, 120, "a dozen transactions acknowledged")
    finally:
        kill_all(server.process, data_dir / "db")
        stop.set()
        for thread in threads:
            thread.join(60)
    acknowledged = dict(acked)
    assert acknowledged

    server = start_server(data_dir)
    try:
        with client(server) as http:
            shared_history = history(http, shared)
            n = max(shared_history)
            assert sorted(shared_history) == list(range(1, n + 1)), "the shared resource's versions have a gap"
            by_marker = {}
            for version, resource in shared_history.items():
                marker = resource["name"][0]["family"]
                assert marker not in by_marker, f"{marker} wrote the shared resource twice"
                by_marker[marker] = version
            for marker in sent:
                patients = _search(http, "Patient", f"{sys_}|{marker}")
                observations = _search(http, "Observation", f"{sys_}|{marker}")
                present = (len(patients), len(observations), marker in by_marker)
                if marker in acknowledged:
                    assert present == (1, OBSERVATIONS, True), f"acknowledged {marker} is not all there: {present}"
                    _check_acknowledged(http, acknowledged[marker], sent[marker], shared, shared_history)
                else:  # in flight when killed: all or nothing
                    assert present in ((0, 0, False), (1, OBSERVATIONS, True)), \
                        f"transaction {marker} is half there after the crash: {present}"
            assert set(by_marker) - {"initial"} <= set(sent), "a version nobody wrote"
    finally:
        server.stop()


def _search(http: httpx.Client, type_: str, identifier: str) -> list[dict]:
    response = http.get(f"/{type_}", params={"identifier": identifier, "_count": "100"})
    assert response.status_code == 200, response.text
    return [e["resource"] for e in response.json().get("entry", [])]


def _check_acknowledged(http: httpx.Client, locations: list[str], bundle: dict, shared: str,
                        shared_history: dict) -> None:
    """Each location of the response reads back (current and vread) with what was sent."""
    patient_ref = None
    for location, entry in zip(locations, bundle["entry"], strict=True):
        match = re.search(r"([A-Za-z]+)/([^/]+)/_history/(\d+)$", location)
        assert match, location
        ref, version = f"{match.group(1)}/{match.group(2)}", int(match.group(3))
        sent = entry["resource"]
        if ref == shared:
            assert shared_history[version]["name"] == sent["name"]
            continue
        assert version == 1
        current = http.get(f"/{ref}")
        assert current.status_code == 200, (ref, current.status_code)
        body = current.json()
        assert body["identifier"] == sent["identifier"]
        if sent["resourceType"] == "Patient":
            patient_ref = ref
        else:
            assert body["subject"]["reference"] == patient_ref and body["valueString"] == sent["valueString"]
        assert http.get(f"/{ref}/_history/1").json() == body
        assert sorted(history(http, ref)) == [1]


# -- fhir-server load ------------------------------------------------------------------------------
def _demo(tmp_path: Path) -> tuple[Path, list[tuple[Path, list[str]]]]:
    out = tmp_path / "demo"
    subprocess.run([sys.executable, "-m", "fhir_server", "demo-data", "--patients", "150", "--per-file", "4",
                    "--out", str(out)], check=True, capture_output=True, preexec_fn=die_with_pytest)
    bundles = []
    for path in sorted(out.glob("*.json")):
        body = json.loads(path.read_text())
        bundles.append((path, [e["request"]["url"] for e in body["entry"]]))
    return out, bundles


def _loaded(progress: Path) -> int:
    """Resources the loader counted as loaded (acknowledged), from its last progress line."""
    counts = re.findall(r"(\d+) resources loaded", progress.read_text(errors="replace"))
    return int(counts[-1]) if counts else 0


@pytest.mark.parametrize("target", ["http", "in-process"])
def test_kill_during_fhir_server_load(tmp_path, r4_examples, target):
    data_dir = tmp_path / "data"
    demo, bundles = _demo(tmp_path)
    total = sum(len(refs) for _, refs in bundles)
    progress = tmp_path / "load.log"
    env = {k: v for k, v in os.environ.items() if k != "FHIR_MONGODB_URI"}
    env["FHIR_DATA_DIR"] = str(data_dir)
    server = None
    command = [sys.executable, "-m", "fhir_server", "load", str(demo)]
    if target == "http":
        server = start_server(data_dir)
        command += ["--url", server.base_url]
    with open(progress, "wb") as log:
        loader = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=str(tmp_path),
                                  preexec_fn=die_with_pytest)
    try:
        wait_until(lambda: _loaded(progress) >= total // 4 or loader.poll() is not None, 180,
                   "a quarter of the demo data loaded")
        assert loader.poll() is None, f"the load ended before the kill:\n{progress.read_text()[-2000:]}"
        kill_all(loader if server is None else server.process, data_dir / "db")
        if server is not None:
            loader.wait(60)  # it notices the server is gone, reports failures and ends
    finally:
        if loader.poll() is None:
            loader.kill()
        loader.wait(60)
    acknowledged = _loaded(progress)
    assert 0 < acknowledged < total

    server = start_server(data_dir)
    try:
        with client(server) as http:
            present_flags = []
            counted = 0
            for path, refs in bundles:
                codes = {ref: http.get(f"/{ref}").status_code for ref in refs}
                assert set(codes.values()) <= {200, 404}, codes
                present = sum(1 for c in codes.values() if c == 200)
                assert present in (0, len(refs)), f"{path.name}: {present} of {len(refs)} resources after the crash"
                if counted + len(refs) <= acknowledged:  # the loader had its 200 for this bundle
                    assert present == len(refs), f"{path.name} was acknowledged, then lost"
                counted += len(refs)
                present_flags.append(present > 0)
            # one bundle at a time: what is there is a prefix of the files
            assert present_flags == sorted(present_flags, reverse=True), present_flags
    finally:
        server.stop()
