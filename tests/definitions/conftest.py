"""Fixtures of the package tests: a local package registry (FR Core: `fr_core_tgz` of tests/conftest.py).

The registry is a real HTTP server (http.server in a thread) answering
`GET /<name>/<version>` with a .tgz, as packages.fhir.org does, and 404 for anything else.
"""

from __future__ import annotations

import http.server
import threading

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "network: needs the public npm registry (registry.npmjs.org); runs by default, "
                   "deselect with -m 'not network'")


class LocalRegistry:
    """Serves `packages[path] = bytes`; records every path asked for."""

    def __init__(self) -> None:
        self.packages: dict[str, bytes] = {}
        self.requests: list[str] = []
        registry = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server naming)
                registry.requests.append(self.path)
                body = registry.packages.get(self.path)
                if body is None:
                    self.send_response(404)
                    self.send_header("Content-Type", "text/plain")
                    payload = b"not found"
                else:
                    self.send_response(200)
                    self.send_header("Content-Type", "application/tar+gzip")
                    payload = body
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> LocalRegistry:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def registry():
    with LocalRegistry() as running:
        yield running

