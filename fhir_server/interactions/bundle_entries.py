"""The entries of a batch or transaction Bundle, as requests: each entry's URL parsed like an
HTTP request line, its `ifMatch`/`ifNoneExist`… as headers, run through the same router.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson

from fhir_server.errors import FhirError, Issue, bad_request
from fhir_server.interactions import urls
from fhir_server.interactions.request import FhirRequest, FhirResponse
from fhir_server.storage.store import Version

if TYPE_CHECKING:
    from fhir_server.server import FhirServer

# The order the spec gives for processing a transaction's entries (GET/HEAD after the commit).
ORDER = {"DELETE": 0, "POST": 1, "PUT": 2, "PATCH": 2, "GET": 3, "HEAD": 3}


@dataclass
class Entry:
    index: int
    full_url: str | None
    method: str
    target: urls.Target
    request: FhirRequest
    resource: Any = None
    # decided inside the transaction
    key: str | None = None  # Type/id the entry writes
    existing: Version | None = None  # If-None-Exist matched this one: nothing written
    alias: bool = False  # If-None-Exist matched a resource an earlier entry creates
    written: list[Version] = field(default_factory=list)
    deleted_json: bytes | None = None  # what a DELETE entry deleted (the audit trail reads its patients)

    @property
    def reads(self) -> bool:
        """GET/HEAD and operations: run after the commit, they write nothing."""
        return self.method in ("GET", "HEAD") or self.target.shape.endswith("-operation")

    def where(self) -> str:
        return f"entry {self.index}" + (f" ({self.full_url})" if self.full_url else "")


def parse_entry(server: FhirServer, req: FhirRequest, index: int, raw: Any) -> Entry:
    where = f"Bundle.entry[{index}]"
    if not isinstance(raw, dict) or not isinstance(raw.get("request"), dict):
        raise bad_request(f"{where} has no request (method and url)", code="required", expression=f"{where}.request")
    request = raw["request"]
    method, url = request.get("method"), request.get("url")
    if method not in ORDER or not isinstance(url, str) or not url:
        raise bad_request(f"{where}.request needs a method (GET, HEAD, POST, PUT, PATCH, DELETE) and a url",
                          code="required", expression=f"{where}.request")
    target = urls.parse(url, req.base_url)
    resource = raw.get("resource")
    if method == "PATCH" and isinstance(resource, dict) and resource.get("resourceType") == "Binary":
        resource = _binary_patch(resource, where)
    entry_req = FhirRequest(
        method=method, base_url=req.base_url, shape=target.shape, operation=target.operation,
        type=target.type, id=target.id, version=target.version,
        compartment=target.compartment, params=target.params, body=resource,
        if_match=request.get("ifMatch"), if_none_match=request.get("ifNoneMatch"),
        if_modified_since=_instant(request.get("ifModifiedSince")), if_none_exist=request.get("ifNoneExist"),
        prefer_return=req.prefer_return, prefer_handling=req.prefer_handling, request_id=req.request_id,
        identity=req.identity, url=url, entry=index, provenance=req.provenance)
    if target.type is not None and not server.definitions.is_resource_type(target.type):
        raise FhirError(404, Issue("error", "not-supported", f"{where}: {target.type!r} is not a resource type"))
    full_url = raw.get("fullUrl") if isinstance(raw.get("fullUrl"), str) else None
    return Entry(index, full_url, method, target, entry_req, resource)


def _binary_patch(binary: dict[str, Any], where: str) -> Any:
    """A JSON Patch carried in a transaction as a Binary (its data is the base64 patch)."""
    import base64

    try:
        return orjson.loads(base64.b64decode(binary.get("data", ""), validate=True))
    except (ValueError, orjson.JSONDecodeError):
        raise bad_request(f"{where}.resource: the Binary does not hold a base64 JSON Patch") from None


def _instant(value: Any):
    if not isinstance(value, str):
        return None
    from fhir_server.search.dates import DateError, instant

    try:
        return instant(value)
    except DateError:
        return None


def dispatch(server: FhirServer, entry: Entry) -> FhirResponse:
    """One entry as the router runs any request (a HEAD entry answers without its body)."""
    if entry.target.shape.endswith("-search") and isinstance(entry.request.body, dict):
        entry.request.body = None
    result = server.dispatch(entry.request)
    if entry.method == "HEAD":
        result.body = None
    return result
