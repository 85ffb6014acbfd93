"""Write throughput with 0, 10 and 100 active rest-hook Subscriptions, and how long a
notification takes from the write's answer to the receiver.

    python -m benchmarks.notifications [--writes 300] [--threads 4] [--out benchmarks/out/notifications.json]

A fresh `fhir-server serve` (embedded database, open mode, no audit) and a local HTTP receiver;
for each count, that many Subscriptions on `Observation?code=…` (each write concerns all of
them), then `--writes` Observations POSTed by `--threads` clients; throughput is writes per
second while notifications are being delivered, latency is per notification (write answered →
POST received), p50/p95/max, once every notification has arrived.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from benchmarks import report
from benchmarks.read import percentile
from benchmarks.search import wait_for


class Receiver:
    """Arrival time of each (subscription path, resource id)."""

    def __init__(self) -> None:
        self.arrived: dict[tuple[str, str], float] = {}
        self.lock = threading.Lock()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                at = time.perf_counter()
                with owner.lock:
                    owner.arrived.setdefault((self.path, json.loads(body)["id"]), at)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(client: httpx.Client, receiver: Receiver, count: int, writes: int, threads: int) -> dict[str, Any]:
    code = f"bench-{count}-{time.time_ns()}"
    paths = [f"/{code}/{i}" for i in range(count)]
    subs = []
    for path in paths:
        body = {"resourceType": "Subscription", "status": "requested", "reason": "benchmark",
                "criteria": f"Observation?code=http://bench|{code}",
                "channel": {"type": "rest-hook", "endpoint": receiver.url + path, "payload": "application/fhir+json"}}
        answer = client.post("/Subscription", json=body)
        answer.raise_for_status()
        subs.append(answer.json())
    time.sleep(1)  # the matcher sees them
    written: dict[str, float] = {}

    def write(_: int) -> None:
        obs = {"resourceType": "Observation", "status": "final",
               "code": {"coding": [{"system": "http://bench", "code": code}]}}
        answer = client.post("/Observation", json=obs)
        answer.raise_for_status()
        written[answer.json()["id"]] = time.perf_counter()

    start = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(write, range(writes)))
    elapsed = time.perf_counter() - start
    expected = {(p, i) for p in paths for i in written}
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not expected <= set(receiver.arrived):
        time.sleep(0.1)
    latencies = [receiver.arrived[k] - written[k[1]] for k in expected if k in receiver.arrived]
    for sub in subs:  # off, so the next count measures its own Subscriptions only
        client.put(f"/Subscription/{sub['id']}", json={**sub, "status": "off"}).raise_for_status()
    out: dict[str, Any] = {"subscriptions": count, "writes": writes, "writes_per_s": writes / elapsed,
                           "notifications": len(expected), "delivered": len(latencies)}
    if latencies:
        out.update(latency_p50_ms=percentile(latencies, 0.5) * 1000, latency_p95_ms=percentile(latencies, 0.95) * 1000,
                   latency_max_ms=max(latencies) * 1000)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.notifications", description=__doc__.split("\n\n")[0])
    parser.add_argument("--writes", type=int, default=300)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--counts", default="0,10,100")
    parser.add_argument("--out", default=report.out_path("notifications.json"))
    args = parser.parse_args(argv)
    receiver = Receiver()
    with tempfile.TemporaryDirectory() as tmp:
        port = _free_port()
        env = {k: v for k, v in os.environ.items() if k != "FHIR_MONGODB_URI"}
        env.update(FHIR_DATA_DIR=str(Path(tmp) / "data"), FHIR_AUDIT="false")
        server = subprocess.Popen([sys.executable, "-m", "fhir_server", "serve", "--port", str(port),
                                   "--log-level", "warning"], env=env, cwd=tmp)
        try:
            base_url = f"http://127.0.0.1:{port}/fhir"
            wait_for(base_url)
            with httpx.Client(base_url=base_url, timeout=60, headers={"Accept": "application/fhir+json"}) as client:
                results = [run(client, receiver, int(c), args.writes, args.threads) for c in args.counts.split(",")]
        finally:
            server.terminate()
            server.wait(30)
    for row in results:
        print(json.dumps({k: round(v, 1) if isinstance(v, float) else v for k, v in row.items()}))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"machine": report.machine(), "runs": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
