"""transaction: every entry or none, in one MongoDB transaction.

Entries are processed in the spec's order (DELETE, POST, PUT/PATCH, then GET/HEAD after the
commit), references between them are rewritten (`references.py`) to the ids the server
assigns, conditional references and conditions (`ifNoneExist`, `Type?query`) are resolved by
search inside the transaction, and any failure leaves the database exactly as it was: the
answer is then the failing entry's error, naming it.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from fhir_server.definitions.model import models_for
from fhir_server.errors import FhirError, Issue, bad_request
from fhir_server.interactions import conditional
from fhir_server.interactions.access import authorize, check_mutable, current_for_write, reach
from fhir_server.interactions.audit import access
from fhir_server.interactions.bundle_entries import ORDER, Entry, dispatch, parse_entry
from fhir_server.interactions.bundle_responses import (
    ResponseSize,
    error_entry,
    failed,
    measured_entry,
    measured_error,
    without_resource,
)
from fhir_server.interactions.delete import tombstones
from fhir_server.interactions.patch import _changes, patched_version
from fhir_server.interactions.references import base_of, rewrite
from fhir_server.interactions.request import (
    FhirRequest,
    FhirResponse,
    check_if_match,
    etag,
    parse_etag,
    versioned_response,
)
from fhir_server.interactions.resource import new_version, require_body, validate
from fhir_server.interactions.rules import WriteRefused
from fhir_server.interactions.update import next_version, update_body
from fhir_server.search.index import index_values
from fhir_server.storage.store import Version, now

if TYPE_CHECKING:
    from fhir_server.server import FhirServer


def run(server: FhirServer, req: FhirRequest, raw: list[Any]) -> FhirResponse:
    entries = []
    for index, item in enumerate(raw):
        try:
            entries.append(parse_entry(server, req, index, item))
        except FhirError as exc:
            full_url = item.get("fullUrl") if isinstance(item, dict) else None
            raise failed(exc, f"entry {index}" + (f" ({full_url})" if isinstance(full_url, str) else "")) from None
    _unique_full_urls(entries)
    _check_writes(server, entries)
    writes = [e for e in entries if not e.reads]
    guards = []
    for entry in writes:
        if entry.method in ("POST", "PUT", "PATCH"):
            server.prepare_type(entry.target.type)
        if entry.method == "POST" and entry.request.if_none_exist is not None:
            query = conditional.parse(server, entry.target.type, entry.request.if_none_exist, "ifNoneExist",
                                      reach(server, req, "s"))
            guards.append(conditional.guard_key(entry.target.type, query))

    def work(session):
        return _plan(server, req, entries, session)

    try:
        written = server.transact(work, guards, req=req) if writes else []
    except WriteRefused as exc:  # found once every entry was staged: named by its entry
        entry = next((e for e in entries if e.key == exc.source), None)
        raise (failed(exc, entry.where()) if entry is not None else exc) from None
    by_key = {f"{v.type}/{v.id}": v for v in written}
    responses = _responses(server, req, entries, by_key)
    out: dict[str, Any] = {"resourceType": "Bundle", "type": "transaction-response"}
    if responses:
        out["entry"] = responses
    return FhirResponse(200, out)


def _unique_full_urls(entries: list[Entry]) -> None:
    seen: dict[str, int] = {}
    for entry in entries:
        if entry.full_url is None:
            continue
        if entry.full_url in seen:
            raise failed(bad_request(f"fullUrl {entry.full_url} is also the fullUrl of entry {seen[entry.full_url]}; "
                                      f"fullUrls must be unique in a bundle (bdl-7)", code="invariant"), entry.where())
        seen[entry.full_url] = entry.index


_LETTERS = {"POST": "c", "PUT": "u", "PATCH": "u", "DELETE": "d"}


def _check_writes(server: FhirServer, entries: list[Entry]) -> None:
    """Checks that need no database: scopes, bodies, validation, the same resource written twice.
    (Read entries go through the router after the commit, which checks their scopes.)"""
    seen: dict[str, int] = {}
    for entry in entries:
        if entry.reads:
            continue
        try:
            if entry.target.type is not None and entry.method in _LETTERS:
                check_mutable(entry.target.type, _LETTERS[entry.method],
                              upsert=entry.method == "PUT" and entry.target.shape == "instance")
                authorize(entry.request, entry.target.type, _LETTERS[entry.method])
                if entry.target.shape == "type" and (entry.method != "POST" or entry.request.if_none_exist is not None):
                    authorize(entry.request, entry.target.type, "s")  # a condition is a search
            if entry.method == "POST" and entry.target.shape == "type":
                validate(server, require_body(entry.request))
            elif entry.method == "PUT" and entry.target.shape == "instance":
                validate(server, update_body(entry.request))
            elif entry.method == "PUT" and entry.target.shape == "type":
                validate(server, require_body(entry.request))
            elif entry.method == "PATCH":
                _changes(entry.request.body)
            elif entry.method in ("POST", "PUT", "DELETE") and entry.target.shape not in ("type", "instance"):
                raise bad_request(f"{entry.method} {entry.target.shape} is not possible in a transaction")
            if entry.method in ("PUT", "DELETE", "PATCH") and entry.target.shape == "instance":
                key = f"{entry.target.type}/{entry.target.id}"
                if key in seen:
                    raise bad_request(f"{key} is also written by entry {seen[key]}: a transaction may touch a "
                                      f"resource once", code="business-rule")
                seen[key] = entry.index
        except FhirError as exc:
            raise failed(exc, entry.where()) from None


def _plan(server: FhirServer, req: FhirRequest, entries: list[Entry], session) -> list:
    """Inside the transaction: decide every entry's target, rewrite references, build the writes."""
    ids: dict[str, str] = {}
    planned: list[tuple[str, str, dict[str, Any]]] = []  # what this transaction creates, for conditions
    ordered = sorted(entries, key=lambda e: (ORDER[e.method], e.index))
    for entry in ordered:
        entry.key, entry.existing, entry.alias, entry.written = None, None, False, []
        try:
            _resolve_target(server, entry, session, planned)
        except FhirError as exc:
            raise failed(exc, entry.where()) from None
        if entry.full_url and entry.key:
            ids[entry.full_url] = entry.key
        if entry.key and entry.method in ("POST", "PUT") and entry.existing is None and not entry.alias:
            # `Patient/123` written in the bundle may be referenced by its absolute URL too
            ids.setdefault(f"{req.base_url}/{entry.key}", entry.key)
            type_, id_ = entry.key.split("/", 1)
            ix = index_values(server.search_parameters, {**entry.resource, "id": id_}).values
            planned.append((type_, id_, ix))
    writes = []
    written_keys: dict[str, int] = {}
    canonical = _canonical_urls(entries)
    for entry in ordered:
        if entry.reads or entry.existing is not None or entry.alias or entry.key is None:
            continue
        if entry.key in written_keys:
            raise failed(bad_request(f"{entry.key} is also written by entry {written_keys[entry.key]}: a "
                                      f"transaction may touch a resource once", code="business-rule"), entry.where())
        written_keys[entry.key] = entry.index
        try:
            writes.extend(_writes(server, req, entry, ids, canonical, session, planned))
        except FhirError as exc:
            raise failed(exc, entry.where()) from None
    return writes


