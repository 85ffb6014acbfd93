"""The entries of a batch-response or transaction-response Bundle, errors that name the entry
they come from, and the Bundle's size while its entries complete.

Each entry's resource is serialised once, as it completes (a search's Bundle too), so its size
is known at once and the answer grows by bytes, not by parsed objects; once an entry takes the
Bundle past FHIR_MAX_RESPONSE_BYTES, no further entry runs.
"""

from __future__ import annotations

from typing import Any

import orjson

from fhir_server import jsonio
from fhir_server.errors import FhirError, Issue
from fhir_server.interactions.request import FhirRequest, FhirResponse
from fhir_server.storage.store import format_instant

_STATUS_TEXT = {200: "200 OK", 201: "201 Created", 204: "204 No Content", 304: "304 Not Modified"}
# What an entry takes besides its resource and outcome: `response` (status, location, etag…)
_ENTRY_OVERHEAD = 300


def response_entry(req: FhirRequest, result: FhirResponse) -> dict[str, Any]:
    return measured_entry(req, result)[0]


def measured_entry(req: FhirRequest, result: FhirResponse) -> tuple[dict[str, Any], int]:
    """The response entry of one entry's result, and about how many bytes it takes."""
    response: dict[str, Any] = {"status": _STATUS_TEXT.get(result.status, str(result.status))}
    if result.location:
        response["location"] = result.location.removeprefix(req.base_url + "/")
    if result.etag:
        response["etag"] = result.etag
    if result.last_modified:
        response["lastModified"] = format_instant(result.last_modified)
    out: dict[str, Any] = {}
    size = _ENTRY_OVERHEAD
    body = result.body
    if isinstance(body, dict) and body.get("resourceType") == "OperationOutcome" and result.status in (200, 201):
        response["outcome"] = body
        size += len(jsonio.dumps(body))
    elif isinstance(body, (bytes, bytearray)):
        out["resource"] = orjson.Fragment(body if isinstance(body, bytes) else bytes(body))
        size += len(body)
    elif isinstance(body, dict):
        data = jsonio.dumps(body)  # once, now: the parsed body is let go
        out["resource"] = orjson.Fragment(data)
        size += len(data)
    out["response"] = response
    return out, size


def error_entry(exc: FhirError) -> dict[str, Any]:
    return {"response": {"status": str(exc.status), "outcome": exc.outcome()}}


def measured_error(exc: FhirError) -> tuple[dict[str, Any], int]:
    item = error_entry(exc)
    return item, _ENTRY_OVERHEAD + len(jsonio.dumps(item["response"]["outcome"]))


def without_resource(item: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """A write's entry answered as with `Prefer: return=minimal` (what it wrote is done; its
    status, location and etag still tell the client)."""
    return {"response": item["response"]}, _ENTRY_OVERHEAD


def failed(exc: FhirError, where: str) -> FhirError:
    """The failing entry named in every issue, status kept (a transaction fails as its entry)."""
    issues = [Issue(i.severity, i.code, f"{where}: {i.diagnostics}", i.expression) for i in exc.issues]
    return FhirError(exc.status, issues, headers=exc.headers)


class ResponseSize:
    """The response Bundle's size while its entries complete, against FHIR_MAX_RESPONSE_BYTES."""

    def __init__(self, limit: int, kind: str):
        self.limit = limit
        self.kind = kind  # batch or transaction, for the message
        self.used = 0

    def fits(self, size: int) -> bool:
        """Count one more entry of `size` bytes; False once the Bundle is past the limit."""
        self.used += size
        return self.used <= self.limit

    def refusal(self, where: str) -> FhirError:
        """The 422 of the entry whose answer crossed the limit."""
        return FhirError(422, Issue("error", "too-costly", (
            f"{where}: with its answer the {self.kind} response would exceed {self.limit} bytes "
            f"(FHIR_MAX_RESPONSE_BYTES), so it and the entries after it were not answered; split the {self.kind} "
            f"into smaller ones, ask searches for fewer entries (_count, _elements, _summary), and read large "
            f"resources (Binary) one at a time")))
