"""The searchset Bundle and its pages, shared by search and by operations that answer with
one (`$everything`): matches are stored once (storage/searches.py) when they exceed a page,
and every link reads that stored list, so pages stay stable while data changes. A page is
bounded: at most `FHIR_MAX_INCLUDED` included resources and `FHIR_MAX_RESPONSE_BYTES` of JSON,
counted while its entries are rendered (422 past either, saying how to ask for less)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import orjson

from fhir_server import budget, jsonio
from fhir_server.errors import FhirError, Issue
from fhir_server.interactions.access import owner, reach
from fhir_server.interactions.request import FhirRequest, FhirResponse
from fhir_server.interactions.urls import whole_number
from fhir_server.search import include as includes
from fhir_server.search.summary import subset
from fhir_server.storage.records import Record
from fhir_server.storage.searches import SearchResults

if TYPE_CHECKING:
    from fhir_server.server import FhirServer


def first_page(server: FhirServer, req: FhirRequest, keys: list[str], info: dict[str, Any]) -> FhirResponse:
    """The first page of ordered matches; the whole list is stored when it takes more than one
    page, and the paging links name it. `info`: params (for the self link), count, summary,
    elements, total, includes, revincludes, path (for the links), warnings."""
    search_id = None
    info["owner"] = owner(req)
    if len(keys) > info["count"] and info["summary"] != "count":
        search_id = SearchResults(server.database, server.settings.search_ttl_s).save(keys, info)
    return _page(server, req, keys, 0, info, search_id)


def stored_page(server: FhirServer, req: FhirRequest) -> FhirResponse:
    """A later page (`_page=<search id>.<offset>`), read from the stored matches."""
    token = req.param("_page") or ""
    search_id, _, offset = token.partition(".")
    stored = SearchResults(server.database, server.settings.search_ttl_s).load(search_id) \
        if search_id.isalnum() else None
    start = whole_number(offset)
    if stored is None or start is None or stored.get("owner", "") != owner(req):
        raise FhirError(410, Issue("error", "not-found", "this page of search results has expired or never "
                                                         "existed; run the search again"))
    stored["params"] = [tuple(pair) for pair in stored["params"]]  # BSON gives lists back
    return _page(server, req, stored["keys"], start, stored, search_id)


def _page(server: FhirServer, req: FhirRequest, keys: list[str], offset: int, info: dict[str, Any],
          search_id: str | None) -> FhirResponse:
    count = info["count"]
    base = req.base_url
    path = info["path"]
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset"}
    if info["total"] != "none" or info["summary"] == "count":
        bundle["total"] = len(keys)

    def url(params: list[tuple[str, str]]) -> str:
        query = urlencode(params, safe="|:/,$*")
        return (f"{base}/{path}" if path else base) + (f"?{query}" if query else "")

    links = [{"relation": "self", "url": url(info["params"])}]
    if search_id is not None:
        last = max(0, (len(keys) - 1) // count * count) if count else 0
        links.append({"relation": "first", "url": url([("_page", f"{search_id}.0")])})
        if offset > 0:
            links.append({"relation": "previous", "url": url([("_page", f"{search_id}.{max(0, offset - count)}")])})
        if offset + count < len(keys):
            links.append({"relation": "next", "url": url([("_page", f"{search_id}.{offset + count}")])})
        links.append({"relation": "last", "url": url([("_page", f"{search_id}.{last}")])})
    bundle["link"] = links
    size = PageSize(server.settings.max_response_bytes, len(orjson.dumps(bundle)))
    entries = []
    if info["summary"] != "count":
        page_keys = keys[offset:offset + count]
        # read again within the request's reach: what it may no longer see (a scope, a consent
        # changed since the first page) is left out
        seen = reach(server, req, "s")
        records = {k: r for k, r in server.store.fetch([k.split("#", 1)[0] for k in page_keys]).items()
                   if seen.sees(r.type, r)}
        page = [records[k] for k in page_keys if k in records]
        for key in budget.checked(page_keys, every=64):
            container = records.get(key.split("#", 1)[0])
            if container is None:
                continue
            if "#" in key:
                entries.append(_contained_entry(server, base, key, container, info, size))
            else:
                entries.append(_entry(server, base, container, "match", info, size))
        inc = [includes.Include(*i) for i in info["includes"]]
        rev = [includes.Include(*i) for i in info["revincludes"]]
        if inc or rev:
            extra = includes.included(server, page, inc, rev, reach=reach(server, req, "rs"),
                                      limit=server.settings.max_included)
            entries.extend(_entry(server, base, record, "include", info, size)
                           for record in budget.checked(extra, every=64))
    if info["warnings"]:
        entries.append({"fullUrl": "urn:uuid:outcome", "resource": {"resourceType": "OperationOutcome",
                                                                    "issue": info["warnings"]},
                        "search": {"mode": "outcome"}})
    if entries:
        bundle["entry"] = entries
    return FhirResponse(200, bundle)


class PageSize:
    """The serialized size of a page, counted entry by entry while the page is assembled: past
    the limit the page is refused before the rest is read and rendered."""

    ENTRY = 64  # the bytes of an entry around its resource and fullUrl: keys, search.mode, commas

    def __init__(self, limit: int, used: int = 0):
        self.limit = limit
        self.used = used

    def add(self, resource: bytes | str, full_url: str) -> None:
        """Count one entry; 422 when the page outgrows the limit."""
        self.used += len(resource) + len(full_url) + self.ENTRY
        if self.used > self.limit:
            raise FhirError(422, Issue("error", "too-costly", (
                f"this page would be larger than {self.limit} bytes (FHIR_MAX_RESPONSE_BYTES): ask for fewer or "
                f"smaller entries — a smaller _count, _elements or _summary, fewer _include/_revinclude")))


def _contained_entry(server: FhirServer, base: str, key: str, container: Record,
                     info: dict[str, Any], size: PageSize) -> dict[str, Any]:
    """A contained resource as a match (`_containedType=contained`): fullUrl `Type/id#inner`."""
    inner_id = key.split("#", 1)[1]
    resource = next((r for r in jsonio.loads(container.json).get("contained") or ()
                     if isinstance(r, dict) and r.get("id") == inner_id), None)
    json = subset(server.definitions, jsonio.dumps(resource), info["summary"], info["elements"])
    size.add(json, f"{base}/{key}")
    return {"fullUrl": f"{base}/{key}", "resource": orjson.Fragment(json), "search": {"mode": "match"}}


def _entry(server: FhirServer, base: str, record: Record, mode: str, info: dict[str, Any],
           size: PageSize) -> dict[str, Any]:
    json = subset(server.definitions, record.json, info["summary"], info["elements"])
    size.add(json, f"{base}/{record.key}")
    return {"fullUrl": f"{base}/{record.key}", "resource": orjson.Fragment(json), "search": {"mode": mode}}
