"""`fhir-server load PATH…` as a user runs it (a subprocess): JSON resources, Bundles
(transaction, batch, collection) and NDJSON, files or whole folders, into the server's own
database (no --url: run before `serve` on the same FHIR_DATA_DIR, then read over HTTP) or into
a running server (--url). Progress in resources/s, a final summary, every failure with its file
and entry index or NDJSON line, and a non-zero exit code when anything failed."""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
from pathlib import Path

import httpx

_ROOT = Path(__file__).resolve().parents[2]
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

from tests.bundle.support import FHIR_JSON, new_id, read, search_ids, start_server, system  # noqa: E402
from tests.bundle.synthea import (  # noqa: E402
    NPI_OID,
    patient_bundle,
    provider_bundle,
    provider_ids,
    providers,
)
from tests.conftest import die_with_pytest  # noqa: E402

SUMMARY_RE = re.compile(r"^(\d+) resources loaded in [\d.]+s \((\d+)/s\); (\d+) failed$", re.M)


def run_load(args: list[str], data_dir: Path | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "FHIR_MONGODB_URI"}
    if data_dir is not None:
        env["FHIR_DATA_DIR"] = str(data_dir)
    return subprocess.run([sys.executable, "-m", "fhir_server", "load", *args], capture_output=True, text=True,
                          env=env, timeout=timeout, cwd=str(data_dir.parent if data_dir else _ROOT),
                          preexec_fn=die_with_pytest)


def summary(result: subprocess.CompletedProcess) -> tuple[int, int]:
    """(loaded, failed) from the final summary line."""
    found = SUMMARY_RE.findall(result.stdout)
    assert len(found) == 1, (result.stdout, result.stderr)
    loaded, _rate, failed = found[0]
    return int(loaded), int(failed)


def failures(result: subprocess.CompletedProcess) -> list[str]:
    return [line.strip().removeprefix("FAILED ").strip() for line in result.stdout.splitlines()
            if line.strip().startswith("FAILED")]


def write_json(path: Path, data) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def write_ndjson(path: Path, lines: list) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n")
    return path


# -- into the server's own database, then served ---------------------------------------------------
def test_load_a_folder_into_the_database_then_serve_it(tmp_path):
    data_dir = tmp_path / "fhir-data"
    src = tmp_path / "input"
    s = system()
    rng = random.Random(11)
    practitioners, organizations = providers(rng, 2, 2, npi_system=NPI_OID)
    patients = [patient_bundle(rng, practitioners, organizations, include_providers=True, encounters=2)
                for _ in range(3)]
    # sorted file names: the providers Bundle first, as Synthea's exports are loaded
    write_json(src / "00-providers.json", provider_bundle(practitioners + organizations))
    for i, pb in enumerate(patients):
        write_json(src / "synthea" / f"patient-{i}.json", pb.bundle)
    write_json(src / "single-with-id.json", {"resourceType": "Patient", "id": "load-1",
                                             "identifier": [{"system": s, "value": "single"}]})
    write_json(src / "single-without-id.json", {"resourceType": "Organization", "name": "No id",
                                                "identifier": [{"system": s, "value": "org"}]})
    write_ndjson(src / "nd" / "Observation.ndjson", [
        {"resourceType": "Observation", "id": f"nd-{i}", "status": "final", "code": {"text": str(i)},
         "subject": {"reference": "Patient/load-1"}} for i in range(5)] + [""] + [
        {"resourceType": "Patient", "identifier": [{"system": s, "value": "nd-no-id"}]}])
    write_json(src / "batch.json", {"resourceType": "Bundle", "type": "batch", "entry": [
        {"resource": {"resourceType": "Patient", "id": "batch-1"}, "request": {"method": "PUT", "url": "Patient/batch-1"}},
        {"resource": {"resourceType": "Patient", "identifier": [{"system": s, "value": "batch"}]},
         "request": {"method": "POST", "url": "Patient"}}]})
    collection_pat = "urn:uuid:0e5e1e8e-1c4a-4b57-9d47-51c0ffee0001"
    write_json(src / "collection.json", {"resourceType": "Bundle", "type": "collection", "entry": [
        {"fullUrl": "urn:uuid:0e5e1e8e-1c4a-4b57-9d47-51c0ffee0002",
         "resource": {"resourceType": "Observation", "status": "final", "code": {"text": "in collection"},
                      "subject": {"reference": collection_pat}, "performer": [{"reference": "Practitioner/coll-pr"}]}},
        {"fullUrl": collection_pat, "resource": {"resourceType": "Patient",
                                                 "identifier": [{"system": s, "value": "collection"}]}},
        {"fullUrl": "http://example.org/fhir/Practitioner/coll-pr",
         "resource": {"resourceType": "Practitioner", "id": "coll-pr"}}]})
    (src / "notes.txt").write_text("not FHIR, not loaded")

    result = run_load([str(src)], data_dir)
    assert result.returncode == 0, (result.stdout, result.stderr)
    entries = len(practitioners + organizations) + sum(len(pb.bundle["entry"]) for pb in patients)
    expected = entries + 2 + 6 + 2 + 3
    assert summary(result) == (expected, 0), result.stdout
    assert failures(result) == []
    assert re.search(r"\d+ resources loaded, \d+/s", result.stderr), result.stderr  # the progress line

    server = start_server(data_dir)
    try:
        with httpx.Client(base_url=server.base_url, timeout=60, headers={"Accept": FHIR_JSON}) as client:
            ids = provider_ids(client, practitioners + organizations)  # once each, not once per patient file
            for pb in patients:
                pat = search_ids(client, "Patient", family=pb.family)
                assert len(pat) == 1, pat
                obs = search_ids(client, "Observation", subject=f"Patient/{pat[0]}")
                assert len(obs) == len(pb.observations)
                encounter = read(client, "Encounter/" + search_ids(client, "Encounter", subject=f"Patient/{pat[0]}")[0])
                assert encounter["participant"][0]["individual"]["reference"] in {
                    f"Practitioner/{ids[p]}" for p in practitioners}
            assert read(client, "Patient/load-1")["identifier"][0]["value"] == "single"
            assert len(search_ids(client, "Organization", identifier=f"{s}|org")) == 1
            assert search_ids(client, "Observation", subject="Patient/load-1") == [f"nd-{i}" for i in range(5)]
            assert len(search_ids(client, "Patient", identifier=f"{s}|nd-no-id")) == 1
            assert read(client, "Patient/batch-1")["id"] == "batch-1"
            assert len(search_ids(client, "Patient", identifier=f"{s}|batch")) == 1
            (coll_pat,) = search_ids(client, "Patient", identifier=f"{s}|collection")
            (coll_obs,) = search_ids(client, "Observation", subject=f"Patient/{coll_pat}")
            stored = read(client, f"Observation/{coll_obs}")
            assert stored["performer"] == [{"reference": "Practitioner/coll-pr"}]
            assert read(client, "Practitioner/coll-pr")["meta"]["versionId"] == "1"
    finally:
        server.stop()


