"""Many clients at once — threads of this process AND separate processes, each with its own HTTP
client — writing the same few resources of a dedicated server in every way a client can: PUT with
and without If-Match, JSON Patch with and without If-Match, transactions patching two of them
and creating a third resource, plain creates, and conditional creates racing on one query.

Afterwards, from the server's history: versions are contiguous 1..N; each acknowledged write is
in exactly one version, with its content, and no version exists that no acknowledged write made;
a write based on a version (If-Match, patch, transaction) is applied on top of exactly the
previous version (no lost update); a refused write (412) left no trace; transactions are
serialised in the same order on every resource they touch; every acknowledged write reads back.
(tests/api/test_concurrency.py covers the thread-only, single-kind races.)
"""

from __future__ import annotations

import multiprocessing
import queue as queue_module
import threading
from collections import Counter
from typing import Any

import pytest

from . import workers
from .support import client, history, new_id, start_server, system

THREADS = 4
PROCESSES = 4
OPS = 15  # writes per worker


@pytest.fixture(scope="module")
def server(tmp_path_factory, r4_examples):
    running = start_server(tmp_path_factory.mktemp("concurrency"))
    yield running
    running.stop()


@pytest.fixture
def http(server):
    with client(server) as c:
        yield c


def run_clients(target: str, thread_args: list[tuple], process_args: list[tuple], **kwargs: Any) -> list[dict]:
    """`workers.<target>(*args, barrier=…, **kwargs)` in one thread per `thread_args` item and one
    spawned process per `process_args` item, all released together; their records, flattened."""
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(len(thread_args) + len(process_args))
    results: queue_module.Queue = queue_module.Queue()
    out_queue = ctx.Queue()
    processes = [ctx.Process(target=workers.process_main, args=(target, out_queue, args, {**kwargs, "barrier": barrier}),
                             daemon=True) for args in process_args]
    for process in processes:
        process.start()

    def in_thread(args: tuple) -> None:
        try:
            results.put(getattr(workers, target)(*args, barrier=barrier, **kwargs))
        except BaseException as exc:  # noqa: BLE001
            results.put([{"status": 0, "error": f"worker thread failed: {type(exc).__name__}: {exc}"}])

    threads = [threading.Thread(target=in_thread, args=(args,)) for args in thread_args]
    for thread in threads:
        thread.start()
    records: list[dict] = []
    for _ in processes:
        records.extend(out_queue.get(timeout=300))
    for thread in threads:
        thread.join(300)
    for process in processes:
        process.join(30)
        assert process.exitcode == 0, f"worker process exit code {process.exitcode}"
    while not results.empty():
        records.extend(results.get())
    return records


def _values(resource: dict, sys_: str) -> list[str]:
    return [i["value"] for i in resource.get("identifier", []) if i.get("system") == sys_]


