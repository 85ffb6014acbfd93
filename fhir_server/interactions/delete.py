"""delete (DELETE [type]/[id]) and conditional delete (DELETE [type]?query).

A deletion is a version: the history keeps it, a read answers 410, and deleting what is
already deleted or never existed succeeds without writing anything. A resource others refer
to is not deleted (409, interactions/integrity.py) unless `_cascade=delete` deletes them too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fhir_server.interactions import conditional, integrity
from fhir_server.interactions.access import current_for_write, reach
from fhir_server.interactions.request import FhirRequest, FhirResponse, check_id, check_if_match, etag, parse_etag
from fhir_server.interactions.resource import outcome_issue
from fhir_server.storage.store import Version, Write, next_instant

if TYPE_CHECKING:
    from fhir_server.server import FhirServer


def delete(server: FhirServer, req: FhirRequest) -> FhirResponse:
    check_id(req.id)
    expected = parse_etag(req.if_match) if req.if_match is not None else None
    cascading = integrity.cascade_requested(req)
    deleted: list[Version] = []

    def work(session):
        current = current_for_write(server, req, session, req.type, req.id, "d")
        check_if_match(f"{req.type}/{req.id}", current, expected)
        deleted[:] = [current] if current and not current.deleted else []
        if cascading and deleted:
            deleted.extend(integrity.cascade(server, req, deleted, session))
        return tombstones(deleted)

    written = server.transact(work, req=req)
    integrity.audit_cascade(server, req, deleted[1:], written)
    return _answer(req, written, deleted, f"{req.type}/{req.id}")


def conditional_delete(server: FhirServer, req: FhirRequest) -> FhirResponse:
    """Deletes the single match; several matches → 412 (this server deletes one at a time)."""
    cascading = integrity.cascade_requested(req)
    text = conditional.query_string(integrity.without_cascade(req.params))
    query = conditional.parse(server, req.type, text, "the URL", reach(server, req, "s"))

    deleted: list[Version] = []

    def work(session):
        found = conditional.matches(server, req.type, query, session, reach(server, req, "s"))
        conditional.at_most_one(found, req.type, text)
        deleted[:] = found
        if cascading and found:
            deleted.extend(integrity.cascade(server, req, found, session))
        return tombstones(deleted)

    written = server.transact(work, req=req)
    integrity.audit_cascade(server, req, deleted[1:], written)
    return _answer(req, written, deleted, f"{req.type}?{text}")


def tombstones(current: list[Version]) -> list[Write]:
    return [Write(v.type, v.id, v.version + 1, v.version, next_instant(v.last_updated), "DELETE", None)
            for v in current]


def _answer(req: FhirRequest, written: list[Version], deleted: list[Version], what: str) -> FhirResponse:
    if not written:
        return FhirResponse(200, outcome_issue("information", "informational",
                                               f"nothing to delete: {what} does not exist or is already deleted"))
    more = len(deleted) - 1
    also = f" and {more} resource{'s' if more > 1 else ''} referring to it (_cascade=delete)" if more > 0 else ""
    response = FhirResponse(200, outcome_issue("information", "informational",
                                               f"deleted {written[0].type}/{written[0].id} "
                                               f"(version {written[0].version}){also}"),
                            etag=etag(written[0].version), touched=[v.json for v in deleted if v.json])
    return response
