"""Transaction ingest over HTTP, next to raw pymongo `insert_many` of the same resources.

    python -m benchmarks.ingest [--bundles 20] [--per-bundle 150] [--out benchmarks/out/ingest.json]

Generated patient bundles (a Patient, encounters, observations, conditions, a care plan and
tasks, all linked by `urn:uuid` references) are POSTed as transactions to a running
`fhir-server serve` (validation, reference rewriting, indexing and history on), then the same
resources are inserted with `insert_many` into other collections of the same database in the
same run. Reported: resources/s for both and their ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from pymongo import MongoClient

from benchmarks import report
from benchmarks.data import test_ins
from fhir_server import jsonio
from fhir_server.storage.embedded import EmbeddedDatabase, _free_port

LOINC = "http://loinc.org"
START = datetime(2025, 1, 1, tzinfo=UTC)


def patient_bundle(n: int, size: int, rnd: random.Random) -> dict:
    """One patient's record as a transaction of about `size` resources."""
    entries = []

    def add(resource: dict) -> str:
        full_url = f"urn:uuid:{uuid.uuid4()}"
        entries.append({"fullUrl": full_url, "resource": resource,
                        "request": {"method": "POST", "url": resource["resourceType"]}})
        return full_url

    patient = add({"resourceType": "Patient", "identifier": [{"system": "urn:oid:1.2.250.1.213.1.4.10",
                                                              "value": test_ins(n)}],
                   "name": [{"family": f"Nom{n}", "given": [rnd.choice(["Marie", "Jean", "Lea"])]}],
                   "gender": rnd.choice(["male", "female"]), "birthDate": f"{1940 + n % 60}-05-0{1 + n % 9}"})
    encounters = []
    for e in range(max(1, size // 15)):
        when = START + timedelta(days=e * 20)
        encounters.append(add({"resourceType": "Encounter", "status": "finished",
                               "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
                               "subject": {"reference": patient},
                               "period": {"start": when.isoformat(),
                                          "end": (when + timedelta(minutes=30)).isoformat()}}))
    for c in range(3):
        add({"resourceType": "Condition", "subject": {"reference": patient},
             "code": {"coding": [{"system": "http://snomed.info/sct", "code": str(84114007 + c)}]},
             "encounter": {"reference": encounters[0]}})
    careplan = add({"resourceType": "CarePlan", "status": "active", "intent": "plan",
                    "subject": {"reference": patient}})
    for _ in range(2):
        add({"resourceType": "Task", "status": "requested", "intent": "order", "for": {"reference": patient},
             "basedOn": [{"reference": careplan}]})
    while len(entries) < size:
        enc = rnd.choice(encounters)
        add({"resourceType": "Observation", "status": "final", "subject": {"reference": patient},
             "encounter": {"reference": enc},
             "code": {"coding": [{"system": LOINC, "code": rnd.choice(["8867-4", "8480-6", "29463-7", "2339-0"])}]},
             "effectiveDateTime": (START + timedelta(minutes=len(entries))).isoformat(),
             "valueQuantity": {"value": round(rnd.uniform(40, 180), 1), "unit": "mg/dL",
                               "system": "http://unitsofmeasure.org", "code": "mg/dL"}})
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def raw_documents(bundle: dict) -> dict[str, list[dict]]:
    """The same resources as plain documents, one per resource, for `insert_many`."""
    out: dict[str, list[dict]] = {}
    for entry in bundle["entry"]:
        resource = entry["resource"]
        out.setdefault(resource["resourceType"], []).append(
            {"_id": str(uuid.uuid4()), "json": jsonio.dumps(resource)})
    return out


def run(n_bundles: int, per_bundle: int) -> dict:
    """POST `n_bundles` generated transactions to a fresh server, then `insert_many` the same
    resources into the same database; resources/s of both and their ratio."""
    rnd = random.Random(42)
    bundles = [patient_bundle(n, per_bundle, rnd) for n in range(n_bundles)]
    total = sum(len(b["entry"]) for b in bundles)
    bodies = [jsonio.dumps(b) for b in bundles]
    with tempfile.TemporaryDirectory() as tmp:
        database = EmbeddedDatabase(Path(tmp) / "data")
        database.start()
        try:
            port = _free_port()
            env = {**os.environ, "FHIR_MONGODB_URI": database.uri, "FHIR_DATA_DIR": str(Path(tmp) / "srv")}
            server = subprocess.Popen([sys.executable, "-m", "fhir_server", "serve", "--port", str(port),
                                       "--log-level", "warning"], env=env)
            base = f"http://127.0.0.1:{port}/fhir"
            try:
                for _ in range(300):
                    try:
                        if httpx.get(f"{base}/metadata", timeout=2).status_code == 200:
                            break
                    except httpx.HTTPError:
                        time.sleep(0.2)
                with httpx.Client(timeout=600, headers={"Content-Type": "application/fhir+json",
                                                        "Prefer": "return=minimal"}) as client:
                    client.post(base, content=jsonio.dumps(patient_bundle(10**6, 20, rnd))).raise_for_status()  # warm
                    t = time.perf_counter()
                    for body in bodies:
                        client.post(base, content=body).raise_for_status()
                    fhir_s = time.perf_counter() - t
            finally:
                server.send_signal(signal.SIGTERM)
                server.wait(30)
            db = MongoClient(database.uri)["fhir"]
            docs = [raw_documents(b) for b in bundles]
            t = time.perf_counter()
            for per_type in docs:
                for type_, items in per_type.items():
                    db[f"raw_{type_}"].insert_many(items, ordered=False)
            raw_s = time.perf_counter() - t
        finally:
            database.stop()
    return {"bundles": n_bundles, "resources": total, "fhir_resources_per_s": total / fhir_s,
            "raw_insert_many_per_s": total / raw_s, "ratio_fhir_over_raw": (total / fhir_s) / (total / raw_s)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundles", type=int, default=20)
    parser.add_argument("--per-bundle", type=int, default=150)
    parser.add_argument("--out", default=report.out_path("ingest.json"), help="default: benchmarks/out/ingest.json")
    args = parser.parse_args()
    result = {**run(args.bundles, args.per_bundle),
              "command": " ".join(["python -m benchmarks.ingest"] + sys.argv[1:])}
    print(json.dumps(result, indent=2))
    report.write_json(result, Path(args.out))


if __name__ == "__main__":
    main()