def _resolve_target(server: FhirServer, entry: Entry, session, planned) -> None:
    type_, target = entry.target.type, entry.target
    searched = reach(server, entry.request, "s")  # a condition finds only what the caller may see
    if entry.reads:
        return
    if target.shape == "instance":
        entry.key = f"{type_}/{target.id}"
        return
    if entry.method == "POST":
        if entry.request.if_none_exist is not None:  # empty: 400, never a plain create
            query = conditional.parse(server, type_, entry.request.if_none_exist, "ifNoneExist", searched)
            found = conditional.matches(server, type_, query, session, searched)
            coming = conditional.matches_planned(server, type_, query, planned)
            if len(found) + len(coming) > 1:
                raise FhirError(412, Issue("error", "multiple-matches",
                                           f"{len(found) + len(coming)} {type_} resources match ifNoneExist "
                                           f"{entry.request.if_none_exist!r}"))
            if found:
                entry.existing = found[0]
                entry.key = f"{type_}/{found[0].id}"
                return
            if coming:  # an earlier entry of this transaction creates it
                entry.alias = True
                entry.key = f"{type_}/{coming[0]}"
                return
        entry.key = f"{type_}/{uuid.uuid4()}"
        return
    text = conditional.query_string(target.params)
    query = conditional.parse(server, type_, text, "request.url", searched)
    found = conditional.matches(server, type_, query, session, searched)
    conditional.at_most_one(found, type_, text)
    if found:
        entry.key = f"{type_}/{found[0].id}"
    elif entry.method == "PUT":
        body_id = entry.resource.get("id") if isinstance(entry.resource, dict) else None
        entry.key = f"{type_}/{body_id or uuid.uuid4()}"
    elif entry.method == "PATCH":
        raise FhirError(404, Issue("error", "not-found", f"no {type_} matches {text!r}"))
    else:  # conditional DELETE with no match: nothing to do
        entry.key = None


def _canonical_urls(entries: list[Entry]) -> frozenset[str]:
    """The canonical `url`s of the resources written: there a uri names that resource (often its
    fullUrl too), it is not a link to where the server stores it (see references.py)."""
    return frozenset(e.resource["url"] for e in entries if not e.reads and isinstance(e.resource, dict)
                     and isinstance(e.resource.get("url"), str))


