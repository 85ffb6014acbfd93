"""Helpers of the robustness tests: dedicated servers, their embedded database looked at (and
faulted) with pymongo, their processes found through /proc, and checks every response must meet.

Every test here starts its own `fhir-server serve` (tests/conftest.py `start_server`) on a data
directory of its own, so that killing, faulting or flooding it touches no other test.
"""

from __future__ import annotations

import re
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from pymongo import MongoClient

_ROOT = Path(__file__).resolve().parents[2]
if str(_ROOT) not in sys.path:  # `tests.conftest` is importable from the repository root
    sys.path.insert(0, str(_ROOT))

from fhir_server.storage.embedded import client_uri  # noqa: E402
from tests.bundle.support import dump as bundle_dump  # noqa: E402
from tests.bundle.support import dump_difference  # noqa: E402
from tests.conftest import RunningServer, free_port, start_server  # noqa: E402

__all__ = ["RunningServer", "dump_difference", "free_port", "start_server"]

FHIR_JSON = "application/fhir+json"
JSON_PATCH = "application/json-patch+json"
# What a Python stack trace or an internal exception looks like when it leaks into a body.
LEAK_RE = re.compile(r"Traceback \(most recent call last\)|File \"[^\"]+\.py\", line \d+|"
                     r"pymongo\.errors|\bbson\.|starlette\.|fastapi\.|fhir_server\.\w+\.\w+")


def new_id(prefix: str = "rb") -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


def system() -> str:
    return f"urn:robustness:{uuid.uuid4().hex}"


def client(server: RunningServer, timeout: float = 120) -> httpx.Client:
    return httpx.Client(base_url=server.base_url, timeout=timeout, headers={"Accept": FHIR_JSON})


# -- responses -----------------------------------------------------------------------------------
def assert_clean(response: httpx.Response, allowed: tuple[str, ...] = ("OperationOutcome", "Bundle"),
                 server_error_ok: bool = False) -> Any:
    """A FHIR JSON body of one of `allowed` types (or no body for 204/304), no stack trace; no
    5xx but 503 unless `server_error_ok`. Returns the parsed body (None when empty)."""
    what = f"{response.request.method} {str(response.request.url)[:200]} → {response.status_code}"
    if not server_error_ok:
        assert response.status_code < 500 or response.status_code == 503, f"{what}: {response.text[:500]}"
    if response.status_code in (204, 304) or response.request.method == "HEAD":
        return None
    assert response.headers.get("content-type", "").startswith(("application/fhir+json", "application/json")), \
        f"{what}: content-type {response.headers.get('content-type')!r}: {response.text[:300]}"
    text = response.text
    assert not LEAK_RE.search(text), f"{what}: internals leak into the body: {text[:800]}"
    body = response.json()
    assert isinstance(body, dict) and body.get("resourceType") in allowed, f"{what}: {text[:300]}"
    if body["resourceType"] == "OperationOutcome":
        assert body.get("issue"), f"{what}: an OperationOutcome without issues"
        for issue in body["issue"]:
            assert issue.get("severity") in ("fatal", "error", "warning", "information"), issue
            assert isinstance(issue.get("code"), str) and issue["code"], issue
    if response.status_code >= 400:
        assert body["resourceType"] == "OperationOutcome", f"{what}: an error that is not an OperationOutcome"
    return body


def assert_outcome(response: httpx.Response, statuses: tuple[int, ...]) -> str:
    """An error OperationOutcome with one of `statuses`; its diagnostics."""
    assert response.status_code in statuses, (response.status_code, response.text[:500])
    body = assert_clean(response, ("OperationOutcome",), server_error_ok=True)
    assert any(i["severity"] in ("error", "fatal") for i in body["issue"]), body
    return " | ".join(i.get("diagnostics", "") for i in body["issue"])


# -- the embedded database of a dedicated server -------------------------------------------------
def embedded_port(server: RunningServer) -> int:
    """The embedded database's port, from the server's log line `embedded database pid … on port N`."""
    ports = re.findall(r"embedded database pid \d+ on port (\d+)", server.log())
    assert ports, f"no embedded database line in the server log:\n{server.log()[-2000:]}"
    return int(ports[-1])


def mongo(server: RunningServer, timeout_ms: int = 10000) -> MongoClient:
    return MongoClient(client_uri(server.data_dir, embedded_port(server)),
                       serverSelectionTimeoutMS=timeout_ms, appname="robustness-tests")


def dump(client: MongoClient, skip: tuple[str, ...] = ("_searches",)) -> dict[str, list[dict[str, Any]]]:
    """`tests.bundle.support.dump`, stored search pages left out (a read may add some)."""
    return bundle_dump(client, skip)


@contextmanager
def fail_point(db: MongoClient, commands: list[str], mode: Any = None, **data: Any) -> Iterator[None]:
    """`failCommand` on the server's own connections (appName fhir-server) for the block."""
    spec = {"configureFailPoint": "failCommand", "mode": mode or {"times": 1},
            "data": {"failCommands": commands, "appName": "fhir-server", **data}}
    db.admin.command(spec)
    try:
        yield
    finally:
        db.admin.command({"configureFailPoint": "failCommand", "mode": "off"})


# -- processes -----------------------------------------------------------------------------------
def rss_bytes(pid: int) -> int:
    """Resident set size of a process, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


# -- history -------------------------------------------------------------------------------------
def history(http: httpx.Client, ref: str) -> dict[int, dict[str, Any] | None]:
    """version → resource (None for a deletion) of every history entry of one resource, following
    `next` links."""
    out: dict[int, dict[str, Any] | None] = {}
    response = http.get(f"/{ref}/_history", params={"_count": "1000"})
    while True:
        assert response.status_code == 200, response.text[:500]
        body = response.json()
        for item in body.get("entry", []):
            if "resource" in item:
                version = int(item["resource"]["meta"]["versionId"])
                out[version] = item["resource"]
            else:
                version = int(item["response"]["etag"].split('"')[1])
                out[version] = None
        nxt = [link["url"] for link in body.get("link", []) if link["relation"] == "next"]
        if not nxt:
            return out
        response = http.get(nxt[0])