def test_loading_twice_updates_what_has_an_id_and_creates_nothing_twice_with_if_none_exist(tmp_path):
    data_dir = tmp_path / "fhir-data"
    s = system()
    src = write_ndjson(tmp_path / "p.ndjson", [{"resourceType": "Patient", "id": f"twice-{i}",
                                                "identifier": [{"system": s, "value": str(i)}]} for i in range(3)])
    bundle = write_json(tmp_path / "t.json", {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "Organization", "identifier": [{"system": s, "value": "org"}]},
         "request": {"method": "POST", "url": "Organization", "ifNoneExist": f"identifier={s}|org"}}]})
    for _ in range(2):
        result = run_load([str(src), str(bundle)], data_dir, timeout=300)
        assert result.returncode == 0, (result.stdout, result.stderr)
        assert summary(result) == (4, 0)
    server = start_server(data_dir)
    try:
        with httpx.Client(base_url=server.base_url, timeout=60, headers={"Accept": FHIR_JSON}) as client:
            for i in range(3):
                assert read(client, f"Patient/twice-{i}")["meta"]["versionId"] == "2"
            assert len(search_ids(client, "Organization", identifier=f"{s}|org")) == 1
    finally:
        server.stop()


# -- into a running server (--url) -----------------------------------------------------------------
def test_every_failure_is_reported_with_its_file_and_entry_or_line(tmp_path, client, base_url):
    s = system()
    nd = write_ndjson(tmp_path / "in" / "mixed.ndjson", [
        {"resourceType": "Patient", "identifier": [{"system": s, "value": "line1"}]},
        '{"resourceType": "Patient", "identifier": [',
        {"resourceType": "Patient", "identifier": [{"system": s, "value": "line3"}]},
        {"resourceType": "Patient", "gender": 5},
        "[1, 2, 3]",
        "",
        {"resourceType": "Patient", "identifier": [{"system": s, "value": "line7"}]},
    ])
    broken = tmp_path / "in" / "broken.json"
    broken.write_text('{"resourceType": "Patient",')
    not_fhir = write_json(tmp_path / "in" / "not-fhir.json", {"hello": "world"})
    transaction = write_json(tmp_path / "in" / "transaction.json", {"resourceType": "Bundle", "type": "transaction",
                                                                    "entry": [
        {"fullUrl": f"urn:uuid:{i:08d}-0000-4000-8000-000000000000",
         "resource": {"resourceType": "Patient", "identifier": [{"system": s, "value": f"tx{i}"}]},
         "request": {"method": "POST", "url": "Patient"}} for i in range(3)] + [
        {"fullUrl": "urn:uuid:00000003-0000-4000-8000-000000000000",
         "resource": {"resourceType": "Patient", "birthDate": "someday"},
         "request": {"method": "POST", "url": "Patient"}}]})
    batch = write_json(tmp_path / "in" / "batch.json", {"resourceType": "Bundle", "type": "batch", "entry": [
        {"resource": {"resourceType": "Patient", "identifier": [{"system": s, "value": "b0"}]},
         "request": {"method": "POST", "url": "Patient"}},
        {"resource": {"resourceType": "Patient", "id": "bad id!"}, "request": {"method": "PUT", "url": "Patient/bad id!"}},
        {"resource": {"resourceType": "Patient", "identifier": [{"system": s, "value": "b2"}]},
         "request": {"method": "POST", "url": "Patient"}}]})

    result = run_load(["--url", base_url, str(tmp_path / "in")])
    assert result.returncode == 1, (result.stdout, result.stderr)
    reported = failures(result)
    loaded, failed = summary(result)
    assert failed == len(reported) == 7, reported
    assert loaded == 3 + 2, result.stdout

    def one(*fragments) -> str:
        found = [r for r in reported if all(f in r for f in fragments)]
        assert len(found) == 1, (fragments, reported)
        return found[0]

    one(f"{nd}:2")
    one(f"{nd}:4", "400")
    one(f"{nd}:5")
    one(str(broken))
    one(str(not_fhir))
    one(str(transaction), "entry 3")
    one(str(batch), "entry 1")
    for value in ("line1", "line3", "line7", "b0", "b2"):
        assert len(search_ids(client, "Patient", identifier=f"{s}|{value}")) == 1, value
    for value in ("tx0", "tx1", "tx2"):  # the transaction failed as a whole
        assert search_ids(client, "Patient", identifier=f"{s}|{value}") == []


