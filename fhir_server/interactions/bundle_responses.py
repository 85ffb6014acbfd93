"""The entries of a batch-response or transaction-response Bundle, and errors that name the
entry they come from."""

from __future__ import annotations

from typing import Any

import orjson

from fhir_server.errors import FhirError, Issue
from fhir_server.interactions.request import FhirRequest, FhirResponse
from fhir_server.storage.store import format_instant

_STATUS_TEXT = {200: "200 OK", 201: "201 Created", 204: "204 No Content", 304: "304 Not Modified"}


def response_entry(req: FhirRequest, result: FhirResponse) -> dict[str, Any]:
    response: dict[str, Any] = {"status": _STATUS_TEXT.get(result.status, str(result.status))}
    if result.location:
        response["location"] = result.location.removeprefix(req.base_url + "/")
    if result.etag:
        response["etag"] = result.etag
    if result.last_modified:
        response["lastModified"] = format_instant(result.last_modified)
    out: dict[str, Any] = {}
    body = result.body
    if isinstance(body, dict) and body.get("resourceType") == "OperationOutcome" and result.status in (200, 201):
        response["outcome"] = body
    elif isinstance(body, (bytes, bytearray)):
        out["resource"] = orjson.Fragment(bytes(body))
    elif isinstance(body, dict):
        out["resource"] = body
    out["response"] = response
    return out


def error_entry(exc: FhirError) -> dict[str, Any]:
    return {"response": {"status": str(exc.status), "outcome": exc.outcome()}}


def failed(exc: FhirError, where: str) -> FhirError:
    """The failing entry named in every issue, status kept (a transaction fails as its entry)."""
    issues = [Issue(i.severity, i.code, f"{where}: {i.diagnostics}", i.expression) for i in exc.issues]
    return FhirError(exc.status, issues, headers=exc.headers)
