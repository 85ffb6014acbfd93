"""Concurrent transactions updating the same resources, with and without ifMatch: every one
succeeds or fails cleanly (412 for a stale ifMatch), versions stay contiguous, no update is lost
and every transaction is all-or-nothing and serialised the same way on every resource it touches."""

from __future__ import annotations

import base64
import json
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx

from .support import FHIR_JSON, entry, history_versions, location, new_id, status, system, transact

THREADS = 8
PER_THREAD = 6


def _run(base_url: str, worker) -> list:
    barrier = threading.Barrier(THREADS)

    def start(t: int):
        with httpx.Client(base_url=base_url, timeout=120, headers={"Accept": FHIR_JSON}) as c:
            barrier.wait()
            return worker(c, t)

    with ThreadPoolExecutor(THREADS) as pool:
        return [item for chunk in pool.map(start, range(THREADS)) for item in chunk]


def _history_markers(client: httpx.Client, ref: str, sys_: str) -> list[tuple[int, list[str]]]:
    """(version, identifier values of the system) for every version, oldest first."""
    response = client.get(f"/{ref}/_history", params={"_count": "1000"})
    assert response.status_code == 200, response.text
    out = []
    for item in response.json()["entry"]:
        resource = item["resource"]
        values = [i["value"] for i in resource.get("identifier", []) if i["system"] == sys_]
        out.append((int(resource["meta"]["versionId"]), values))
    return sorted(out)


def test_concurrent_transactions_with_and_without_if_match(client, base_url):
    sys_ = system()
    refs = [f"Patient/{new_id('conc')}" for _ in range(3)]
    for ref in refs:
        id_ = ref.split("/")[1]
        assert client.put(f"/{ref}", json={"resourceType": "Patient", "id": id_}).status_code == 201

    def worker(c: httpx.Client, t: int):
        results = []
        for k in range(PER_THREAD):
            marker = f"{t}-{k}"
            with_if_match = t % 2 == 0
            read_versions = {}
            entries = []
            for ref in refs:
                request = {}
                if with_if_match:
                    r = c.get(f"/{ref}")
                    assert r.status_code == 200, r.text
                    read_versions[ref] = int(r.json()["meta"]["versionId"])
                    request["ifMatch"] = f'W/"{read_versions[ref]}"'
                resource = {"resourceType": "Patient", "id": ref.split("/")[1],
                            "identifier": [{"system": sys_, "value": marker}]}
                entries.append(entry("PUT", ref, resource, **request))
            r = transact(c, base_url, entries, prefer="return=minimal")
            results.append((marker, with_if_match, read_versions, r.status_code, r.json()))
        return results

    results = _run(base_url, worker)
    succeeded = []
    for marker, with_if_match, read_versions, code, body in results:
        if code == 200:
            items = body["entry"]
            assert [status(i) for i in items] == [200, 200, 200], body
            written = {f"{t}/{i}": v for t, i, v in (location(item) for item in items)}
            assert set(written) == set(refs)
            if with_if_match:  # written on top of exactly the versions read
                assert all(written[ref] == read_versions[ref] + 1 for ref in refs), (read_versions, written)
            succeeded.append(marker)
        else:
            assert with_if_match and code == 412, (marker, code, body)
            assert body["resourceType"] == "OperationOutcome"
    assert len([r for r in results if not r[1]]) == THREADS // 2 * PER_THREAD
    assert all(r[3] == 200 for r in results if not r[1]), "an update without ifMatch was refused"

    orders = []
    for ref in refs:
        history = _history_markers(client, ref, sys_)
        versions = [v for v, _ in history]
        assert versions == list(range(1, len(succeeded) + 2)), versions  # contiguous, one per success
        assert history_versions(client, ref) == versions
        markers = [values[0] for _, values in history[1:]]
        assert all(len(values) == 1 for _, values in history[1:])
        assert sorted(markers) == sorted(succeeded), "a transaction's update is missing or doubled"
        orders.append(markers)
    # every transaction wrote all three resources, in the same serial order
    assert orders[0] == orders[1] == orders[2]
    final = client.get(f"/{refs[0]}").json()
    assert final["identifier"][0]["value"] == orders[0][-1]


def test_concurrent_patch_transactions_lose_no_update(client, base_url):
    """JSON Patch `add /identifier/-` on two resources per transaction, no ifMatch: the patch is
    applied to the version current at commit time, so every marker ends up in both resources."""
    sys_ = system()
    refs = [f"Patient/{new_id('cpatch')}" for _ in range(2)]
    for ref in refs:
        id_ = ref.split("/")[1]
        body = {"resourceType": "Patient", "id": id_, "identifier": [{"system": sys_, "value": "start"}]}
        assert client.put(f"/{ref}", json=body).status_code == 201

    def worker(c: httpx.Client, t: int):
        results = []
        for k in range(PER_THREAD):
            marker = f"{t}-{k}"
            ops = [{"op": "add", "path": "/identifier/-", "value": {"system": sys_, "value": marker}}]
            binary = {"resourceType": "Binary", "contentType": "application/json-patch+json",
                      "data": base64.b64encode(json.dumps(ops).encode()).decode()}
            entries = [entry("PATCH", ref, binary) for ref in refs]
            r = transact(c, base_url, entries, prefer="return=minimal")
            results.append((marker, r.status_code, r.text))
        return results

    results = _run(base_url, worker)
    assert all(code == 200 for _, code, _ in results), [r for r in results if r[1] != 200][:3]
    expected = sorted(m for m, _, _ in results)
    orders = []
    for ref in refs:
        current = client.get(f"/{ref}").json()
        values = [i["value"] for i in current["identifier"]]
        assert values[0] == "start" and sorted(values[1:]) == expected, values
        assert current["meta"]["versionId"] == str(len(expected) + 1)
        assert history_versions(client, ref) == list(range(1, len(expected) + 2))
        orders.append(values[1:])
    assert orders[0] == orders[1]
