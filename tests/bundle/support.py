"""Helpers of the bundle tests: building batch/transaction Bundles, reading their responses,
dedicated servers, and a raw dump of the embedded database to prove that nothing changed.

Everything goes through HTTP against real `fhir-server serve` processes; pymongo is only used
to *look* at the embedded database of a dedicated test server (never to write FHIR data).
"""

from __future__ import annotations

import re
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
from pymongo import MongoClient

_ROOT = Path(__file__).resolve().parents[2]
if str(_ROOT) not in sys.path:  # `tests.conftest` is importable from the repository root
    sys.path.insert(0, str(_ROOT))

from fhir_server.storage.embedded import client_uri  # noqa: E402
from tests.conftest import RunningServer, free_port, start_server  # noqa: E402

__all__ = ["RunningServer", "free_port", "start_server"]

FHIR_JSON = "application/fhir+json"
JSON_PATCH = "application/json-patch+json"
INSTANT_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")
_STATUS_RE = re.compile(r"^(\d{3})(\s.*)?$")
_LOCATION_RE = re.compile(r"^(?:.*/)?([A-Za-z]+)/([A-Za-z0-9\-.]{1,64})/_history/(\d+)$")


def new_id(prefix: str = "b") -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


def urn() -> str:
    return f"urn:uuid:{uuid.uuid4()}"


def system() -> str:
    """An identifier system nobody else in the session uses (no `://`, see the conditional
    reference tests for why that matters)."""
    return f"urn:test:{uuid.uuid4().hex}"


