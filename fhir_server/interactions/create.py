"""create (POST [type]), and conditional create with If-None-Exist."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from fhir_server.interactions import conditional
from fhir_server.interactions.access import reach
from fhir_server.interactions.request import FhirRequest, FhirResponse, versioned_response
from fhir_server.interactions.resource import new_version, require_body, validate
from fhir_server.storage.store import now

if TYPE_CHECKING:
    from fhir_server.server import FhirServer


def create(server: FhirServer, req: FhirRequest) -> FhirResponse:
    resource = require_body(req)
    validate(server, resource)
    server.prepare_type(req.type)
    searched = reach(server, req, "s")
    query = None
    if req.if_none_exist is not None:  # present but empty is a condition that says nothing: 400
        query = conditional.parse(server, req.type, req.if_none_exist, "If-None-Exist", searched)
    existing = []

    def work(session):
        existing.clear()
        if query is not None:
            existing.extend(conditional.matches(server, req.type, query, session, searched))
            if existing:
                conditional.at_most_one(existing, req.type, req.if_none_exist)
                return []
        ts = now()
        id_ = str(uuid.uuid4())
        return [new_version(server, resource, id_, 1, None, ts, "POST", req.base_url)]

    guards = [conditional.guard_key(req.type, query)] if query is not None else []
    written = server.transact(work, guards, req=req)
    if existing:  # If-None-Exist matched one resource: nothing created, 200 with it
        return versioned_response(req, existing[0], 200)
    return versioned_response(req, written[0], 201, location=True)