def test_mixed_writes_from_threads_and_processes(server, http):
    sys_ = system()
    refs = [f"Patient/{new_id('mix')}" for _ in range(3)]
    for ref in refs:
        body = {"resourceType": "Patient", "id": ref.split("/")[1], "name": [{"text": "initial"}],
                "identifier": [{"system": sys_, "value": "initial"}]}
        assert http.put(f"/{ref}", json=body).status_code == 201

    args = lambda i, kind: (server.base_url, refs, sys_, f"{kind}{i}", OPS, 1000 + i)  # noqa: E731
    records = run_clients("mixed_worker", [args(i, "t") for i in range(THREADS)],
                          [args(i, "p") for i in range(PROCESSES)])
    assert len(records) == (THREADS + PROCESSES) * OPS, [r for r in records if "kind" not in r][:3]
    assert {r["worker"][0] for r in records} == {"t", "p"}  # both threads and processes wrote

    # Every request was answered as it must be: a success, or a 412 for a stale If-Match.
    expected = {"put": (200,), "put-if-match": (200, 412), "patch": (200,), "patch-if-match": (200, 412),
                "transaction": (200,), "create": (201,)}
    wrong = [r for r in records if r["status"] not in expected[r["kind"]]]
    assert not wrong, wrong[:5]
    refused = [r for r in records if r["status"] == 412]

    # Acknowledged writes per shared resource: (version, marker, kind, record)
    acks: dict[str, list[tuple[int, str, str, dict]]] = {ref: [] for ref in refs}
    for r in records:
        if r["status"] != 200:
            continue
        if r["kind"] == "transaction":
            for written_ref, version in r["written"][:2]:
                acks[written_ref].append((version, r["marker"], r["kind"], r))
        else:
            acks[r["ref"]].append((r["version"], r["marker"], r["kind"], r))

    refused_markers = {r["marker"] for r in refused}
    for ref in refs:
        versions = history(http, ref)
        n = max(versions)
        assert sorted(versions) == list(range(1, n + 1)), f"{ref}: versions not contiguous: {sorted(versions)}"
        mine = acks[ref]
        # each acknowledged write has its own version, and every version after the first is one
        counts = Counter(v for v, _, _, _ in mine)
        assert not [v for v, c in counts.items() if c > 1], f"{ref}: two acknowledged writes got one version"
        assert sorted(counts) == list(range(2, n + 1)), \
            f"{ref}: versions without an acknowledged write, or writes without a version: {sorted(counts)} vs 2..{n}"
        for version, marker, kind, record in mine:
            resource = versions[version]
            assert resource is not None and resource["name"][0]["text"] == marker, (ref, version, marker, resource)
            values, previous = _values(resource, sys_), _values(versions[version - 1], sys_)
            if kind == "put":  # stored as sent
                assert values == record["sent"], (ref, version, values, record["sent"])
            else:  # based on the previous version: nothing of it lost
                assert values == previous + [marker], \
                    f"{ref} v{version} ({kind} {marker}) is not v{version - 1} plus its marker: lost update"
            if kind == "put-if-match":
                assert version == record["read_version"] + 1
        # a refused write left no trace
        for resource in versions.values():
            assert resource["name"][0]["text"] not in refused_markers
            assert not refused_markers & set(_values(resource, sys_))
        # the current version and every version read back as the history has them
        current = http.get(f"/{ref}")
        assert current.status_code == 200 and current.json() == versions[n]
        for version, _, _, _ in mine:
            vread = http.get(f"/{ref}/_history/{version}")
            assert vread.status_code == 200 and vread.json() == versions[version]

    # transactions: all-or-nothing and serialised in one order on every resource they touch
    transactions = [r for r in records if r["kind"] == "transaction"]
    for r in transactions:
        (a, va), (b, vb), (obs, ov) = r["written"]
        assert {a, b} == set(r["pair"]) and ov == 1
        observation = http.get(f"/{obs}")
        assert observation.status_code == 200, observation.text
        assert observation.json()["code"]["text"] == r["marker"]
        assert observation.json()["subject"]["reference"] == r["pair"][0]
    for i, r1 in enumerate(transactions):
        for r2 in transactions[i + 1:]:
            common = set(r1["pair"]) & set(r2["pair"])
            if len(common) == 2:
                v1, v2 = dict(r1["written"][:2]), dict(r2["written"][:2])
                orders = {v1[ref] < v2[ref] for ref in common}
                assert len(orders) == 1, f"transactions {r1['marker']} and {r2['marker']} serialised in two orders"

    # plain creates: each one readable, with its content, at version 1 with one history entry
    for r in (r for r in records if r["kind"] == "create"):
        (ref, version), = r["written"]
        assert version == 1
        read = http.get(f"/{ref}")
        assert read.status_code == 200 and read.json()["name"][0]["text"] == r["marker"]
        assert list(history(http, ref)) == [1]
    ids = [r["written"][0][0] for r in records if r["kind"] == "create"]
    assert len(set(ids)) == len(ids)


@pytest.mark.parametrize("round_", range(3))
def test_racing_conditional_creates_make_one_resource(server, http, round_):
    """Processes and threads POST the same conditional create (If-None-Exist), half of them as a
    transaction entry with ifNoneExist: exactly one resource is created, everyone is told its id."""
    sys_ = system()
    value = "same"
    args = lambda i, kind: (server.base_url, sys_, value, f"{kind}{i}", i % 2 == 1)  # noqa: E731
    records = run_clients("conditional_create_worker", [args(i, "t") for i in range(THREADS)],
                          [args(i, "p") for i in range(PROCESSES + 2)])
    assert all(r["status"] in (200, 201) for r in records), [r for r in records if r["status"] not in (200, 201)]
    assert sorted(r["status"] for r in records) == [200] * (len(records) - 1) + [201], records
    ids = {r["id"] for r in records}
    assert len(ids) == 1, f"{len(ids)} resources created for one If-None-Exist: {ids}"
    id_ = ids.pop()
    assert {r["version"] for r in records} == {1}
    found = http.get("/Patient", params={"identifier": f"{sys_}|{value}"})
    assert found.status_code == 200
    assert [e["resource"]["id"] for e in found.json().get("entry", [])] == [id_]
    assert list(history(http, f"Patient/{id_}")) == [1]

