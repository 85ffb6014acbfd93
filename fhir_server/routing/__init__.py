"""The one router: a `FhirRequest` (from HTTP or a bundle entry) → its interaction or operation.

HTTP and batch/transaction entries both come through `dispatch`, so whatever is checked here
(resource types, methods, and later who may do what) holds on every path alike.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fhir_server.errors import FhirError, Issue
from fhir_server.interactions import break_the_glass
from fhir_server.interactions.access import authorize, check_mutable
from fhir_server.interactions.audit import access
from fhir_server.interactions.request import FhirRequest, FhirResponse
from fhir_server.routing import tables

if TYPE_CHECKING:
    from fhir_server.server import FhirServer

# URL shapes anyone may ask for, without a token: what a client needs to learn how to get one.
PUBLIC_SHAPES = frozenset({"metadata", "smart-configuration"})
# Interactions whose work does not grow with what the client asks for: one resource in or out.
_BOUNDED = frozenset({"capabilities", "smart-configuration", "read", "vread", "create", "update", "delete", "patch"})


def heavy(shape: str, method: str) -> bool:
    """Whether a request's work grows with what it asks for — searches, histories, bundles,
    operations, conditional writes — so that it runs in the lane that cannot crowd out reads
    and single writes (api/lanes.py)."""
    if shape.endswith("-operation"):
        return True
    found = tables.interaction(shape, "GET" if method == "HEAD" else method)
    return found is None or found.conditional or found.code not in _BOUNDED


def dispatch(server: FhirServer, req: FhirRequest) -> FhirResponse:
    """Run the request and leave its AuditEvent, whatever came of it."""
    server.audit.check()
    interaction = _interaction_code(req)
    try:
        response = _route(server, req)
    except FhirError as exc:
        server.audit.record(access(req, interaction, exc.status, error=str(exc)))
        raise
    except Exception:
        server.audit.record(access(req, interaction, 500, error="internal error"))
        raise
    server.audit.record(access(req, interaction, response.status, response))
    if break_the_glass.applies(server, req) and req.entry is None:
        break_the_glass.notify(server, req, response)
    return response


def _interaction_code(req: FhirRequest) -> str | None:
    """The restful-interaction code the audit records (None: not a request this server routes)."""
    if req.shape.endswith("-operation"):
        return "operation"
    method = "GET" if req.method == "HEAD" else req.method
    found = tables.interaction(req.shape, method)
    if found is None:
        return None
    if found.code in ("transaction", "batch"):
        body_type = req.body.get("type") if isinstance(req.body, dict) else None
        return body_type if body_type in ("transaction", "batch") else found.code
    return found.code


def _route(server: FhirServer, req: FhirRequest) -> FhirResponse:
    """Run the request; HEAD runs GET (the caller drops the body), OPTIONS lists the methods."""
    method = "GET" if req.method == "HEAD" else req.method
    if req.type is not None and not server.definitions.is_resource_type(req.type):
        raise FhirError(404, Issue("error", "not-supported", f"{req.type!r} is not a FHIR R4 resource type this "
                                   f"server knows (see [base]/metadata)"))
    if req.identity is None and req.shape not in PUBLIC_SHAPES:
        raise RuntimeError("a request reached the router without an identity")  # a wiring fault: fail closed
    if req.shape.endswith("-operation"):
        return _operation(server, req, method)
    allowed = tables.methods(req.shape)
    if method == "OPTIONS":
        return FhirResponse(204, headers={"Allow": ", ".join(allowed)})
    interaction = tables.interaction(req.shape, method)
    if interaction is None:
        raise FhirError(405, Issue("error", "not-supported", f"{req.method} is not supported on this URL; use "
                                   f"{', '.join(m for m in allowed if m != 'HEAD')}"),
                        headers={"Allow": ", ".join(allowed)})
    if interaction.letter is not None:
        check_mutable(req.type, interaction.letter, upsert=interaction.code == "update" and not interaction.conditional)
        authorize(req, req.type, interaction.letter)
        if interaction.conditional or req.if_none_exist:
            authorize(req, req.type, "s")  # a condition is a search: it tells what exists
    return interaction.handler(server, req)


def _operation(server: FhirServer, req: FhirRequest, method: str) -> FhirResponse:
    level = req.shape.split("-", 1)[0]
    operation = tables.operation(req.operation or "", level, req.type)
    if operation is None:
        raise FhirError(404, Issue("error", "not-supported", f"${req.operation} is not an operation of this server "
                                   f"at the {level} level (see [base]/metadata)"))
    if method not in operation.methods:
        allowed = " or ".join(operation.methods)
        raise FhirError(405, Issue("error", "not-supported", f"${operation.name} takes {allowed}"),
                        headers={"Allow": ", ".join(operation.methods)})
    authorize(req, req.type, operation.letter)
    return operation.handler(server, req)