def test_synthea_bundles_through_a_running_server(tmp_path, client, base_url):
    rng = random.Random(5)
    practitioners, organizations = providers(rng, 2, 1, npi_system=NPI_OID)
    write_json(tmp_path / "00-providers.json", provider_bundle(practitioners + organizations))
    patients = [patient_bundle(rng, practitioners, organizations, include_providers=False) for _ in range(2)]
    for i, pb in enumerate(patients):
        write_json(tmp_path / f"p{i}.json", pb.bundle)
    result = run_load(["--url", base_url, "--quiet", str(tmp_path)])
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert "/s" not in result.stderr, result.stderr  # --quiet: no progress line
    assert summary(result)[1] == 0
    ids = provider_ids(client, practitioners + organizations)
    for pb in patients:
        (pat,) = search_ids(client, "Patient", family=pb.family)
        observations = search_ids(client, "Observation", subject=f"Patient/{pat}")
        assert len(observations) == len(pb.observations)
        stored = read(client, f"Observation/{observations[0]}")
        assert stored["performer"][0]["reference"] in {f"Practitioner/{ids[p]}" for p in practitioners}


def test_files_referring_to_resources_loaded_later_are_sent_again(tmp_path, client, base_url):
    """Referential integrity refuses a reference to what is not there yet (422): files come in
    name order, so `a-task` refers to the patient of `b-patient` before it exists; the loader
    sends it again once the rest is loaded. A reference to nothing at all stays a failure."""
    pid, task_id, orphan = new_id("ld-p"), new_id("ld-t"), new_id("ld-t")
    task = {"resourceType": "Task", "status": "requested", "intent": "order"}
    write_json(tmp_path / "in" / "a-task.json", {**task, "id": task_id, "for": {"reference": f"Patient/{pid}"}})
    write_json(tmp_path / "in" / "a-orphan.json", {**task, "id": orphan, "for": {"reference": "Patient/ld-nobody"}})
    write_json(tmp_path / "in" / "b-patient.json", {"resourceType": "Patient", "id": pid})
    result = run_load(["--url", base_url, str(tmp_path / "in")])
    assert summary(result) == (2, 1), (result.stdout, result.stderr)
    (failure,) = failures(result)
    assert "a-orphan.json" in failure and "Patient/ld-nobody" in failure, failure
    assert read(client, f"Task/{task_id}")["for"]["reference"] == f"Patient/{pid}"