def entry(method: str, url: str, resource: dict | None = None, full_url: str | None = None,
          **request: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if full_url is not None:
        out["fullUrl"] = full_url
    if resource is not None:
        out["resource"] = resource
    out["request"] = {"method": method, "url": url, **request}
    return out


def bundle(kind: str, entries: list[dict[str, Any]]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": kind, "entry": entries}


def post_bundle(client: httpx.Client, base_url: str, body: dict[str, Any] | bytes,
                prefer: str | None = None, **headers: str) -> httpx.Response:
    """POST [base] (exactly the base URL, no trailing slash)."""
    all_headers = {"Content-Type": FHIR_JSON, "Accept": FHIR_JSON, **headers}
    if prefer:
        all_headers["Prefer"] = prefer
    if isinstance(body, (bytes, bytearray)):
        return client.post(base_url, content=bytes(body), headers=all_headers)
    return client.post(base_url, json=body, headers=all_headers)


def transact(client: httpx.Client, base_url: str, entries: list[dict[str, Any]], prefer: str | None = None,
             **headers: str) -> httpx.Response:
    return post_bundle(client, base_url, bundle("transaction", entries), prefer, **headers)


def batch(client: httpx.Client, base_url: str, entries: list[dict[str, Any]], prefer: str | None = None,
          **headers: str) -> httpx.Response:
    return post_bundle(client, base_url, bundle("batch", entries), prefer, **headers)


def response_bundle(response: httpx.Response, kind: str, count: int) -> list[dict[str, Any]]:
    """The entries of a 200 batch-/transaction-response holding `count` entries."""
    assert response.status_code == 200, (response.status_code, response.text)
    body = response.json()
    assert body["resourceType"] == "Bundle", body
    assert body["type"] == kind, body["type"]
    entries = body.get("entry", [])
    assert len(entries) == count, (len(entries), count, body)
    for item in entries:
        assert isinstance(item.get("response"), dict), item
        assert _STATUS_RE.match(item["response"]["status"]), item["response"]
    return entries


def status(item: dict[str, Any]) -> int:
    match = _STATUS_RE.match(item["response"]["status"])
    assert match, item["response"]
    return int(match.group(1))


def location(item: dict[str, Any]) -> tuple[str, str, int]:
    """(type, id, version) named by an entry's response.location."""
    match = _LOCATION_RE.match(item["response"]["location"])
    assert match, item["response"]
    return match.group(1), match.group(2), int(match.group(3))


def outcome_text(outcome: dict[str, Any]) -> str:
    assert outcome["resourceType"] == "OperationOutcome", outcome
    assert outcome["issue"], outcome
    return " | ".join(i.get("diagnostics", "") for i in outcome["issue"])


def assert_error(response: httpx.Response, statuses: int | tuple[int, ...]) -> str:
    """The response is an error OperationOutcome with one of `statuses`; returns its diagnostics."""
    wanted = (statuses,) if isinstance(statuses, int) else statuses
    assert response.status_code in wanted, (response.status_code, response.text)
    assert response.headers["content-type"].startswith(FHIR_JSON), response.headers
    body = response.json()
    assert body["resourceType"] == "OperationOutcome", body
    assert any(i["severity"] in ("error", "fatal") for i in body["issue"]), body
    return outcome_text(body)


def read(client: httpx.Client, ref: str) -> dict[str, Any]:
    response = client.get(f"/{ref}")
    assert response.status_code == 200, (ref, response.status_code, response.text)
    return response.json()


def search_ids(client: httpx.Client, type_: str, **params: str) -> list[str]:
    response = client.get(f"/{type_}", params={**params, "_count": "1000"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert not any(link["relation"] == "next" for link in body.get("link", [])), "more than one page"
    return sorted(e["resource"]["id"] for e in body.get("entry", []) if e.get("search", {}).get("mode") == "match")


def history_versions(client: httpx.Client, ref: str) -> list[int]:
    """Version ids of every history entry of one resource, oldest first (one page)."""
    response = client.get(f"/{ref}/_history", params={"_count": "1000"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert not any(link["relation"] == "next" for link in body.get("link", [])), "more than one page"
    versions = []
    for item in body.get("entry", []):
        if "resource" in item:
            versions.append(int(item["resource"]["meta"]["versionId"]))
        else:  # a deletion
            versions.append(int(item["response"]["etag"].split('"')[1]))
    return sorted(versions)


def system_history(client: httpx.Client) -> list[tuple[str, str]]:
    """Every entry of the system history as (fullUrl, etag), following `next` links."""
    out = []
    response = client.get("/_history", params={"_count": "1000"})
    while True:
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["type"] == "history", body
        out.extend((e.get("fullUrl", ""), e["response"].get("etag", "")) for e in body.get("entry", [])
                   if "/AuditEvent/" not in e.get("fullUrl", ""))  # the trail of the test's own requests
        nxt = [link["url"] for link in body.get("link", []) if link["relation"] == "next"]
        if not nxt:
            return out
        response = client.get(nxt[0])


def system_history_total(client: httpx.Client) -> int:
    return len(system_history(client))


# -- the embedded database of a dedicated server, looked at directly -------------------------------
def embedded_uri(server: RunningServer) -> str:
    """The embedded database's URI, from the server's log line `embedded database pid … on port N`
    and the credential in its data folder."""
    ports = re.findall(r"embedded database pid \d+ on port (\d+)", server.log())
    assert ports, f"no embedded database line in the server log:\n{server.log()}"
    return client_uri(server.data_dir, int(ports[-1]))


def mongo(server: RunningServer) -> MongoClient:
    return MongoClient(embedded_uri(server), serverSelectionTimeoutMS=10000, appname="bundle-tests")


def dump(client: MongoClient, skip: tuple[str, ...] = ()) -> dict[str, list[dict[str, Any]]]:
    """Every document of every collection of every user database, sorted by _id.

    An empty collection is left out: creating a collection or an index before a write is not
    data (the server prepares indexes for a type before its first transaction). Collections
    named in `skip` are left out too, and so is the audit trail (AuditEvents and their history),
    which every request adds to."""
    out: dict[str, list[dict[str, Any]]] = {}
    for db_name in client.list_database_names():
        if db_name in ("admin", "config", "local"):
            continue
        db = client[db_name]
        for name in db.list_collection_names():
            if name.startswith("system.") or name in skip or name == "AuditEvent":
                continue
            docs = sorted(db[name].find({"t": {"$ne": "AuditEvent"}} if name == "_history" else {}),
                          key=lambda d: repr(d["_id"]))
            if docs:
                out[f"{db_name}.{name}"] = docs
    return out


def dump_difference(before: dict, after: dict) -> str:
    lines = []
    for name in sorted(set(before) | set(after)):
        old = {repr(d["_id"]): d for d in before.get(name, [])}
        new = {repr(d["_id"]): d for d in after.get(name, [])}
        for key in sorted(set(old) | set(new)):
            if old.get(key) != new.get(key):
                lines.append(f"{name} {key}: {'absent' if key not in old else 'present'} → "
                             f"{'absent' if key not in new else 'changed' if key in old else 'present'}")
    return "\n".join(lines[:50])
