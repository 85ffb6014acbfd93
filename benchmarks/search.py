"""Search latency at two database sizes, next to raw pymongo lookups on the same index.

    python -m benchmarks.search [--sizes 1000,20000] [--repeat 200] [--out benchmarks/out/search.json]

For each size, a synthetic CPTS dataset (patients with care plans, tasks, secure messages and
RCP appointments; practitioners and organisations) is written into a fresh embedded database
through the server's own indexing code (same stored documents as the API writes, inserted in
bulk so that loading 100k resources takes a minute, not an hour), then a running
`fhir-server serve` answers a fixed mix of selective queries over HTTP. Each query is also run
as the raw pymongo lookup on the `k` index it drives with, on the same database in the same
run. Reported: p50/p95 per query and size, and the ratio large ÷ small (the goal is ≤ 1.5:
cost follows the size of the answer, not of the database).
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from pymongo import MongoClient

from benchmarks import report
from benchmarks.data import test_ins
from fhir_server import jsonio
from fhir_server.config import Settings
from fhir_server.definitions.packages import PackageCache
from fhir_server.definitions.registry import Definitions, ensure_core
from fhir_server.interactions.resource import stamp
from fhir_server.operations.reindex import FORMAT, SEARCH_INDEX_MARKER
from fhir_server.search.index import index_values
from fhir_server.search.parameters import SearchParameters
from fhir_server.storage.database import Database
from fhir_server.storage.embedded import EmbeddedDatabase, _free_port
from fhir_server.storage.jobs import Marker
from fhir_server.storage.store import Write, current_document, history_document

SYS = "urn:oid:1.2.250.1.213.1.4.10"
RPPS = "https://rpps.esante.gouv.fr"
MSG = "urn:example:message"
START = datetime(2026, 1, 5, tzinfo=UTC)


def dataset(n_patients: int, seed: int = 7):
    """Resources of a CPTS: 50 professionals, 5 structures, and per patient a care plan,
    two tasks, three messages and (one in ten) an RCP appointment."""
    rnd = random.Random(seed)
    for i in range(5):
        yield {"resourceType": "Organization", "id": f"org{i}", "name": f"MSP {i}",
               "identifier": [{"system": "https://finess.esante.gouv.fr", "value": f"0{i}0000000"}]}
    for i in range(50):
        yield {"resourceType": "Practitioner", "id": f"pr{i}",
               "identifier": [{"system": RPPS, "value": f"1000{i:07d}"}],
               "name": [{"family": f"Soignant{i}", "given": ["Alex"]}]}
        yield {"resourceType": "PractitionerRole", "id": f"role{i}",
               "practitioner": {"reference": f"Practitioner/pr{i}"},
               "organization": {"reference": f"Organization/org{i % 5}"}, "active": True}
    for p in range(n_patients):
        pid = f"pat{p}"
        yield {"resourceType": "Patient", "id": pid, "identifier": [{"system": SYS, "value": test_ins(p)}],
               "name": [{"family": f"Nom{p}", "given": [rnd.choice(["Marie", "Jean", "Lea", "Paul"])]}],
               "gender": rnd.choice(["male", "female"]), "birthDate": f"{1930 + p % 80}-0{1 + p % 9}-1{p % 9}",
               "generalPractitioner": [{"reference": f"Practitioner/pr{p % 50}"}]}
        yield {"resourceType": "CarePlan", "id": f"cp{p}", "status": "active", "intent": "plan",
               "subject": {"reference": f"Patient/{pid}"}, "author": {"reference": f"PractitionerRole/role{p % 50}"},
               "period": {"start": (START + timedelta(days=p % 300)).date().isoformat()}}
        for t in range(2):
            yield {"resourceType": "Task", "id": f"task{p}-{t}",
                   "status": rnd.choice(["requested", "in-progress", "completed"]),
                   "intent": "order", "for": {"reference": f"Patient/{pid}"},
                   "basedOn": [{"reference": f"CarePlan/cp{p}"}],
                   "owner": {"reference": f"PractitionerRole/role{(p + t) % 50}"},
                   "authoredOn": (START + timedelta(minutes=p * 7 + t)).isoformat()}
        for m in range(3):
            yield {"resourceType": "Communication", "id": f"msg{p}-{m}", "status": "completed",
                   "identifier": [{"system": MSG, "value": f"{p}-{m}"}],
                   "subject": {"reference": f"Patient/{pid}"},
                   "sender": {"reference": f"PractitionerRole/role{p % 50}"},
                   "recipient": [{"reference": f"PractitionerRole/role{(p + m + 1) % 50}"}],
                   "sent": (START + timedelta(minutes=p * 5 + m)).isoformat(),
                   "payload": [{"contentString": "Bonjour, pouvez-vous passer demain ?"}]}
        if p % 10 == 0:
            start = START + timedelta(hours=p)
            yield {"resourceType": "Appointment", "id": f"rcp{p}", "status": "booked",
                   "start": start.isoformat(), "end": (start + timedelta(hours=1)).isoformat(),
                   "participant": [{"actor": {"reference": f"Patient/{pid}"}, "status": "accepted"}]}


def load(db, params: SearchParameters, n_patients: int) -> int:
    """Insert the dataset as the server stores it (stamped JSON, ix and k, history)."""
    ts = datetime.now(UTC).replace(microsecond=0)
    batches: dict[str, list] = {}
    history = []
    count = 0
    for resource in dataset(n_patients):
        stored = stamp(resource, resource["id"], 1, ts)
        write = Write(resource["resourceType"], resource["id"], 1, None, ts, "PUT", jsonio.dumps(stored),
                      index_values(params, stored))
        batches.setdefault(write.type, []).append(current_document(write))
        history.append(history_document(write))
        count += 1
        for type_, docs in list(batches.items()):
            if len(docs) >= 2000:
                db[type_].insert_many(docs, ordered=False)
                batches[type_] = []
        if len(history) >= 2000:
            db["_history"].insert_many(history, ordered=False)
            history = []
    for type_, docs in batches.items():
        if docs:
            db[type_].insert_many(docs, ordered=False)
    if history:
        db["_history"].insert_many(history, ordered=False)
    for type_ in batches:
        db[type_].create_index("k")
    return count


def queries(n: int, rnd: random.Random):
    """(name, FHIR query, raw pymongo (collection, filter)) — all selective: the answer does
    not grow with the database."""
    p = rnd.randrange(n)
    p10 = rnd.randrange(0, n, 10)
    day = START + timedelta(hours=p10)
    return [
        ("token", f"Patient?identifier={SYS}|{test_ins(p)}", ("Patient", {"k": f"identifier={SYS}|{test_ins(p)}"})),
        ("reference", f"CarePlan?subject=Patient/pat{p}", ("CarePlan", {"k": f"subject=Patient/pat{p}"})),
        ("date-range",
         f"Appointment?date=ge{day:%Y-%m-%dT%H:%M:%SZ}&date=lt{day + timedelta(minutes=30):%Y-%m-%dT%H:%M:%SZ}",
         ("Appointment", {"k": {"$gte": f"date.l={day.strftime('%Y-%m-%dT%H:%M:%S')}",
                                "$lt": f"date.l={(day + timedelta(minutes=30)).strftime('%Y-%m-%dT%H:%M:%S')}"}})),
        ("chained", f"CarePlan?subject:Patient.identifier={SYS}|{test_ins(p)}",
         ("Patient", {"k": f"identifier={SYS}|{test_ins(p)}"})),
        ("_has", f"Patient?_has:Communication:subject:identifier={MSG}|{p}-1",
         ("Communication", {"k": f"identifier={MSG}|{p}-1"})),
        ("_include", f"Task?patient=Patient/pat{p}&_include=Task:based-on", ("Task", {"k": f"patient=Patient/pat{p}"})),
        ("string", f"Patient?family=Nom{p}&_count=10",
         ("Patient", {"k": {"$gte": f"family=nom{p}", "$lt": f"family=nom{p}\U0010ffff"}})),
    ]


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def measure(base_url: str, db, n: int, repeat: int) -> dict[str, dict[str, float]]:
    rnd = random.Random(n)
    http_times: dict[str, list[float]] = {}
    raw_times: dict[str, list[float]] = {}
    with httpx.Client(base_url=base_url, timeout=60) as client:
        for _ in range(5):  # warm-up
            for _name, query, _ in queries(n, rnd):
                client.get("/" + query).raise_for_status()
        for _ in range(repeat):
            for name, query, (collection, flt) in queries(n, rnd):
                t = time.perf_counter()
                response = client.get("/" + query)
                http_times.setdefault(name, []).append(time.perf_counter() - t)
                response.raise_for_status()
                assert response.json().get("total", 0) >= 1, (query, response.text[:300])
                t = time.perf_counter()
                list(db[collection].find(flt))
                raw_times.setdefault(name, []).append(time.perf_counter() - t)
    return {name: {"p50_ms": percentile(v, 0.5) * 1000, "p95_ms": percentile(v, 0.95) * 1000,
                   "raw_p50_ms": percentile(raw_times[name], 0.5) * 1000}
            for name, v in http_times.items()}


@dataclass
class LoadedServer:
    """A fresh embedded database holding the synthetic dataset, and a `fhir-server serve` on it."""

    base_url: str
    uri: str
    db: Any  # pymongo Database
    patients: int
    resources: int
    load_s: float
    server_pid: int


def wait_for(base_url: str, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base_url}/metadata", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{base_url} did not answer within {timeout:.0f}s")


@contextmanager
def loaded_server(n: int, params: SearchParameters) -> Iterator[LoadedServer]:
    """The dataset of `n` patients loaded into a fresh embedded database, served over HTTP by a
    `fhir-server serve` child process; everything stopped and removed afterwards."""
    with tempfile.TemporaryDirectory() as tmp:
        database = EmbeddedDatabase(Path(tmp) / "data")
        database.start()
        try:
            client = MongoClient(database.uri)
            db = client["fhir"]
            Database(database.uri, "fhir").ensure_indexes()  # as a running server has them
            t = time.perf_counter()
            count = load(db, params, n)
            load_s = time.perf_counter() - t
            # indexed by this version's code: no upgrade reindexing in the background while measuring
            Marker(Database(database.uri, "fhir"), SEARCH_INDEX_MARKER).write(FORMAT)
            port = _free_port()
            env = {**os.environ, "FHIR_MONGODB_URI": database.uri, "FHIR_DATA_DIR": str(Path(tmp) / "srv")}
            server = subprocess.Popen([sys.executable, "-m", "fhir_server", "serve", "--port", str(port),
                                       "--log-level", "warning"], env=env)
            try:
                base_url = f"http://127.0.0.1:{port}/fhir"
                wait_for(base_url)
                yield LoadedServer(base_url, database.uri, db, n, count, load_s, server.pid)
            finally:
                server.send_signal(signal.SIGTERM)
                server.wait(30)
                client.close()
        finally:
            database.stop()


def run_size(n: int, repeat: int, definitions: Definitions, params: SearchParameters) -> dict:
    with loaded_server(n, params) as env:
        results = measure(env.base_url, env.db, n, repeat)
        return {"patients": n, "resources": env.resources, "load_s": env.load_s, "queries": results}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,20000")
    parser.add_argument("--repeat", type=int, default=200)
    parser.add_argument("--out", default=report.out_path("search.json"), help="default: benchmarks/out/search.json")
    args = parser.parse_args()
    settings = Settings.from_env()
    definitions = Definitions([ensure_core(PackageCache(settings.package_cache, settings.package_registry))])
    params = SearchParameters(definitions)
    sizes = [int(s) for s in args.sizes.split(",")]
    runs = [run_size(n, args.repeat, definitions, params) for n in sizes]
    small, large = runs[0], runs[-1]
    print(f"\n{'query':<12} " + " ".join(f"{'p50 ' + str(r['patients']):>10} {'p95':>7} {'raw':>6}" for r in runs)
          + f" {'ratio p50':>10}")
    for name in small["queries"]:
        cells = " ".join(f"{r['queries'][name]['p50_ms']:>10.2f} {r['queries'][name]['p95_ms']:>7.2f} "
                         f"{r['queries'][name]['raw_p50_ms']:>6.2f}" for r in runs)
        ratio = large["queries"][name]["p50_ms"] / small["queries"][name]["p50_ms"]
        print(f"{name:<12} {cells} {ratio:>10.2f}")
    report.write_json({"runs": runs, "command": " ".join(sys.argv)}, Path(args.out))
    print("\nresources: " + ", ".join(f"{r['patients']} patients → {r['resources']} ({r['load_s']:.0f}s to load)"
                                      for r in runs))


if __name__ == "__main__":
    main()