def test_a_chain_in_reverse_order_loads_into_the_database_round_by_round(tmp_path):
    """Into the server's own database (no --url): `a` refers to `b`, `b` to `c`, and a transaction
    `0-tx` to `a`, so name order loads only `c` first; each round of sending again loads one more
    link, until all is in. Then served: every reference reads back as written."""
    data_dir, src = tmp_path / "fhir-data", tmp_path / "in"
    write_json(src / "0-tx.json", {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "Task", "id": "chain-task", "status": "requested", "intent": "order",
                      "for": {"reference": "Patient/chain-a"}},
         "request": {"method": "PUT", "url": "Task/chain-task"}}]})
    write_json(src / "a.json", {"resourceType": "Patient", "id": "chain-a", "link": [
        {"other": {"reference": "Patient/chain-b"}, "type": "seealso"}]})
    write_json(src / "b.json", {"resourceType": "Patient", "id": "chain-b",
                                "generalPractitioner": [{"reference": "Practitioner/chain-c"}]})
    write_json(src / "c.json", {"resourceType": "Practitioner", "id": "chain-c"})
    result = run_load([str(src)], data_dir)
    assert result.returncode == 0 and summary(result) == (4, 0), (result.stdout, result.stderr)
    server = start_server(data_dir)
    try:
        with httpx.Client(base_url=server.base_url, timeout=60) as client:
            assert read(client, "Task/chain-task")["for"]["reference"] == "Patient/chain-a"
            assert read(client, "Patient/chain-a")["link"][0]["other"]["reference"] == "Patient/chain-b"
            assert read(client, "Patient/chain-b")["generalPractitioner"][0]["reference"] == "Practitioner/chain-c"
    finally:
        server.stop()


def test_an_unreachable_server_is_a_reported_failure(tmp_path):
    from tests.bundle.support import free_port

    path = write_json(tmp_path / "p.json", {"resourceType": "Patient", "id": new_id()})
    result = run_load(["--url", f"http://127.0.0.1:{free_port()}/fhir", str(path)], timeout=120)
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert summary(result) == (0, 1)
    (failure,) = failures(result)
    assert str(path) in failure


def test_loading_into_the_database_of_a_running_server_is_refused_with_a_hint(tmp_path):
    data_dir = tmp_path / "fhir-data"
    server = start_server(data_dir)
    try:
        path = write_json(tmp_path / "p.json", {"resourceType": "Patient", "id": "while-running"})
        result = run_load([str(path)], data_dir, timeout=180)
        assert result.returncode != 0, (result.stdout, result.stderr)
        assert "--url" in result.stdout + result.stderr
        with httpx.Client(base_url=server.base_url, timeout=60) as client:
            assert client.get("/Patient/while-running").status_code == 404
            assert client.get("/metadata").status_code == 200  # the running server is unharmed
    finally:
        server.stop()


def test_a_missing_path_is_a_reported_failure(tmp_path, client, base_url):
    s = system()
    good = write_json(tmp_path / "good.json", {"resourceType": "Patient", "identifier": [{"system": s, "value": "1"}]})
    result = run_load(["--url", base_url, str(good), str(tmp_path / "missing.json")])
    assert result.returncode != 0
    assert "missing.json" in result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert summary(result) == (1, 1)
    assert len(search_ids(client, "Patient", identifier=f"{s}|1")) == 1


def test_failures_are_reported_when_loading_into_the_database_too(tmp_path):
    data_dir = tmp_path / "fhir-data"
    s = system()
    nd = write_ndjson(tmp_path / "in" / "a.ndjson", [
        {"resourceType": "Patient", "identifier": [{"system": s, "value": "ok"}]},
        {"resourceType": "Patient", "birthDate": "13/13/13"},
        "{",
    ])
    tx = write_json(tmp_path / "in" / "b.json", {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "Patient", "identifier": [{"system": s, "value": "tx"}]},
         "request": {"method": "POST", "url": "Patient"}},
        {"resource": {"resourceType": "Patient", "id": "p1"}, "request": {"method": "PUT", "url": "Patient/p1",
                                                                          "ifMatch": 'W/"3"'}}]})
    result = run_load([str(tmp_path / "in")], data_dir, timeout=300)
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert summary(result) == (1, 3), result.stdout
    reported = failures(result)
    assert any(f"{nd}:2" in r for r in reported), reported
    assert any(f"{nd}:3" in r for r in reported), reported
    assert any(str(tx) in r and "entry 1" in r and "412" in r for r in reported), reported
    server = start_server(data_dir)
    try:
        with httpx.Client(base_url=server.base_url, timeout=60, headers={"Accept": FHIR_JSON}) as client:
            assert len(search_ids(client, "Patient", identifier=f"{s}|ok")) == 1
            assert search_ids(client, "Patient", identifier=f"{s}|tx") == []
    finally:
        server.stop()