def _writes(server: FhirServer, req: FhirRequest, entry: Entry, ids: dict[str, str], canonical: frozenset[str],
            session, planned) -> list:
    type_, id_ = entry.key.split("/", 1)
    if entry.method == "DELETE":
        current = current_for_write(server, req, session, type_, id_, "d")
        expected = parse_etag(entry.request.if_match) if entry.request.if_match else None
        check_if_match(entry.key, current, expected)
        entry.deleted_json = current.json if current else None
        return tombstones([current] if current and not current.deleted else [])
    if entry.method == "PATCH":
        current = current_for_write(server, req, session, type_, id_, "u")
        expected = parse_etag(entry.request.if_match) if entry.request.if_match else None
        return [patched_version(server, type_, id_, current, _changes(entry.request.body), expected,
                                req.base_url)]
    resource = rewrite(entry.resource, models_for(server.definitions), ids, base_of(entry.full_url),
                       lambda ref: _conditional_reference(server, entry.request, ref, session, planned), canonical)
    resource["id"] = id_
    if entry.method == "POST":
        return [new_version(server, resource, id_, 1, None, now(), "POST", req.base_url)]
    expected = parse_etag(entry.request.if_match) if entry.request.if_match else None
    put_req = FhirRequest("PUT", req.base_url, type_, id_, if_match=entry.request.if_match, identity=req.identity,
                          reaches=req.reaches)
    return [next_version(server, put_req, session, id_, resource, expected)]


def _conditional_reference(server: FhirServer, req: FhirRequest, ref: str, session, planned) -> str:
    type_, _, query = ref.partition("?")
    if not server.definitions.is_resource_type(type_):
        raise bad_request(f"the conditional reference {ref!r} does not start with a resource type")
    authorize(req, type_, "s")  # a search: it tells whether such resources exist
    searched = reach(server, req, "s")
    criteria = conditional.parse(server, type_, query, f"the conditional reference {ref!r}", searched)
    keys = [f"{type_}/{v.id}" for v in conditional.matches(server, type_, criteria, session, searched)]
    keys += [f"{type_}/{id_}" for id_ in conditional.matches_planned(server, type_, criteria, planned)]
    keys = list(dict.fromkeys(keys))
    if not keys:
        raise FhirError(404, Issue("error", "not-found", f"the conditional reference {ref!r} matches nothing"))
    if len(keys) > 1:
        raise FhirError(412, Issue("error", "multiple-matches", f"{len(keys)} {type_} resources match the "
                                   f"conditional reference {ref!r}; make it selective enough to match one"))
    return keys[0]


def _responses(server: FhirServer, req: FhirRequest, entries: list[Entry],
               written: dict[str, Version]) -> list[dict[str, Any]]:
    """Every entry's answer, the Bundle's size followed: past FHIR_MAX_RESPONSE_BYTES a transaction
    that wrote nothing fails whole (422); one that wrote is committed and must say so, so its
    read entries from there on answer the 422 and its writes come without their resource."""
    size = ResponseSize(server.settings.max_response_bytes, "transaction")
    out: list[dict[str, Any]] = []
    stopped: FhirError | None = None
    for entry in entries:
        if stopped is not None and entry.reads:
            out.append(error_entry(stopped))
            continue
        item, used = _transaction_response(server, req, entry, written)
        if stopped is None and not size.fits(used):
            stopped = size.refusal(entry.where())
            if not written:
                raise stopped
        if stopped is not None:  # committed: a write still says what it did, a read says why not
            item = error_entry(stopped) if entry.reads else without_resource(item)[0]
        out.append(item)
    return out


def _transaction_response(server: FhirServer, req: FhirRequest, entry: Entry,
                          written: dict[str, Version]) -> tuple[dict[str, Any], int]:
    if entry.reads:  # through the router, which audits it
        try:
            return measured_entry(req, dispatch(server, entry))
        except FhirError as exc:
            return measured_error(exc)
    response = _written_response(entry, written)
    server.audit.record(access(entry.request, _INTERACTIONS[entry.method], response.status, response))
    return measured_entry(req, response)


_INTERACTIONS = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}


def _written_response(entry: Entry, written: dict[str, Version]) -> FhirResponse:
    if entry.existing is not None:
        return versioned_response(entry.request, entry.existing, 200, location=True)
    version = written.get(entry.key or "")
    if entry.alias and version is not None:
        return versioned_response(entry.request, version, 200, location=True)
    if version is None:  # a delete of nothing
        return FhirResponse(204)
    if version.deleted:
        return FhirResponse(204, etag=etag(version.version), last_modified=version.last_updated,
                            touched=[entry.deleted_json] if entry.deleted_json else [])
    status = 201 if version.version == 1 else 200
    return versioned_response(entry.request, version, status, location=True)
