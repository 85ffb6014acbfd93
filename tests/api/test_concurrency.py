"""Concurrent writers through HTTP: optimistic locking (If-Match), no lost update, contiguous
versions, and conditional creates that create once."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from .support import identifier_system, new_id

THREADS = 8


def _run(base_url: str, worker, n: int = THREADS) -> list:
    barrier = threading.Barrier(n)

    def start(i):
        with httpx.Client(base_url=base_url, timeout=120) as c:
            barrier.wait()
            return worker(c, i)

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(start, range(n)))


def _history_versions(client, type_, id_):
    entries = []
    url, params = f"/{type_}/{id_}/_history", {"_count": "1000"}
    r = client.get(url, params=params)
    assert r.status_code == 200
    bundle = r.json()
    entries.extend(bundle.get("entry", []))
    assert not any(x["relation"] == "next" for x in bundle["link"])
    return bundle["total"], entries


def _marker(resource: dict) -> str | None:
    ids = resource.get("identifier") or []
    return ids[0]["value"] if ids else None


def test_if_match_race_loses_no_update(client, base_url):
    id_ = new_id("race")
    system = identifier_system()
    assert client.put(f"/Patient/{id_}", json={"resourceType": "Patient", "id": id_}).status_code == 201
    per_thread = 10

    def worker(c: httpx.Client, t: int):
        done, conflicts = [], 0
        while len(done) < per_thread:
            current = c.get(f"/Patient/{id_}")
            assert current.status_code == 200, current.text
            version = current.json()["meta"]["versionId"]
            assert current.headers["etag"] == f'W/"{version}"'
            marker = f"{t}-{len(done)}"
            body = {"resourceType": "Patient", "id": id_, "identifier": [{"system": system, "value": marker}]}
            r = c.put(f"/Patient/{id_}", json=body, headers={"If-Match": f'W/"{version}"'})
            if r.status_code == 412:
                assert r.json()["resourceType"] == "OperationOutcome"
                conflicts += 1
                continue
            assert r.status_code == 200, r.text
            assert r.headers["etag"] == f'W/"{int(version) + 1}"'
            assert r.json()["meta"]["versionId"] == str(int(version) + 1)
            done.append((int(r.json()["meta"]["versionId"]), marker))
        return done, conflicts

    results = _run(base_url, worker)
    successes = [s for done, _ in results for s in done]
    assert len(successes) == THREADS * per_thread
    final = client.get(f"/Patient/{id_}")
    assert final.json()["meta"]["versionId"] == str(len(successes) + 1)
    versions = sorted(v for v, _ in successes)
    assert versions == list(range(2, len(successes) + 2))  # each success got its own version
    total, entries = _history_versions(client, "Patient", id_)
    assert total == len(successes) + 1
    assert [int(e["resource"]["meta"]["versionId"]) for e in entries] == list(range(total, 0, -1))
    content = {int(e["resource"]["meta"]["versionId"]): _marker(e["resource"]) for e in entries}
    for version, marker in successes:
        assert content[version] == marker
        vread = client.get(f"/Patient/{id_}/_history/{version}")
        assert _marker(vread.json()) == marker
    assert content[1] is None


def test_updates_without_if_match_all_succeed_with_contiguous_versions(client, base_url):
    id_ = new_id("race")
    system = identifier_system()
    assert client.put(f"/Patient/{id_}", json={"resourceType": "Patient", "id": id_}).status_code == 201
    per_thread = 5

    def worker(c: httpx.Client, t: int):
        out = []
        for n in range(per_thread):
            marker = f"{t}-{n}"
            r = c.put(f"/Patient/{id_}", json={"resourceType": "Patient", "id": id_,
                                               "identifier": [{"system": system, "value": marker}]})
            assert r.status_code == 200, r.text
            out.append((int(r.json()["meta"]["versionId"]), marker))
            assert r.headers["etag"] == f'W/"{out[-1][0]}"'
        return out

    successes = [s for out in _run(base_url, worker) for s in out]
    n = len(successes)
    assert sorted(v for v, _ in successes) == list(range(2, n + 2))
    total, entries = _history_versions(client, "Patient", id_)
    assert total == n + 1
    assert [int(e["resource"]["meta"]["versionId"]) for e in entries] == list(range(n + 1, 0, -1))
    content = {int(e["resource"]["meta"]["versionId"]): _marker(e["resource"]) for e in entries}
    assert {content[v] for v, _ in successes} == {m for _, m in successes}
    for version, marker in successes:
        assert content[version] == marker
    times = [e["response"]["lastModified"] for e in entries]
    assert times == sorted(times, reverse=True) and len(set(times)) == len(times)


def test_concurrent_conditional_creates_create_once(client, base_url):
    system = identifier_system()

    def worker(c: httpx.Client, t: int):
        r = c.post("/Patient", json={"resourceType": "Patient", "identifier": [{"system": system, "value": "x"}],
                                     "name": [{"text": f"thread {t}"}]},
                   headers={"If-None-Exist": f"identifier={system}|x"})
        assert r.status_code in (200, 201), r.text
        return r.status_code, r.json()["id"]

    results = _run(base_url, worker)
    assert sorted(s for s, _ in results) == [200] * (THREADS - 1) + [201]
    assert len({id_ for _, id_ in results}) == 1
    id_ = results[0][1]
    # exactly one resource matches: a conditional update finds one (not 412), and it is at version 1
    check = client.post("/Patient", json={"resourceType": "Patient"}, headers={"If-None-Exist": f"identifier={system}|x"})
    assert check.status_code == 200 and check.json()["id"] == id_
    assert client.get(f"/Patient/{id_}/_history").json()["total"] == 1
    found = client.get("/Patient", params={"identifier": f"{system}|x"})
    assert found.status_code == 200
    assert [e["resource"]["id"] for e in found.json().get("entry", [])] == [id_]


def test_concurrent_conditional_updates_create_once(client, base_url):
    system = identifier_system()

    def worker(c: httpx.Client, t: int):
        r = c.put("/Patient", params={"identifier": f"{system}|x"},
                  json={"resourceType": "Patient", "identifier": [{"system": system, "value": "x"}],
                        "name": [{"text": f"thread {t}"}]})
        assert r.status_code in (200, 201), r.text
        return r.status_code, r.json()["id"], int(r.json()["meta"]["versionId"])

    results = _run(base_url, worker)
    assert sorted(s for s, _, _ in results) == [200] * (THREADS - 1) + [201]
    assert len({id_ for _, id_, _ in results}) == 1
    assert sorted(v for _, _, v in results) == list(range(1, THREADS + 1))
    found = client.get("/Patient", params={"identifier": f"{system}|x"})
    assert found.status_code == 200
    assert [e["resource"]["id"] for e in found.json().get("entry", [])] == [results[0][1]]


def test_concurrent_update_as_create_of_one_id(client, base_url):
    id_ = new_id("race")

    def worker(c: httpx.Client, t: int):
        r = c.put(f"/Patient/{id_}", json={"resourceType": "Patient", "id": id_, "name": [{"text": f"t{t}"}]})
        assert r.status_code in (200, 201), r.text
        return r.status_code, int(r.json()["meta"]["versionId"])

    results = _run(base_url, worker)
    assert sorted(s for s, _ in results) == [200] * (THREADS - 1) + [201]
    assert sorted(v for _, v in results) == list(range(1, THREADS + 1))
    total, _ = _history_versions(client, "Patient", id_)
    assert total == THREADS


def test_concurrent_deletes_leave_one_tombstone(client, base_url):
    id_ = new_id("race")
    client.put(f"/Patient/{id_}", json={"resourceType": "Patient", "id": id_})

    def worker(c: httpx.Client, t: int):
        r = c.delete(f"/Patient/{id_}")
        return r.status_code, r.headers.get("etag")

    results = _run(base_url, worker)
    assert [s for s, _ in results] == [200] * THREADS
    assert sorted(e for _, e in results if e) == ['W/"2"']
    total, entries = _history_versions(client, "Patient", id_)
    assert total == 2 and "resource" not in entries[0]


@pytest.mark.parametrize("per_thread", [10])
def test_concurrent_creates_get_distinct_ids(client, base_url, per_thread):
    def worker(c: httpx.Client, t: int):
        out = []
        for _ in range(per_thread):
            r = c.post("/Patient", json={"resourceType": "Patient", "active": True})
            assert r.status_code == 201, r.text
            out.append(r.json()["id"])
        return out

    ids = [i for out in _run(base_url, worker) for i in out]
    assert len(set(ids)) == THREADS * per_thread
    for id_ in ids[:: per_thread]:
        assert client.get(f"/Patient/{id_}").status_code == 200
