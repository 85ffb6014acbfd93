"""update (PUT [type]/[id]), update-as-create, If-Match, and conditional update (PUT [type]?query)."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from fhir_server.errors import bad_request
from fhir_server.interactions import conditional
from fhir_server.interactions.access import IMMUTABLE, immutable, reach, replaceable
from fhir_server.interactions.request import (
    FhirRequest,
    FhirResponse,
    check_id,
    check_if_match,
    parse_etag,
    versioned_response,
)
from fhir_server.interactions.resource import new_version, require_body, validate
from fhir_server.storage.store import Write, next_instant

if TYPE_CHECKING:
    from fhir_server.server import FhirServer


def update(server: FhirServer, req: FhirRequest) -> FhirResponse:
    resource = update_body(req)
    validate(server, resource)
    server.prepare_type(req.type)
    expected = _if_match(req)

    def work(session):
        return [next_version(server, req, session, req.id, resource, expected)]

    written = server.transact(work, req=req)[0]
    return versioned_response(req, written, 201 if written.version == 1 else 200,
                              location=written.version == 1)


def conditional_update(server: FhirServer, req: FhirRequest) -> FhirResponse:
    """PUT [type]?query: 0 matches → create, 1 → update it, several → 412."""
    resource = require_body(req)
    validate(server, resource)
    server.prepare_type(req.type)
    query = conditional.parse(server, req.type, conditional.query_string(req.params), "the URL",
                              reach(server, req, "s"))
    expected = _if_match(req)

    def work(session):
        found = conditional.matches(server, req.type, query, session, reach(server, req, "s"))
        conditional.at_most_one(found, req.type, conditional.query_string(req.params))
        body_id = resource.get("id")
        if found:
            if body_id is not None and body_id != found[0].id:
                raise bad_request(f"the body's id {body_id!r} is not the id of the matching resource "
                                  f"{req.type}/{found[0].id}", code="invariant", expression=f"{req.type}.id")
            id_ = found[0].id
        else:
            id_ = check_id(body_id) if body_id is not None else str(uuid.uuid4())
        return [next_version(server, req, session, id_, resource, expected)]

    written = server.transact(work, [conditional.guard_key(req.type, query)], req=req)[0]
    return versioned_response(req, written, 201 if written.version == 1 else 200,
                              location=written.version == 1)


def update_body(req: FhirRequest) -> dict:
    """The body of `PUT [type]/[id]`: a resource of the type whose id is the URL's."""
    check_id(req.id)
    resource = require_body(req)
    body_id = resource.get("id")
    if body_id is None:
        raise bad_request(f"the resource has no id; PUT {req.type}/{req.id} needs \"id\": \"{req.id}\" in "
                          f"the body", code="required", expression=f"{req.type}.id")
    if body_id != req.id:
        raise bad_request(f"the body's id {body_id!r} does not match the URL's id {req.id!r}",
                          code="invariant", expression=f"{req.type}.id")
    return resource


def _if_match(req: FhirRequest) -> str | None:
    return parse_etag(req.if_match) if req.if_match is not None else None


def next_version(server: FhirServer, req: FhirRequest, session, id_: str, resource: dict,
                 expected: str | None) -> Write:
    """The write that makes `resource` the next version of type/id, honouring If-Match."""
    current = replaceable(server, req, session, req.type, id_)
    check_if_match(f"{req.type}/{id_}", current, expected)
    if current is not None and req.type in IMMUTABLE:
        raise immutable(req.type)  # created with this id, never changed
    version = current.version + 1 if current else 1
    ts = next_instant(current.last_updated if current else None)
    return new_version(server, resource, id_, version, current.version if current else None, ts, "PUT",
                       req.base_url, current)

