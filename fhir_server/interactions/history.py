"""history at instance, type and system level: `_count`, `_since`, `_at`, stable paging links.

Paging is by key (the (lastUpdated, id) of the entry at the page edge), never by offset, and
every link is pinned to the moment of the first page: entries written after it never shift the
pages a client is walking through.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import orjson

from fhir_server.errors import FhirError, Issue, bad_request
from fhir_server.interactions.access import authorize, reach, sees
from fhir_server.interactions.read import unknown
from fhir_server.interactions.request import FhirRequest, FhirResponse, check_id, etag
from fhir_server.interactions.searchset import page_count
from fhir_server.search.dates import DateError, instant, period
from fhir_server.storage.store import Version, format_instant, now

if TYPE_CHECKING:
    from fhir_server.server import FhirServer

_PARAMS = {"_count", "_since", "_at", "_page", "_format", "_pretty", "_summary", "_elements"}
_TOP_KEY = "\U0010ffff"  # sorts after every key: "everything at this instant"
_EPOCH = datetime(1, 1, 1, tzinfo=UTC)


def history(server: FhirServer, req: FhirRequest) -> FhirResponse:
    _check_params(req)
    count = page_count(server, req.param("_count"))
    since = _instant_param(req, "_since")
    at = _period_param(req, "_at")
    cursor = _decode_cursor(req.param("_page"))
    if req.id is not None:
        check_id(req.id)
        return _instance_history(server, req, count, since, at, cursor)
    if req.type is None and req.identity is not None:
        # every type's changes in one list: only for scopes that cover every type
        authorize(req, None, "s")
    snapshot = cursor["s"] if cursor else now()
    limit = reach(server, req, "s")
    unlimited = not limit.restricted or (req.type is not None and limit.term(req.type) is None)
    keep = None if unlimited else (lambda version: sees(server, limit, version))
    if at is not None:
        scanned = server.store.history_scan(req.type, min(snapshot, at[1]), json=keep is not None)
        versions = [v for v in _current_during(scanned, at) if keep is None or keep(v)]
        if since:
            versions = [v for v in versions if v.last_updated >= since]
        return _page_of_list(req, versions, count, cursor, snapshot, total=len(versions))
    top = (snapshot, _TOP_KEY)
    bottom = (since or _EPOCH, "")
    hint = cursor.get("w", 60.0) if cursor else 60.0
    if cursor and cursor["d"] == "p":  # previous page: the entries just newer than the edge
        found, window = server.store.history_page(req.type, cursor["e"], top, count + 1, False, hint, keep)
        more_newer = len(found) > count
        page = list(reversed(found[:count]))
        return _bundle(req, page, None, snapshot, window, has_next=True, has_previous=more_newer)
    upper = cursor["e"] if cursor else top
    found, window = server.store.history_page(req.type, bottom, upper, count + 1, True, hint, keep)
    page = found[:count]
    return _bundle(req, page, None, snapshot, window, has_next=len(found) > count, has_previous=cursor is not None
                   and cursor["e"] != top)


def _instance_history(server: FhirServer, req, count, since, at, cursor) -> FhirResponse:
    readable = reach(server, req, "r")
    versions = [v for v in server.store.versions(req.type, req.id) if sees(server, readable, v)]
    if not versions:  # none, or none the caller may see
        raise unknown(req.type, req.id)
    snapshot = cursor["s"] if cursor else now()
    versions = [v for v in versions if v.last_updated <= snapshot]
    if at is not None:
        versions = _current_during(versions, at)
    if since is not None:
        versions = [v for v in versions if v.last_updated >= since]
    return _page_of_list(req, versions, count, cursor, snapshot, total=len(versions))


def _page_of_list(req, versions: list[Version], count: int, cursor, snapshot, total: int) -> FhirResponse:
    """Paging over a list already in memory (instance history, `_at`), still keyed by entry."""
    keys = [(v.last_updated, f"{v.type}/{v.id}/{v.version}") for v in versions]
    if cursor is None:
        start = 0
    elif cursor["d"] == "n":
        start = next((i for i, k in enumerate(keys) if k < cursor["e"]), len(keys))
    else:
        end = next((i for i, k in enumerate(keys) if k <= cursor["e"]), len(keys))
        start = max(0, end - count)
    page = versions[start:start + count]
    return _bundle(req, page, total, snapshot, 60.0, has_next=start + count < len(versions),
                   has_previous=start > 0)


def _current_during(versions, at: tuple[datetime, datetime]) -> list[Version]:
    """Versions that were the current one at some moment of [low, high), newest first."""
    low, high = at
    newer_seen: dict[str, datetime] = {}  # resource → lastUpdated of its next version
    out = []
    for v in versions:  # newest first
        if v.last_updated >= high:
            newer_seen[v.key] = v.last_updated
            continue
        replaced_at = newer_seen.get(v.key)
        if replaced_at is None or replaced_at > low:
            out.append(v)
        newer_seen[v.key] = v.last_updated
    return out


def _bundle(req: FhirRequest, page: list[Version], total: int | None, snapshot: datetime, window: float,
            has_next: bool, has_previous: bool) -> FhirResponse:
    base = req.base_url
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "history"}
    if total is not None:
        bundle["total"] = total
    path = "/".join(p for p in (req.type, req.id, "_history") if p)
    keep = [(k, v) for k, v in req.params if k in ("_count", "_since", "_at", "_format", "_pretty")]

    def link(relation: str, cursor: dict[str, Any] | None) -> dict[str, str]:
        params = keep + ([("_page", _encode_cursor(cursor))] if cursor else [])
        return {"relation": relation, "url": f"{base}/{path}" + (f"?{urlencode(params)}" if params else "")}

    links = [{"relation": "self", "url": f"{base}/{path}" + (f"?{urlencode(req.params)}" if req.params else "")},
             link("first", {"d": "n", "e": (snapshot, _TOP_KEY), "s": snapshot})]
    if page and has_previous:
        links.append(link("previous", {"d": "p", "e": _edge(page[0]), "s": snapshot, "w": window}))
    if page and has_next:
        links.append(link("next", {"d": "n", "e": _edge(page[-1]), "s": snapshot, "w": window}))
    bundle["link"] = links
    bundle["entry"] = [_entry(base, v) for v in page]
    if not bundle["entry"]:
        del bundle["entry"]
    return FhirResponse(200, bundle)


def _edge(v: Version) -> tuple[datetime, str]:
    return (v.last_updated, f"{v.type}/{v.id}/{v.version}")


def _entry(base: str, v: Version) -> dict[str, Any]:
    method = v.method or ("DELETE" if v.deleted else "PUT")
    entry: dict[str, Any] = {"fullUrl": f"{base}/{v.type}/{v.id}"}
    if v.json is not None:
        entry["resource"] = orjson.Fragment(v.json)
    status = {"POST": "201 Created", "DELETE": "200 OK"}.get(method, "201 Created" if v.version == 1 else "200 OK")
    entry["request"] = {"method": method, "url": v.type if method == "POST" else f"{v.type}/{v.id}"}
    entry["response"] = {"status": status, "etag": etag(v.version), "lastModified": format_instant(v.last_updated)}
    return entry


def _check_params(req: FhirRequest) -> None:
    unknown_params = sorted({k for k, _ in req.params if k not in _PARAMS})
    if unknown_params and req.prefer_handling == "strict":
        raise bad_request(f"history does not know the parameter(s) {', '.join(unknown_params)}; it accepts "
                          f"_count, _since, _at", code="not-supported")




def _instant_param(req: FhirRequest, name: str) -> datetime | None:
    raw = req.param(name)
    if raw is None:
        return None
    try:
        return instant(raw)
    except DateError as exc:
        raise bad_request(f"{name}: {exc}", code="value") from None


def _period_param(req: FhirRequest, name: str) -> tuple[datetime, datetime] | None:
    raw = req.param(name)
    if raw is None:
        return None
    try:
        return period(raw)
    except DateError as exc:
        raise bad_request(f"{name}: {exc}", code="value") from None


def _encode_cursor(cursor: dict[str, Any]) -> str:
    data = {"d": cursor["d"], "t": format_instant(cursor["e"][0]), "k": cursor["e"][1],
            "s": format_instant(cursor["s"]), "w": round(cursor.get("w", 60.0), 3)}
    return base64.urlsafe_b64encode(orjson.dumps(data)).decode().rstrip("=")


def _decode_cursor(token: str | None) -> dict[str, Any] | None:
    if token is None:
        return None
    try:
        data = orjson.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        return {"d": data["d"] if data["d"] in ("n", "p") else "n", "e": (instant(data["t"]), str(data["k"])),
                "s": instant(data["s"]), "w": float(data["w"])}
    except (ValueError, KeyError, TypeError, DateError, orjson.JSONDecodeError):
        raise FhirError(400, Issue("error", "value", "_page is not a paging token of this server; "
                                   "follow the links of the Bundle")) from None
