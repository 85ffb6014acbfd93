"""read and vread, with the conditional read headers (If-None-Match, If-Modified-Since)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fhir_server.errors import FhirError, Issue, bad_request
from fhir_server.interactions import access, binary
from fhir_server.interactions.access import sees
from fhir_server.interactions.request import FhirRequest, FhirResponse, check_id, etag, parse_etag
from fhir_server.interactions.urls import whole_number
from fhir_server.search.summary import SUMMARY_VALUES, subset
from fhir_server.storage.store import Version, format_instant

if TYPE_CHECKING:
    from fhir_server.search.reach import Reach
    from fhir_server.server import FhirServer


def gone(stored: Version) -> FhirError:
    return FhirError(410, Issue("error", "deleted",
                                f"{stored.type}/{stored.id} was deleted (version {stored.version}, "
                                f"{format_instant(stored.last_updated)}); its history is still readable "
                                f"at {stored.type}/{stored.id}/_history"),
                     headers={"ETag": etag(stored.version)})


def unknown(type_: str, id_: str) -> FhirError:
    return FhirError(404, Issue("error", "not-found", f"{type_}/{id_} does not exist"))


def current(server: FhirServer, type_: str, id_: str, reach: Reach) -> Version:
    """The live version of a resource (what a read answers): 404 if unknown or out of the
    request's `reach` (its existence is not revealed), 410 if deleted."""
    check_id(id_)
    stored = server.store.read(type_, id_, values=reach.term(type_) is not None)
    if stored is None or not sees(server, reach, stored):
        raise unknown(type_, id_)
    if stored.deleted:
        raise gone(stored)
    return stored


def read(server: FhirServer, req: FhirRequest) -> FhirResponse:
    stored = current(server, req.type, req.id, access.reach(server, req, "r"))
    if _not_modified(req, stored):
        return FhirResponse(304, etag=etag(stored.version), last_modified=stored.last_updated)
    if binary.wants_raw(req):
        return binary.raw_response(req, stored)
    return FhirResponse(200, _subset(server, req, stored.json), etag=etag(stored.version),
                        last_modified=stored.last_updated)


def _subset(server: FhirServer, req: FhirRequest, json: bytes) -> bytes:
    """`_summary` / `_elements` on a read, as on a search."""
    summary, elements = req.param("_summary"), req.param("_elements")
    if summary is None and elements is None:
        return json
    if summary is not None and summary not in SUMMARY_VALUES or summary == "count":
        raise bad_request("_summary must be one of true, text, data, false on a read", code="value")
    return subset(server.definitions, json, summary, [e.strip() for e in elements.split(",")] if elements else None)


def vread(server: FhirServer, req: FhirRequest) -> FhirResponse:
    check_id(req.id)
    version = whole_number(req.version)
    if version is None or version < 1:
        raise bad_request(f"version {(req.version or '')[:40]!r} is not a version id of this server (1, 2, 3…)",
                          code="value")
    stored = server.store.vread(req.type, req.id, version)
    readable = access.reach(server, req, "r")
    if stored is None:
        latest = server.store.read(req.type, req.id, values=True)
        if latest is None or not sees(server, readable, latest):
            raise unknown(req.type, req.id)
        raise FhirError(404, Issue("error", "not-found",
                                   f"{req.type}/{req.id} has no version {req.version}"))
    if not sees(server, readable, stored):  # this version is out of reach: as if it never was
        raise unknown(req.type, req.id)
    if stored.deleted:
        raise gone(stored)
    if _not_modified(req, stored):
        return FhirResponse(304, etag=etag(stored.version), last_modified=stored.last_updated)
    if binary.wants_raw(req):
        return binary.raw_response(req, stored)
    return FhirResponse(200, stored.json, etag=etag(stored.version), last_modified=stored.last_updated)


def _not_modified(req: FhirRequest, stored: Version) -> bool:
    """RFC 9110: If-None-Match wins over If-Modified-Since when both are sent."""
    if req.if_none_match is not None:
        tags = [t.strip() for t in req.if_none_match.split(",")]
        return "*" in tags or any(parse_etag(t) == str(stored.version) for t in tags if t)
    if req.if_modified_since is not None:
        return stored.last_updated.replace(microsecond=0) <= req.if_modified_since
    return False
