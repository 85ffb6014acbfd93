"""Concurrent mixed load over loopback, next to the same mix as raw pymongo operations.

    python -m benchmarks.mixed [--patients 2000] [--threads 4] [--seconds 10] [--out benchmarks/out/mixed.json]

N client threads, each with its own keep-alive HTTP client, run for T seconds a fixed mix on the
dataset of benchmarks/search.py: 60% reads by id (`GET Patient/{id}`), 30% searches
(`GET CarePlan?subject=Patient/{id}`), 10% creates (`POST Communication`). Then N threads run the
same mix for T seconds as raw pymongo operations on the same database (`find_one` by `_id`, `find`
on the `k` index key the search drives with, `insert_one` of the JSON into another collection).
Reported: operations/s in total and per kind, p50/p95 latency per kind, and the ratio of
throughputs FHIR ÷ raw.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from benchmarks import report

MIX = (("read", 0.6), ("search", 0.3), ("create", 0.1))


def _kind(rnd: random.Random) -> str:
    r, acc = rnd.random(), 0.0
    for kind, share in MIX:
        acc += share
        if r < acc:
            return kind
    return MIX[-1][0]


def _message(p: int) -> dict[str, Any]:
    return {"resourceType": "Communication", "status": "completed", "subject": {"reference": f"Patient/pat{p}"},
            "sent": "2026-02-01T10:00:00+01:00", "payload": [{"contentString": "Mixed load message"}]}


def percentile(samples: list[float], q: float) -> float:
    if not samples:
        return 0.0
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _run(threads: int, seconds: float, operation) -> dict[str, Any]:
    """`operation(state, kind, rnd)` in `threads` threads for `seconds`; latencies per kind."""
    barrier = threading.Barrier(threads + 1)
    results: list[dict[str, list[float]]] = [{} for _ in range(threads)]
    errors: list[str] = []
    deadline: list[float] = []

    def worker(index: int) -> None:
        rnd = random.Random(index)
        state: dict[str, Any] = {}
        times = results[index]
        try:
            barrier.wait()
            while time.perf_counter() < deadline[0]:
                kind = _kind(rnd)
                t = time.perf_counter()
                operation(state, kind, rnd)
                times.setdefault(kind, []).append(time.perf_counter() - t)
        except Exception as exc:  # noqa: BLE001 - reported, the benchmark fails on it
            errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            if "close" in state:
                state["close"]()

    pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for thread in pool:
        thread.start()
    deadline.append(time.perf_counter() + seconds)
    barrier.wait()
    start = time.perf_counter()
    for thread in pool:
        thread.join()
    elapsed = time.perf_counter() - start
    if errors:
        raise RuntimeError(f"mixed load failed: {errors[:3]}")
    merged: dict[str, list[float]] = {}
    for times in results:
        for kind, samples in times.items():
            merged.setdefault(kind, []).extend(samples)
    total = sum(len(v) for v in merged.values())
    return {"ops_per_s": total / elapsed, "operations": total,
            "per_kind": {kind: {"ops_per_s": len(v) / elapsed, "p50_ms": percentile(v, 0.5) * 1000,
                                "p95_ms": percentile(v, 0.95) * 1000} for kind, v in sorted(merged.items())}}


def measure(base_url: str, db, n_patients: int, threads: int, seconds: float) -> dict[str, Any]:
    def fhir(state: dict[str, Any], kind: str, rnd: random.Random) -> None:
        if "client" not in state:
            state["client"] = httpx.Client(base_url=base_url, timeout=60,
                                           headers={"Accept": "application/fhir+json",
                                                    "Content-Type": "application/fhir+json"})
            state["close"] = state["client"].close
        client: httpx.Client = state["client"]
        p = rnd.randrange(n_patients)
        if kind == "read":
            response = client.get(f"/Patient/pat{p}")
        elif kind == "search":
            response = client.get("/CarePlan", params={"subject": f"Patient/pat{p}"})
        else:
            response = client.post("/Communication", content=json.dumps(_message(p)))
        if response.status_code >= 300:
            raise RuntimeError(f"{kind}: {response.status_code} {response.text[:200]}")

    raw_created = db["raw_Communication"]

    def raw(state: dict[str, Any], kind: str, rnd: random.Random) -> None:
        p = rnd.randrange(n_patients)
        if kind == "read":
            if db["Patient"].find_one({"_id": f"pat{p}"}, {"json": 1}) is None:
                raise RuntimeError(f"no pat{p}")
        elif kind == "search":
            if not list(db["CarePlan"].find({"k": f"subject=Patient/pat{p}"}, {"json": 1})):
                raise RuntimeError(f"no care plan of pat{p}")
        else:
            raw_created.insert_one({"_id": str(uuid.uuid4()), "json": json.dumps(_message(p)).encode()})

    fhir_result = _run(threads, seconds, fhir)
    raw_result = _run(threads, seconds, raw)
    return {"threads": threads, "seconds": seconds, "mix": dict(MIX), "fhir": fhir_result, "raw": raw_result,
            "ratio_fhir_over_raw": fhir_result["ops_per_s"] / raw_result["ops_per_s"]}


def main() -> None:
    from benchmarks.search import loaded_server
    from fhir_server.config import Settings
    from fhir_server.definitions.packages import PackageCache
    from fhir_server.definitions.registry import Definitions, ensure_core
    from fhir_server.search.parameters import SearchParameters

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--patients", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--out", default=report.out_path("mixed.json"), help="default: benchmarks/out/mixed.json")
    args = parser.parse_args()
    settings = Settings.from_env()
    params = SearchParameters(Definitions([ensure_core(PackageCache(settings.package_cache,
                                                                    settings.package_registry))]))
    with loaded_server(args.patients, params) as env:
        result = measure(env.base_url, env.db, args.patients, args.threads, args.seconds)
    result["command"] = " ".join(["python -m benchmarks.mixed"] + sys.argv[1:])
    print(json.dumps(result, indent=2))
    report.write_json(result, Path(args.out))


if __name__ == "__main__":
    main()
