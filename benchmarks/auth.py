"""What security costs: the same reads, searches and creates with bearer tokens checked, every
access audited and every write given its Provenance, next to the same server in open mode with
the audit trail off, on one database, in one run.

    python -m benchmarks.auth [--patients 1000] [--repeat 300] [--out benchmarks/out/auth.json]

The dataset of benchmarks/search.py is loaded once; two `fhir-server serve` processes share the
database, one in open mode with FHIR_AUDIT=false and one with FHIR_AUTH_ISSUER pointing at a small OpenID issuer
served here (discovery and JWKS on loopback, an RS256 key made for the run: the benchmark
measures the server, not a provider). Requests alternate between the two servers in rounds so
that noise from the shared machine falls on both alike; each operation's p50 is compared.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
from joserfc import jwt
from joserfc.jwk import RSAKey

from benchmarks import report, search
from fhir_server.storage.embedded import _free_port

AUDIENCE = "https://bench.test/fhir"


class Issuer:
    """Discovery and JWKS of a one-key issuer on loopback, and tokens signed with that key."""

    def __init__(self) -> None:
        self.key = RSAKey.generate_key(2048, parameters={"kid": "bench-key"})
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        documents = {"/.well-known/openid-configuration": {"issuer": self.url, "jwks_uri": f"{self.url}/jwks",
                                                           "token_endpoint": f"{self.url}/token"},
                     "/jwks": {"keys": [self.key.as_dict(private=False)]}}

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - the http.server name
                body = json.dumps(documents.get(self.path, {})).encode()
                self.send_response(200 if self.path in documents else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def token(self, scope: str = "system/*.cruds") -> str:
        now = int(time.time())
        claims = {"iss": self.url, "aud": AUDIENCE, "sub": "bench", "client_id": "bench", "scope": scope,
                  "iat": now, "exp": now + 3600}
        return jwt.encode({"alg": "RS256", "kid": "bench-key"}, claims, self.key)

    def stop(self) -> None:
        self.server.shutdown()


def _serve(uri: str, data_dir: Path, extra: dict[str, str]) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    env = {**os.environ, "FHIR_MONGODB_URI": uri, "FHIR_DATA_DIR": str(data_dir), **extra}
    process = subprocess.Popen([sys.executable, "-m", "fhir_server", "serve", "--port", str(port),
                                "--log-level", "warning"], env=env)
    base_url = f"http://127.0.0.1:{port}/fhir"
    search.wait_for(base_url)
    return process, base_url


def _operations(n: int) -> list[tuple[str, str, str, Any]]:
    return [("read", "GET", "/Patient/pat{i}", None),
            ("search", "GET", "/CarePlan?subject=Patient/pat{i}", None),
            ("create", "POST", "/Observation", {"resourceType": "Observation", "status": "final",
                                               "code": {"text": "poids"},
                                               "subject": {"reference": "Patient/pat{i}"}})]


def measure(off_url: str, on_url: str, token: str, n: int, repeat: int) -> dict[str, Any]:
    """p50 per operation on both servers, requests alternating between them."""
    samples: dict[tuple[str, str], list[float]] = {}
    headers = {"Accept": "application/fhir+json"}
    with httpx.Client(timeout=60, headers=headers) as off, \
            httpx.Client(timeout=60, headers={**headers, "Authorization": f"Bearer {token}"}) as on:
        for round_ in range(repeat + 20):  # the first 20 rounds warm both up
            i = (round_ * 7919) % n
            for name, method, path, body in _operations(n):
                url_path = path.format(i=i)
                payload = json.loads(json.dumps(body).replace("{i}", str(i))) if body else None
                for label, client, base in (("off", off, off_url), ("on", on, on_url)):
                    t = time.perf_counter()
                    response = client.request(method, base + url_path, json=payload)
                    elapsed = time.perf_counter() - t
                    if response.status_code >= 400:
                        raise RuntimeError(f"{label} {method} {url_path}: {response.status_code} {response.text[:200]}")
                    if round_ >= 20:
                        samples.setdefault((name, label), []).append(elapsed)
    out = {}
    for name, *_ in _operations(n):
        off_ms = statistics.median(samples[(name, "off")]) * 1000
        on_ms = statistics.median(samples[(name, "on")]) * 1000
        out[name] = {"off_p50_ms": off_ms, "on_p50_ms": on_ms, "on_over_off": on_ms / off_ms}
    return out


def run(n: int, repeat: int, params) -> dict[str, Any]:
    issuer = Issuer()
    tmp = Path(os.environ.get("TMPDIR", "/tmp"))
    try:
        with search.loaded_server(n, params) as env:
            off, off_url = _serve(env.uri, tmp / f"open-bench-{os.getpid()}", {"FHIR_AUDIT": "false"})
            on, on_url = _serve(env.uri, tmp / f"auth-bench-{os.getpid()}",
                                {"FHIR_AUTH_ISSUER": issuer.url, "FHIR_AUTH_AUDIENCE": AUDIENCE})
            try:
                return {"patients": n, "repeat": repeat, "operations": measure(off_url, on_url, issuer.token(),
                                                                               n, repeat)}
            finally:
                for process in (off, on):
                    process.send_signal(signal.SIGTERM)
                    process.wait(30)
    finally:
        issuer.stop()


def main() -> None:
    from fhir_server.config import Settings
    from fhir_server.definitions.packages import PackageCache
    from fhir_server.definitions.registry import Definitions, ensure_core
    from fhir_server.search.parameters import SearchParameters

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--patients", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=300)
    parser.add_argument("--out", default=report.out_path("auth.json"), help="default: benchmarks/out/auth.json")
    args = parser.parse_args()
    settings = Settings.from_env()
    cache = PackageCache(settings.package_cache, settings.package_registry)
    params = SearchParameters(Definitions([ensure_core(cache)]))
    result = run(args.patients, args.repeat, params)
    report.write_json({"machine": report.machine(), "auth": result}, Path(args.out))
    for name, row in result["operations"].items():
        print(f"{name:8} off {row['off_p50_ms']:.2f} ms  on {row['on_p50_ms']:.2f} ms  on/off {row['on_over_off']:.3f}")


if __name__ == "__main__":
    main()
