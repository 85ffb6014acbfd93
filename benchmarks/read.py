"""Reads by id over HTTP, next to the raw pymongo `find_one` of the same documents; and where a
read's time goes (cProfile of the request path, in-process).

    python -m benchmarks.read [--patients 2000] [--reads 2000] [--out benchmarks/out/read.json]

The dataset of benchmarks/search.py is loaded into a fresh embedded database; a running
`fhir-server serve` answers `GET /fhir/Patient/{id}` for random ids, one request at a time over a
keep-alive connection; the raw baseline is `find_one({"_id": id}, {"json": 1})` on the same
collection, in the same run. The profile drives the same ASGI application in this process (the
thread-pool hop replaced by a direct call so that cProfile sees the handler) and groups the time
by layer.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import pstats
import random
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from benchmarks import report


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def measure(base_url: str, db, n_patients: int, reads: int, seed: int = 11) -> dict[str, Any]:
    """`reads` random Patient reads over HTTP, then the same ids with raw `find_one`."""
    rnd = random.Random(seed)
    ids = [f"pat{rnd.randrange(n_patients)}" for _ in range(reads)]
    collection = db["Patient"]
    with httpx.Client(base_url=base_url, timeout=60, headers={"Accept": "application/fhir+json"}) as client:
        for id_ in ids[:100]:  # warm-up
            client.get(f"/Patient/{id_}").raise_for_status()
        http_times = []
        start = time.perf_counter()
        for id_ in ids:
            t = time.perf_counter()
            response = client.get(f"/Patient/{id_}")
            http_times.append(time.perf_counter() - t)
            if response.status_code != 200:
                raise RuntimeError(f"GET Patient/{id_}: {response.status_code} {response.text[:200]}")
        http_s = time.perf_counter() - start
    for id_ in ids[:100]:
        collection.find_one({"_id": id_}, {"json": 1})
    raw_times = []
    start = time.perf_counter()
    for id_ in ids:
        t = time.perf_counter()
        doc = collection.find_one({"_id": id_}, {"json": 1})
        raw_times.append(time.perf_counter() - t)
        if doc is None:
            raise RuntimeError(f"raw find_one found no {id_}")
    raw_s = time.perf_counter() - start
    return {
        "reads": reads,
        "fhir": {"reads_per_s": reads / http_s, "p50_ms": percentile(http_times, 0.5) * 1000,
                 "p95_ms": percentile(http_times, 0.95) * 1000},
        "raw": {"reads_per_s": reads / raw_s, "p50_ms": percentile(raw_times, 0.5) * 1000,
                "p95_ms": percentile(raw_times, 0.95) * 1000},
        "ratio_fhir_over_raw": (reads / http_s) / (reads / raw_s),
    }


# -- profile -------------------------------------------------------------------------------------
LAYERS = [  # (layer, substrings of the code's file or name), first match wins
    ("database round trip (socket wait)", ("recv_into", "sendall", "'recv'", "select.poll", "poll' of", "_socket")),
    ("pymongo / bson (driver)", ("pymongo", "bson")),
    ("fhir_server (interaction, store, headers)", ("fhir_server",)),
    ("FastAPI / Starlette routing and responses", ("fastapi", "starlette", "pydantic", "anyio")),
    ("asyncio event loop", ("asyncio",)),
]


def _layer(func: tuple[str, int, str]) -> str:
    filename, _, name = func
    text = f"{filename} '{name}'" if filename == "~" else filename
    for layer, needles in LAYERS:
        if any(n in text for n in needles):
            return layer
    return "other (stdlib, threading, ssl, logging…)"


def profile(uri: str, n_patients: int, reads: int, top: int = 12, seed: int = 13) -> dict[str, Any]:
    """cProfile of `reads` GET /fhir/Patient/{id} through the ASGI app, in this process."""
    os.environ["FHIR_MONGODB_URI"] = uri
    from fhir_server.api import app as app_module
    from fhir_server.config import Settings
    from fhir_server.server import FhirServer

    server = FhirServer.open(Settings.from_env(), uri)
    app = app_module.create_app(server)

    async def inline(func, *args, **kwargs):  # the handler in this thread, where the profiler is
        return func(*args, **kwargs)

    app_module.run_in_threadpool = inline
    rnd = random.Random(seed)
    ids = [f"pat{rnd.randrange(n_patients)}" for _ in range(reads)]

    async def get(path: str) -> int:
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
                 "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
                 "headers": [(b"host", b"bench"), (b"accept", b"application/fhir+json")],
                 "client": ("127.0.0.1", 9), "server": ("bench", 80)}
        status = []

        async def receive():
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message):
            if message["type"] == "http.response.start":
                status.append(message["status"])

        await app(scope, receive, send)
        return status[0]

    async def run(paths: list[str]) -> None:
        for path in paths:
            code = await get(path)
            if code != 200:
                raise RuntimeError(f"{path}: {code}")

    from fhir_server.interactions.read import read
    from fhir_server.interactions.request import FhirRequest

    loop = asyncio.new_event_loop()

    def per_read_ms(func) -> float:
        for id_ in ids[:100]:
            func(id_)
        start = time.perf_counter()
        for id_ in ids:
            func(id_)
        return (time.perf_counter() - start) / len(ids) * 1000

    try:
        collection = server.database.db["Patient"]
        # where the time goes, layer by layer, without the profiler (wall clock, ms per read)
        layers_ms = {
            "raw find_one": per_read_ms(lambda i: collection.find_one({"_id": i}, {"json": 1})),
            "store.read (find_one + Version)": per_read_ms(lambda i: server.store.read("Patient", i)),
            "interaction read()": per_read_ms(
                lambda i: read(server, FhirRequest("GET", "http://bench/fhir", type="Patient", id=i))),
            "ASGI app in-process (FastAPI, no HTTP)": per_read_ms(
                lambda i: loop.run_until_complete(run([f"/fhir/Patient/{i}"]))),
        }
        profiler = cProfile.Profile()
        start = time.perf_counter()
        profiler.enable()
        loop.run_until_complete(run([f"/fhir/Patient/{i}" for i in ids]))
        profiler.disable()
        elapsed = time.perf_counter() - start
    finally:
        loop.close()
        server.close()
    stats = pstats.Stats(profiler)
    total = sum(row[2] for row in stats.stats.values())  # tottime
    layers: dict[str, float] = {}
    for func, row in stats.stats.items():
        layers[_layer(func)] = layers.get(_layer(func), 0.0) + row[2]
    by_own = sorted(stats.stats.items(), key=lambda item: -item[1][2])[:top]
    by_cumulative = sorted(((f, r) for f, r in stats.stats.items() if "fhir_server" in f[0]),
                           key=lambda item: -item[1][3])[:top]

    def name(func: tuple[str, int, str]) -> str:
        filename, line, fn = func
        if filename == "~":
            return fn
        short = filename.split("site-packages/")[-1].split("/fhir_server/")[-1]
        if "fhir_server" in filename:
            short = "fhir_server/" + short
        return f"{short}:{line} {fn}"

    return {
        "reads": reads,
        "layers_ms_per_read": layers_ms,
        "in_process_reads_per_s_profiled": reads / elapsed,  # with the profiler's overhead
        "layers_percent": {k: round(100 * v / total, 1) for k, v in sorted(layers.items(), key=lambda kv: -kv[1])},
        "top_own_time": [{"function": name(f), "calls": r[1], "own_ms_per_read": 1000 * r[2] / reads,
                          "percent": round(100 * r[2] / total, 1)} for f, r in by_own],
        "top_fhir_server_cumulative": [{"function": name(f), "cumulative_ms_per_read": 1000 * r[3] / reads,
                                        "percent": round(100 * r[3] / total, 1)} for f, r in by_cumulative],
    }


def main() -> None:
    from benchmarks.search import loaded_server
    from fhir_server.config import Settings
    from fhir_server.definitions.packages import PackageCache
    from fhir_server.definitions.registry import Definitions, ensure_core
    from fhir_server.search.parameters import SearchParameters

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--patients", type=int, default=2000)
    parser.add_argument("--reads", type=int, default=2000)
    parser.add_argument("--out", default=report.out_path("read.json"), help="default: benchmarks/out/read.json")
    args = parser.parse_args()
    settings = Settings.from_env()
    params = SearchParameters(Definitions([ensure_core(PackageCache(settings.package_cache,
                                                                    settings.package_registry))]))
    with loaded_server(args.patients, params) as env:
        result = measure(env.base_url, env.db, args.patients, args.reads)
        result["profile"] = profile(env.uri, args.patients, args.reads)
    result["command"] = " ".join(["python -m benchmarks.read"] + sys.argv[1:])
    print(json.dumps(result, indent=2))
    report.write_json(result, Path(args.out))


if __name__ == "__main__":
    main()
