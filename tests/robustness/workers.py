"""Client workers of the concurrency tests, run in threads of the test process AND in separate
processes (multiprocessing, spawn: each its own interpreter and its own httpx client).

A worker only talks HTTP and records, for each request, what it sent and what it was answered;
the test checks those records against the server's history afterwards. Nothing here asserts:
an unexpected answer is recorded as it is, so the test reports it with its context.
"""

from __future__ import annotations

import base64
import json
import random
import uuid
from typing import Any

import httpx

FHIR_JSON = "application/fhir+json"
JSON_PATCH = "application/json-patch+json"
KINDS = ("put", "put-if-match", "patch", "patch-if-match", "transaction", "create")


def _values(resource: dict[str, Any], sys_: str) -> list[str]:
    return [i["value"] for i in resource.get("identifier", []) if i.get("system") == sys_]


def _patch_ops(sys_: str, marker: str) -> list[dict[str, Any]]:
    return [{"op": "add", "path": "/identifier/-", "value": {"system": sys_, "value": marker}},
            {"op": "replace", "path": "/name/0/text", "value": marker}]


def _version(response: httpx.Response) -> int | None:
    try:
        return int(response.json()["meta"]["versionId"])
    except (ValueError, KeyError, TypeError):
        return None


def mixed_worker(base_url: str, refs: list[str], sys_: str, name: str, ops: int, seed: int,
                 barrier: Any = None) -> list[dict[str, Any]]:
    """`ops` writes on the shared resources `refs` (Patients with identifiers of `sys_` and a
    name), of every kind in turn from a random start: PUT of the read resource plus a marker
    (without and with If-Match), JSON Patch adding a marker (without and with If-Match), a
    transaction patching two of them and creating an Observation, and a plain create."""
    rnd = random.Random(seed)
    records: list[dict[str, Any]] = []
    with httpx.Client(base_url=base_url, timeout=120, headers={"Accept": FHIR_JSON}) as http:
        if barrier is not None:
            barrier.wait(60)
        start = rnd.randrange(len(KINDS))
        for n in range(ops):
            kind = KINDS[(start + n) % len(KINDS)]
            marker = f"{name}-{n}"
            ref = rnd.choice(refs)
            record: dict[str, Any] = {"kind": kind, "marker": marker, "ref": ref, "worker": name}
            try:
                _one(http, base_url, kind, marker, ref, refs, sys_, rnd, record)
            except httpx.HTTPError as exc:  # recorded: the test fails on it with the context
                record["status"] = 0
                record["error"] = f"{type(exc).__name__}: {exc}"
            records.append(record)
    return records


