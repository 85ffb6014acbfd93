"""A request and what came of it, as the `Access` the audit trail records (security/audit_events.py).

The router calls this for every request and bundle entry it routes, the transaction for each
entry it writes. Only references are taken: the bodies are scanned for patients later, on the
audit trail's thread.
"""

from __future__ import annotations

from typing import Any

from fhir_server import jsonio
from fhir_server.interactions.request import FhirRequest, FhirResponse
from fhir_server.security.audit_events import Access
from fhir_server.security.patients import patients_in_url
from fhir_server.storage.store import Write, now

_SEARCHES = ("search-type", "search-system", "history-type", "history-system", "operation")


def access(req: FhirRequest, interaction: str | None, status: int, response: FhirResponse | None = None,
           error: str | None = None) -> Access:
    """The access `req` made, answered `status` (`response`, or the `error` text)."""
    identity = req.identity
    bodies: list[Any] = []
    for body in (req.body, response.body if response is not None else None,
                 *(response.touched if response is not None else ())):
        if body is not None and not any(body is seen for seen in bodies):
            bodies.append(body)
    patients = patients_in_url(req.url)
    if req.type == "Patient" and req.id:
        patients.add(req.id)
    return Access(recorded=now(), identity=identity, address=identity.address if identity else None,
                  method=req.method, interaction=interaction, status=status, path=req.url,
                  request_id=req.request_id, resource=_resource(req, response), query=interaction in _SEARCHES,
                  error=error, patients=patients, bodies=bodies, entry=req.entry)


def consequence(req: FhirRequest, write: Write) -> Access:
    """The access of a write the server made because of `req` (a unit-of-work rule, such as the
    document a replacement supersedes): the same user and request id, the version written."""
    identity = req.identity
    return Access(recorded=now(), identity=identity, address=identity.address if identity else None,
                  method="DELETE" if write.json is None else "PUT",
                  interaction="delete" if write.json is None else "update", status=200,
                  path=f"{write.type}/{write.id}", request_id=req.request_id,
                  resource=f"{write.type}/{write.id}/_history/{write.version}",
                  bodies=[] if write.json is None else [jsonio.loads(write.json)], consequence=True)


def _resource(req: FhirRequest, response: FhirResponse | None) -> str | None:
    """`Type/id/_history/n` of the version acted on, or as much of it as is known."""
    if response is not None and response.location and response.location.startswith(req.base_url + "/"):
        return response.location[len(req.base_url) + 1:]
    if req.type is None or req.id is None:
        return None
    version = req.version
    if version is None and response is not None and response.etag:
        version = response.etag.removeprefix("W/").strip('"')
    return f"{req.type}/{req.id}" + (f"/_history/{version}" if version else "")
