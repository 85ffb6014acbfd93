"""batch and transaction (`POST [base]` with a Bundle).

A transaction is one MongoDB transaction: entries are processed in the spec's order (DELETE,
POST, PUT/PATCH, then GET/HEAD after the commit), `urn:uuid:`/`urn:oid:` and relative
references between entries are rewritten to the ids the server assigns, conditional
references (`Patient?identifier=…`) are resolved by search, and any failure leaves the
database exactly as it was: the answer is then the failing entry's error, naming it.
A batch runs each entry on its own, as if it came alone, and reports each outcome.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from typing import Any

import orjson

from fhir_server.errors import FhirError, Issue, bad_request
from fhir_server.interactions import conditional, urls
from fhir_server.interactions.delete import tombstones
from fhir_server.interactions.patch import _changes, patched_version
from fhir_server.interactions.request import FhirRequest, FhirResponse, etag, parse_etag, versioned_response
from fhir_server.interactions.resource import new_version, require_body, validate
from fhir_server.interactions.update import next_version, update_body
from fhir_server.search.index import index_values
from fhir_server.storage.store import Version, format_instant, now

_ORDER = {"DELETE": 0, "POST": 1, "PUT": 2, "PATCH": 2, "GET": 3, "HEAD": 3}
_STATUS_TEXT = {200: "200 OK", 201: "201 Created", 204: "204 No Content", 304: "304 Not Modified"}


@dataclass
class Entry:
    index: int
    full_url: str | None
    method: str
    target: urls.Target
    request: FhirRequest
    resource: Any = None
    # decided inside the transaction
    key: str | None = None  # Type/id the entry writes
    existing: Version | None = None  # If-None-Exist matched this one: nothing written
    alias: bool = False  # If-None-Exist matched a resource an earlier entry creates
    written: list[Version] = field(default_factory=list)

    @property
    def reads(self) -> bool:
        """GET/HEAD and operations: run after the commit, they write nothing."""
        return self.method in ("GET", "HEAD") or self.target.shape.endswith("-operation")

    def where(self) -> str:
        return f"entry {self.index}" + (f" ({self.full_url})" if self.full_url else "")


def process(server, req: FhirRequest) -> FhirResponse:
    bundle = req.body
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise bad_request("POST to the base URL takes a Bundle of type batch or transaction", code="invalid")
    kind = bundle.get("type")
    if kind not in ("batch", "transaction"):
        raise bad_request(f"Bundle.type is {kind!r}: POST [base] processes batch and transaction bundles "
                          f"(store other bundles with POST [base]/Bundle)", code="invalid", expression="Bundle.type")
    raw = bundle.get("entry") or []
    if not isinstance(raw, list):
        raise bad_request("Bundle.entry must be an array", code="structure", expression="Bundle.entry")
    if len(raw) > server.settings.max_bundle_entries:
        raise FhirError(413, Issue("error", "too-costly", f"the bundle has {len(raw)} entries; this server takes "
                                   f"at most {server.settings.max_bundle_entries} (FHIR_MAX_BUNDLE_ENTRIES)"))
    if kind == "batch":
        return _batch(server, req, raw)
    return _transaction(server, req, raw)


# -- parsing ---------------------------------------------------------------------------------------
def _entry(server, req: FhirRequest, index: int, raw: Any) -> Entry:
    where = f"Bundle.entry[{index}]"
    if not isinstance(raw, dict) or not isinstance(raw.get("request"), dict):
        raise bad_request(f"{where} has no request (method and url)", code="required", expression=f"{where}.request")
    request = raw["request"]
    method, url = request.get("method"), request.get("url")
    if method not in _ORDER or not isinstance(url, str) or not url:
        raise bad_request(f"{where}.request needs a method (GET, HEAD, POST, PUT, PATCH, DELETE) and a url",
                          code="required", expression=f"{where}.request")
    target = urls.parse(url, req.base_url)
    resource = raw.get("resource")
    if method == "PATCH" and isinstance(resource, dict) and resource.get("resourceType") == "Binary":
        resource = _binary_patch(resource, where)
    entry_req = FhirRequest(
        method=method, base_url=req.base_url, shape=target.shape, operation=target.operation,
        type=target.type, id=target.id, version=target.version,
        compartment=target.compartment, params=target.params, body=resource,
        if_match=request.get("ifMatch"), if_none_match=request.get("ifNoneMatch"),
        if_modified_since=_instant(request.get("ifModifiedSince")), if_none_exist=request.get("ifNoneExist"),
        prefer_return=req.prefer_return, prefer_handling=req.prefer_handling, request_id=req.request_id)
    if target.type is not None and not server.definitions.is_resource_type(target.type):
        raise FhirError(404, Issue("error", "not-supported", f"{where}: {target.type!r} is not a resource type"))
    full_url = raw.get("fullUrl") if isinstance(raw.get("fullUrl"), str) else None
    return Entry(index, full_url, method, target, entry_req, resource)


def _binary_patch(binary: dict[str, Any], where: str) -> Any:
    """A JSON Patch carried in a transaction as a Binary (its data is the base64 patch)."""
    import base64

    try:
        return orjson.loads(base64.b64decode(binary.get("data", ""), validate=True))
    except (ValueError, orjson.JSONDecodeError):
        raise bad_request(f"{where}.resource: the Binary does not hold a base64 JSON Patch") from None


def _instant(value: Any):
    if not isinstance(value, str):
        return None
    from fhir_server.search.dates import DateError, instant

    try:
        return instant(value)
    except DateError:
        return None


# -- batch -----------------------------------------------------------------------------------------
def _batch(server, req: FhirRequest, raw: list[Any]) -> FhirResponse:
    responses: list[dict[str, Any] | None] = [None] * len(raw)
    parsed: list[Entry] = []
    for index, item in enumerate(raw):
        try:
            parsed.append(_entry(server, req, index, item))
        except FhirError as exc:
            responses[index] = _error_entry(exc)
    full_urls = {e.full_url: e.index for e in parsed if e.full_url}
    for entry in sorted(parsed, key=lambda e: (_ORDER[e.method], e.index)):
        try:
            _independent(entry, full_urls)
            result = _dispatch(server, entry)
            responses[entry.index] = _response_entry(req, result)
        except FhirError as exc:
            responses[entry.index] = _error_entry(exc)
    return FhirResponse(200, {"resourceType": "Bundle", "type": "batch-response", "entry": responses})


def _independent(entry: Entry, full_urls: dict[str, int]) -> None:
    """Batch entries may not refer to each other (R4 http.html#brules): that needs a transaction."""
    for ref in _references(entry.resource):
        other = full_urls.get(ref)
        if other is not None and other != entry.index:
            raise bad_request(f"{entry.where()} refers to entry {other} ({ref}); entries of a batch are independent: "
                              f"send them as a transaction", code="invariant")


def _references(value: Any):
    if isinstance(value, list):
        for item in value:
            yield from _references(item)
    elif isinstance(value, dict):
        if isinstance(value.get("reference"), str):
            yield value["reference"]
        for item in value.values():
            if isinstance(item, (dict, list)):
                yield from _references(item)


def _dispatch(server, entry: Entry) -> FhirResponse:
    """One entry as the router runs any request (a HEAD entry answers without its body)."""
    if entry.target.shape.endswith("-search") and isinstance(entry.request.body, dict):
        entry.request.body = None
    result = server.dispatch(entry.request)
    if entry.method == "HEAD":
        result.body = None
    return result


# -- transaction -----------------------------------------------------------------------------------
def _transaction(server, req: FhirRequest, raw: list[Any]) -> FhirResponse:
    entries = []
    for index, item in enumerate(raw):
        try:
            entries.append(_entry(server, req, index, item))
        except FhirError as exc:
            full_url = item.get("fullUrl") if isinstance(item, dict) else None
            raise _failed(exc, f"entry {index}" + (f" ({full_url})" if isinstance(full_url, str) else "")) from None
    _unique_full_urls(entries)
    _check_writes(server, entries)
    writes = [e for e in entries if not e.reads]
    guards = []
    for entry in writes:
        if entry.method in ("POST", "PUT", "PATCH"):
            server.prepare_type(entry.target.type)
        if entry.method == "POST" and entry.request.if_none_exist:
            query = conditional.parse(server, entry.target.type, entry.request.if_none_exist, "ifNoneExist")
            guards.append(conditional.guard_key(entry.target.type, query))

    def work(session):
        return _plan(server, req, entries, session)

    written = server.transact(work, guards) if writes else []
    by_key = {f"{v.type}/{v.id}": v for v in written}
    responses = [_transaction_response(server, req, entry, by_key) for entry in entries]
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
            raise _failed(bad_request(f"fullUrl {entry.full_url} is also the fullUrl of entry {seen[entry.full_url]}; "
                                      f"fullUrls must be unique in a bundle (bdl-7)", code="invariant"), entry.where())
        seen[entry.full_url] = entry.index


def _check_writes(server, entries: list[Entry]) -> None:
    """Checks that need no database: bodies, validation, the same resource written twice."""
    seen: dict[str, int] = {}
    for entry in entries:
        if entry.reads:
            continue
        try:
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
            raise _failed(exc, entry.where()) from None


def _plan(server, req: FhirRequest, entries: list[Entry], session) -> list:
    """Inside the transaction: decide every entry's target, rewrite references, build the writes."""
    ids: dict[str, str] = {}
    planned: list[tuple[str, str, dict[str, Any]]] = []  # what this transaction creates, for conditions
    ordered = sorted(entries, key=lambda e: (_ORDER[e.method], e.index))
    for entry in ordered:
        entry.key, entry.existing, entry.alias, entry.written = None, None, False, []
        try:
            _resolve_target(server, entry, session, planned)
        except FhirError as exc:
            raise _failed(exc, entry.where()) from None
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
    for entry in ordered:
        if entry.reads or entry.existing is not None or entry.alias or entry.key is None:
            continue
        if entry.key in written_keys:
            raise _failed(bad_request(f"{entry.key} is also written by entry {written_keys[entry.key]}: a "
                                      f"transaction may touch a resource once", code="business-rule"), entry.where())
        written_keys[entry.key] = entry.index
        try:
            writes.extend(_writes(server, req, entry, ids, session, planned))
        except FhirError as exc:
            raise _failed(exc, entry.where()) from None
    return writes


def _resolve_target(server, entry: Entry, session, planned) -> None:
    type_, target = entry.target.type, entry.target
    if entry.reads:
        return
    if target.shape == "instance":
        entry.key = f"{type_}/{target.id}"
        return
    if entry.method == "POST":
        if entry.request.if_none_exist:
            query = conditional.parse(server, type_, entry.request.if_none_exist, "ifNoneExist")
            found = conditional.matches(server, type_, query, session)
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
    query = conditional.parse(server, type_, text, "request.url")
    found = conditional.matches(server, type_, query, session)
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


def _writes(server, req: FhirRequest, entry: Entry, ids: dict[str, str], session, planned) -> list:
    type_, id_ = entry.key.split("/", 1)
    if entry.method == "DELETE":
        current = server.store.read_in(session, type_, id_)
        expected = parse_etag(entry.request.if_match) if entry.request.if_match else None
        if expected is not None and (current is None or expected not in ("*", str(current.version))):
            raise FhirError(412, Issue("error", "conflict", f"{entry.key} is not at version {expected}"))
        return tombstones([current] if current and not current.deleted else [])
    if entry.method == "PATCH":
        current = server.store.read_in(session, type_, id_)
        expected = parse_etag(entry.request.if_match) if entry.request.if_match else None
        return [patched_version(server, type_, id_, current, _changes(entry.request.body), expected,
                                entry.request.if_match, req.base_url)]
    resource = _rewrite(server, dict(entry.resource), ids, session, planned, _base_of(entry.full_url))
    resource["id"] = id_
    if entry.method == "POST":
        return [new_version(server, resource, id_, 1, None, now(), "POST", req.base_url)]
    expected = parse_etag(entry.request.if_match) if entry.request.if_match else None
    put_req = FhirRequest("PUT", req.base_url, type_, id_, if_match=entry.request.if_match)
    return [next_version(server, put_req, session, id_, resource, expected)]


_CONDITIONAL_REF = re.compile(r"^[A-Z][A-Za-z]+\?")
_RESTFUL = re.compile(r"^(?P<base>.+)/[A-Z][A-Za-z]+/[A-Za-z0-9\-.]{1,64}$")


def _base_of(full_url: str | None) -> str | None:
    """`http://x/fhir/Patient/1` → `http://x/fhir`: relative references in that entry are
    relative to it (R4 bundle.html#references)."""
    match = _RESTFUL.match(full_url or "")
    return match["base"] if match and "://" in full_url else None


def _rewrite(server, value: Any, ids: dict[str, str], session, planned, base: str | None) -> Any:
    """Every `reference` (nested, in extensions, in contained resources) to a bundle entry or a
    conditional reference, replaced by the resource's `Type/id`."""
    if isinstance(value, list):
        return [_rewrite(server, v, ids, session, planned, base) for v in value]
    if not isinstance(value, dict):
        return value
    out = {k: _rewrite(server, v, ids, session, planned, base) for k, v in value.items()}
    ref = out.get("reference")
    if isinstance(ref, str):
        if ref in ids:
            out["reference"] = ids[ref]
        elif base and f"{base}/{ref}" in ids:
            out["reference"] = ids[f"{base}/{ref}"]
        elif _CONDITIONAL_REF.match(ref):
            out["reference"] = _conditional_reference(server, ref, session, planned)
        elif ref.startswith(("urn:uuid:", "urn:oid:")):
            raise bad_request(f"the reference {ref!r} names no entry of this transaction", code="not-found")
    return out


def _conditional_reference(server, ref: str, session, planned) -> str:
    type_, _, query = ref.partition("?")
    if not server.definitions.is_resource_type(type_):
        raise bad_request(f"the conditional reference {ref!r} does not start with a resource type")
    criteria = conditional.parse(server, type_, query, f"the conditional reference {ref!r}")
    keys = [f"{type_}/{v.id}" for v in conditional.matches(server, type_, criteria, session)]
    keys += [f"{type_}/{id_}" for id_ in conditional.matches_planned(server, type_, criteria, planned)]
    keys = list(dict.fromkeys(keys))
    if not keys:
        raise FhirError(404, Issue("error", "not-found", f"the conditional reference {ref!r} matches nothing"))
    if len(keys) > 1:
        raise FhirError(412, Issue("error", "multiple-matches", f"{len(keys)} {type_} resources match the "
                                   f"conditional reference {ref!r}; make it selective enough to match one"))
    return keys[0]


def _transaction_response(server, req: FhirRequest, entry: Entry, written: dict[str, Version]) -> dict[str, Any]:
    if entry.reads:
        try:
            return _response_entry(req, _dispatch(server, entry))
        except FhirError as exc:
            return _error_entry(exc)
    if entry.existing is not None:
        return _response_entry(req, versioned_response(entry.request, entry.existing, 200, location=True))
    version = written.get(entry.key or "")
    if entry.alias and version is not None:
        return _response_entry(req, versioned_response(entry.request, version, 200, location=True))
    if version is None:  # a delete of nothing
        return {"response": {"status": "204 No Content"}}
    if version.deleted:
        return {"response": {"status": "204 No Content", "etag": etag(version.version),
                             "lastModified": format_instant(version.last_updated)}}
    status = 201 if version.version == 1 else 200
    return _response_entry(req, versioned_response(entry.request, version, status, location=True))


def _response_entry(req: FhirRequest, result: FhirResponse) -> dict[str, Any]:
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


def _error_entry(exc: FhirError) -> dict[str, Any]:
    return {"response": {"status": str(exc.status), "outcome": exc.outcome()}}


def _failed(exc: FhirError, where: str) -> FhirError:
    """The failing entry named in every issue, status kept (a transaction fails as its entry)."""
    issues = [Issue(i.severity, i.code, f"{where}: {i.diagnostics}", i.expression) for i in exc.issues]
    return FhirError(exc.status, issues, headers=exc.headers)
