"""The searchset Bundle and its pages, shared by search and by operations that answer with
one (`$everything`): matches are stored once (storage/searches.py) when they exceed a page,
and every link reads that stored list, so pages stay stable while data changes. A page is
bounded: at most `FHIR_MAX_INCLUDED` included resources and `FHIR_MAX_RESPONSE_BYTES` of JSON,
counted while its entries are rendered. Matches that would not fit are left to the next page
(a page may hold fewer than `_count`, as the specification allows); too many includes, or one
entry past the size alone, is a 422 saying how to ask for less."""

from __future__ import annotations

from collections.abc import Callable, Sequence
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


def page_count(server: FhirServer, raw: str | None, *, positive: bool = False) -> int:
    """The page size `_count` asks for: FHIR_DEFAULT_COUNT when absent, capped at FHIR_MAX_COUNT;
    400 for anything but digits, or for 0 where a page must hold something (`positive`)."""
    if raw is None:
        return server.settings.default_count
    count = whole_number(raw, server.settings.max_count)
    if count is None or (positive and not count):
        kind = "a positive whole number" if positive else "a whole number"
        raise FhirError(400, Issue("error", "value", f"_count must be {kind}, got {raw[:40]!r}"))
    return count


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
    found = SearchResults(server.database, server.settings.search_ttl_s).load(search_id) \
        if search_id.isalnum() else None
    start = whole_number(offset)
    if found is None or start is None or found[0].get("owner", "") != owner(req):
        raise FhirError(410, Issue("error", "not-found", "this page of search results has expired or never "
                                                         "existed; run the search again"))
    stored, keys = found
    stored["params"] = [tuple(pair) for pair in stored["params"]]  # BSON gives lists back
    return _page(server, req, keys, start, stored, search_id)


def _page(server: FhirServer, req: FhirRequest, keys: Sequence[str], offset: int, info: dict[str, Any],
          search_id: str | None) -> FhirResponse:
    """One page: its matches as long as they fit FHIR_MAX_RESPONSE_BYTES (half of it when includes
    are asked for, the rest being theirs), so a page too large for the limit is cut short and its
    `next` link starts after the last match shown; only one match (or its includes) alone past the
    limit is a 422."""
    count = info["count"]
    base = req.base_url
    path = info["path"]
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset"}
    if info["total"] != "none" or info["summary"] == "count":
        bundle["total"] = len(keys)

    def url(params: list[tuple[str, str]]) -> str:
        query = urlencode(params, safe="|:/,$*")
        return (f"{base}/{path}" if path else base) + (f"?{query}" if query else "")

    self_link = url(info["params"])
    size = PageSize(server.settings.max_response_bytes,
                    len(orjson.dumps(bundle)) + len(self_link) + 4 * len(url([("_page", "x" * 60)])) + 256)
    entries: list[dict[str, Any]] = []
    shown = 0  # the stored keys this page went through (shown, or no longer visible)
    if info["summary"] != "count":
        page_keys = keys[offset:offset + count]
        # read again within the request's reach: what it may no longer see (a scope, a consent
        # changed since the first page) is left out
        seen = reach(server, req, "s")
        records = {k: r for k, r in server.store.fetch([k.split("#", 1)[0] for k in page_keys]).items()
                   if seen.sees(r.type, r)}
        inc = [includes.Include(*i) for i in info["includes"]]
        rev = [includes.Include(*i) for i in info["revincludes"]]
        matches_limit = size.used + (size.limit - size.used) // 2 if inc or rev else size.limit
        page: list[Record] = []
        for key in budget.checked(page_keys, every=64):
            container = records.get(key.split("#", 1)[0])
            if container is not None:
                full_url, json = _contained(server, base, key, container, info) if "#" in key \
                    else _rendered(server, base, container, info)
                if entries and not size.fits(json, full_url, matches_limit):
                    break
                size.add(json, full_url)
                entries.append(_entry_of(full_url, json, "match"))
                if "#" not in key:
                    page.append(container)
            shown += 1
        if inc or rev:
            extra = includes.included(server, page, inc, rev, reach=reach(server, req, "rs"),
                                      limit=server.settings.max_included)
            for record in budget.checked(extra, every=64):
                full_url, json = _rendered(server, base, record, info)
                size.add(json, full_url)
                entries.append(_entry_of(full_url, json, "include"))
    following = offset + shown if info["summary"] != "count" else len(keys)
    if search_id is None and following < len(keys):  # the first page, cut short by its size
        search_id = SearchResults(server.database, server.settings.search_ttl_s).save(keys, info)
    bundle["link"] = _links(url, self_link, search_id, offset, following, count, len(keys))
    if info["warnings"]:
        entries.append({"fullUrl": "urn:uuid:outcome", "resource": {"resourceType": "OperationOutcome",
                                                                    "issue": info["warnings"]},
                        "search": {"mode": "outcome"}})
    if entries:
        bundle["entry"] = entries
    return FhirResponse(200, bundle)


