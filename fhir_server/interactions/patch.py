"""patch (PATCH [type]/[id] and conditional PATCH [type]?query): JSON Patch or FHIRPath Patch.

The patch is applied to the current version inside the write's transaction, the result is
validated whole (422 if it is not a valid resource) and stored as the next version.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fhir_server import jsonio
from fhir_server.errors import FhirError, Issue, bad_request
from fhir_server.interactions import conditional
from fhir_server.interactions.access import current_for_write, reach
from fhir_server.interactions.read import gone, unknown
from fhir_server.interactions.request import (
    FhirRequest,
    FhirResponse,
    check_id,
    check_if_match,
    parse_etag,
    versioned_response,
)
from fhir_server.interactions.resource import new_version, validate
from fhir_server.patch import fhirpath_patch, json_patch
from fhir_server.patch.limits import Limits
from fhir_server.storage.store import Version, Write, next_instant

if TYPE_CHECKING:
    from fhir_server.server import FhirServer


def patch(server: FhirServer, req: FhirRequest) -> FhirResponse:
    check_id(req.id)
    changes = _changes(req.body)
    expected = parse_etag(req.if_match) if req.if_match is not None else None

    def work(session):
        current = current_for_write(server, req, session, req.type, req.id, "u")
        return [patched_version(server, req.type, req.id, current, changes, expected, req.base_url)]

    server.prepare_type(req.type)
    return versioned_response(req, server.transact(work, req=req)[0], 200)


def conditional_patch(server: FhirServer, req: FhirRequest) -> FhirResponse:
    changes = _changes(req.body)
    text = conditional.query_string(req.params)
    query = conditional.parse(server, req.type, text, "the URL", reach(server, req, "s"))
    expected = parse_etag(req.if_match) if req.if_match is not None else None

    def work(session):
        found = conditional.matches(server, req.type, query, session, reach(server, req, "s"))
        conditional.at_most_one(found, req.type, text)
        if not found:
            raise FhirError(404, Issue("error", "not-found", f"no {req.type} matches {text!r}"))
        current = current_for_write(server, req, session, req.type, found[0].id, "u")
        return [patched_version(server, req.type, found[0].id, current, changes, expected, req.base_url)]

    server.prepare_type(req.type)
    return versioned_response(req, server.transact(work, req=req)[0], 200)


def _changes(body: Any) -> tuple[str, Any]:
    if isinstance(body, list):
        return "json", body
    if isinstance(body, dict) and body.get("resourceType") == "Parameters":
        return "fhirpath", body
    if body is None:
        raise bad_request("PATCH needs a body: a JSON Patch array (application/json-patch+json) or a "
                          "FHIRPath Patch Parameters resource", code="required")
    raise bad_request("a PATCH body is a JSON Patch array or a FHIRPath Patch Parameters resource")


def element_at(definitions, path: str):
    """The ElementModel at an element path (`Patient.name.given`), through backbone elements and
    data types; None if the path leaves the definitions."""
    from fhir_server.definitions.model import models_for

    names = path.split(".")
    model = models_for(definitions).resource(names[0])
    elements = model.elements if model else {}
    element = None
    for name in names[1:]:
        element = elements.get(name) or elements.get(f"{name}[x]")
        if element is None:
            return None
        elements = element.child_elements()
    return element


def patched_version(server: FhirServer, type_: str, id_: str, current: Version | None, changes: tuple[str, Any],
                    expected: str | None, base_url: str | None = None) -> Write:
    """The next version of type/id with the patch applied, validated whole (422 otherwise)."""
    if current is None:
        raise unknown(type_, id_)
    if current.deleted:
        raise gone(current)
    check_if_match(f"{type_}/{id_}", current, expected)
    resource = jsonio.loads(current.json)
    kind, body = changes
    limits = Limits(server.settings.max_patch_operations, server.settings.max_body_bytes)
    if kind == "json":
        result = json_patch.apply(resource, body, limits, len(current.json))
    else:
        result = fhirpath_patch.apply(resource, body, lambda path: element_at(server.definitions, path), limits,
                                      len(current.json))
    if not isinstance(result, dict) or result.get("resourceType") != type_ or result.get("id") != id_:
        raise FhirError(422, Issue("error", "business-rule", "a patch may not change resourceType or id"))
    validate(server, result, status=422)
    return new_version(server, result, id_, current.version + 1, current.version,
                       next_instant(current.last_updated), "PATCH", base_url, current)