def _one(http: httpx.Client, base_url: str, kind: str, marker: str, ref: str, refs: list[str], sys_: str,
         rnd: random.Random, record: dict[str, Any]) -> None:
    if kind in ("put", "put-if-match", "patch-if-match"):
        current = http.get(f"/{ref}")
        if current.status_code != 200:
            record.update(status=-current.status_code, body=current.text[:500])
            return
        resource = current.json()
        record["read_version"] = int(resource["meta"]["versionId"])
    if kind in ("put", "put-if-match"):
        sent = _values(resource, sys_) + [marker]
        body = {"resourceType": "Patient", "id": ref.split("/")[1], "name": [{"text": marker}],
                "identifier": [{"system": sys_, "value": v} for v in sent]}
        headers = {"Content-Type": FHIR_JSON}
        if kind == "put-if-match":
            headers["If-Match"] = f'W/"{record["read_version"]}"'
        response = http.put(f"/{ref}", content=json.dumps(body), headers=headers)
        record.update(sent=sent, status=response.status_code, version=_version(response))
    elif kind in ("patch", "patch-if-match"):
        headers = {"Content-Type": JSON_PATCH}
        if kind == "patch-if-match":
            headers["If-Match"] = f'W/"{record["read_version"]}"'
        response = http.patch(f"/{ref}", content=json.dumps(_patch_ops(sys_, marker)), headers=headers)
        record.update(status=response.status_code, version=_version(response))
    elif kind == "transaction":
        pair = rnd.sample(refs, 2)
        binary = {"resourceType": "Binary", "contentType": JSON_PATCH,
                  "data": base64.b64encode(json.dumps(_patch_ops(sys_, marker)).encode()).decode()}
        entries = [{"request": {"method": "PATCH", "url": r}, "resource": binary} for r in pair]
        entries.append({"fullUrl": f"urn:uuid:{uuid.uuid4()}", "request": {"method": "POST", "url": "Observation"},
                        "resource": {"resourceType": "Observation", "status": "final", "code": {"text": marker},
                                     "subject": {"reference": pair[0]},
                                     "identifier": [{"system": sys_, "value": marker}]}})
        response = http.post(base_url, content=json.dumps({"resourceType": "Bundle", "type": "transaction",
                                                           "entry": entries}),
                             headers={"Content-Type": FHIR_JSON})
        record.update(status=response.status_code, pair=pair)
        if response.status_code == 200:
            locations = [e["response"]["location"] for e in response.json()["entry"]]
            record["written"] = [_location(loc) for loc in locations]
    else:  # create
        body = {"resourceType": "Patient", "name": [{"text": marker}],
                "identifier": [{"system": sys_ + ":created", "value": marker}]}
        response = http.post("/Patient", content=json.dumps(body), headers={"Content-Type": FHIR_JSON})
        record.update(status=response.status_code)
        if response.status_code == 201:
            record["written"] = [_location(response.headers["location"])]
    if response.status_code >= 300:
        record["body"] = response.text[:500]


def _location(location: str) -> tuple[str, int]:
    """("Type/id", version) from `…/Type/id/_history/v`."""
    parts = location.rstrip("/").split("/")
    return f"{parts[-4]}/{parts[-3]}", int(parts[-1])


def conditional_create_worker(base_url: str, sys_: str, value: str, name: str, in_transaction: bool,
                              barrier: Any = None) -> list[dict[str, Any]]:
    """One conditional create (If-None-Exist) of the Patient `sys_|value`, as a plain POST or as
    a transaction entry with `ifNoneExist`."""
    body = {"resourceType": "Patient", "identifier": [{"system": sys_, "value": value}], "name": [{"text": name}]}
    with httpx.Client(base_url=base_url, timeout=120, headers={"Accept": FHIR_JSON}) as http:
        if barrier is not None:
            barrier.wait(60)
        try:
            if in_transaction:
                bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [{
                    "fullUrl": f"urn:uuid:{uuid.uuid4()}", "resource": body,
                    "request": {"method": "POST", "url": "Patient", "ifNoneExist": f"identifier={sys_}|{value}"}}]}
                response = http.post(base_url, content=json.dumps(bundle), headers={"Content-Type": FHIR_JSON})
                if response.status_code != 200:
                    return [{"worker": name, "status": response.status_code, "body": response.text[:500]}]
                item = response.json()["entry"][0]["response"]
                ref, version = _location(item["location"])
                return [{"worker": name, "status": int(item["status"].split()[0]), "id": ref.split("/")[1],
                         "version": version}]
            response = http.post("/Patient", content=json.dumps(body),
                                 headers={"Content-Type": FHIR_JSON, "If-None-Exist": f"identifier={sys_}|{value}"})
            if response.status_code not in (200, 201):
                return [{"worker": name, "status": response.status_code, "body": response.text[:500]}]
            return [{"worker": name, "status": response.status_code, "id": response.json()["id"],
                     "version": _version(response)}]
        except httpx.HTTPError as exc:
            return [{"worker": name, "status": 0, "error": f"{type(exc).__name__}: {exc}"}]


def process_main(target: str, queue: Any, args: tuple, kwargs: dict) -> None:
    """Entry point of a worker process: run `target` and send its records back."""
    try:
        queue.put(globals()[target](*args, **kwargs))
    except BaseException as exc:  # noqa: BLE001 - reported to the test, which fails on it
        queue.put([{"status": 0, "error": f"worker process failed: {type(exc).__name__}: {exc}"}])