def _links(url: Callable[[list[tuple[str, str]]], str], self_link: str, search_id: str | None, offset: int,
           following: int, count: int, total: int) -> list[dict[str, str]]:
    """self, and for a stored search first/previous/next/last; `next` starts where this page
    stopped (before `offset + count` when the page was cut short by its size)."""
    links = [{"relation": "self", "url": self_link}]
    if search_id is None:
        return links
    last = max(0, (total - 1) // count * count) if count else 0
    links.append({"relation": "first", "url": url([("_page", f"{search_id}.0")])})
    if offset > 0:
        links.append({"relation": "previous", "url": url([("_page", f"{search_id}.{max(0, offset - count)}")])})
    if following < total:
        links.append({"relation": "next", "url": url([("_page", f"{search_id}.{following}")])})
    links.append({"relation": "last", "url": url([("_page", f"{search_id}.{last}")])})
    return links


class PageSize:
    """The serialized size of a page, counted entry by entry while the page is assembled: past
    the limit the page is refused before the rest is read and rendered."""

    ENTRY = 64  # the bytes of an entry around its resource and fullUrl: keys, search.mode, commas

    def __init__(self, limit: int, used: int = 0):
        self.limit = limit
        self.used = used

    def fits(self, resource: bytes | str, full_url: str, limit: int) -> bool:
        """Whether one more entry keeps the page within `limit` (at most the page's own)."""
        return self.used + len(resource) + len(full_url) + self.ENTRY <= min(limit, self.limit)

    def add(self, resource: bytes | str, full_url: str) -> None:
        """Count one entry; 422 when the page outgrows the limit."""
        self.used += len(resource) + len(full_url) + self.ENTRY
        if self.used > self.limit:
            raise FhirError(422, Issue("error", "too-costly", (
                f"this page would be larger than {self.limit} bytes (FHIR_MAX_RESPONSE_BYTES): ask for fewer or "
                f"smaller entries — a smaller _count, _elements or _summary, fewer _include/_revinclude")))


def _contained(server: FhirServer, base: str, key: str, container: Record,
               info: dict[str, Any]) -> tuple[str, bytes]:
    """A contained resource as a match (`_containedType=contained`): fullUrl `Type/id#inner`."""
    inner_id = key.split("#", 1)[1]
    resource = next((r for r in jsonio.loads(container.json).get("contained") or ()
                     if isinstance(r, dict) and r.get("id") == inner_id), None)
    return f"{base}/{key}", subset(server.definitions, jsonio.dumps(resource), info["summary"], info["elements"])


def _rendered(server: FhirServer, base: str, record: Record, info: dict[str, Any]) -> tuple[str, bytes]:
    return f"{base}/{record.key}", subset(server.definitions, record.json, info["summary"], info["elements"])


def _entry_of(full_url: str, json: bytes | str, mode: str) -> dict[str, Any]:
    return {"fullUrl": full_url, "resource": orjson.Fragment(json), "search": {"mode": mode}}
