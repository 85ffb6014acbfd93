"""`Patient/[id]/$everything`: the patient's record — the patient compartment and what it refers to.

Parameters (R4 OperationDefinition Patient-everything): `start`/`end` (care dates: a resource
with a clinical date outside the period is left out, one without any date is kept), `_since`
(changed since), `_type` (only these types), `_count` (page size; pages are stored like a
search's, so they stay stable). Referenced resources outside the compartment (practitioners,
organisations, medications, locations…) come along, one level deep. The record is gathered
once, within the request's budget (checked per type and while scanning); every page is a
searchset page, bounded like a search's (FHIR_MAX_RESPONSE_BYTES).
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from fhir_server import budget
from fhir_server.errors import bad_request
from fhir_server.interactions import searchset
from fhir_server.interactions.access import allowed_types, left_out, reach
from fhir_server.interactions.read import current
from fhir_server.interactions.request import FhirRequest, FhirResponse
from fhir_server.search.compartments import compartment_terms
from fhir_server.search.dates import DateError, period
from fhir_server.search.execute import find, stored_types
from fhir_server.search.params import reference
from fhir_server.search.reach import Reach
from fhir_server.search.terms import ids_term, values
from fhir_server.storage.records import Record

if TYPE_CHECKING:
    from fhir_server.server import FhirServer

# The date parameters that say when care happened, by preference.
_CARE_DATES = ("date", "period", "authored", "authoredon", "occurrence", "onset-date", "recorded-date",
               "effective", "issued", "created", "sent", "received", "started")


def everything(server: FhirServer, req: FhirRequest) -> FhirResponse:
    if req.param("_page") is not None:
        return searchset.stored_page(server, req)
    readable = reach(server, req, "r")
    current(server, "Patient", req.id, readable)  # 404 or 410 before any work
    start, end = _date("start", req.param("start"), 0), _date("end", req.param("end"), 1)
    since = _date("_since", req.param("_since"), 0)
    types = _types(server, req.param("_type"))
    count = searchset.page_count(server, req.param("_count"), positive=True)
    # the record holds every type: only those the scopes let the caller read are gathered
    kept, excluded = allowed_types(req, sorted(types or server.definitions.resource_types), "r")
    types = set(kept)
    warnings = [left_out(excluded, "r").to_json()] if excluded and req.param("_type") else []

    keys = [f"Patient/{req.id}"] if _wanted("Patient", types) else []
    docs: list[Record] = []
    present = set(stored_types(server))
    for type_, term in compartment_terms(server, "Patient", req.id).items():
        if type_ == "Patient" or type_ not in present or not _wanted(type_, types):
            continue
        for doc in budget.checked(find(server, type_, [term], reach=readable), every=512):
            if _in_period(server, type_, doc, start, end) and (since is None or doc.last_updated >= since):
                docs.append(doc)
    docs.sort(key=lambda doc: (doc.last_updated, doc.type, doc.id))
    keys += [doc.key for doc in docs]
    own = find(server, "Patient", [ids_term({req.id})], reach=readable)
    keys += _referenced(server, docs + own, set(keys) | {f"Patient/{req.id}"}, types, since, readable)
    info = {"params": [(k, v) for k, v in req.params if k != "_page"], "count": count, "summary": None,
            "elements": None, "total": "accurate", "includes": [], "revincludes": [],
            "path": f"Patient/{req.id}/$everything", "warnings": warnings}
    return searchset.first_page(server, req, keys, info)


def _referenced(server: FhirServer, docs: list[Record], seen: set[str], types: set[str],
                since: datetime | None, readable: Reach) -> list[str]:
    """`Type/id` of the resources the compartment refers to and does not hold itself."""
    wanted: dict[str, set[str]] = {}
    for doc in budget.checked(docs, every=256):
        for code, param in server.search_parameters.for_type(doc.type).items():
            if param.type != "reference":
                continue
            for key in values(doc, code):
                local = reference.local_type(key)
                if local and key not in seen and server.definitions.is_resource_type(local[0]) \
                        and _wanted(local[0], types):
                    wanted.setdefault(local[0], set()).add(local[1])
    out = []
    for type_, ids in sorted(wanted.items()):
        for doc in find(server, type_, [ids_term(ids)], reach=readable):
            if since is None or doc.last_updated >= since:
                out.append(doc.key)
    return sorted(set(out))


def _in_period(server: FhirServer, type_: str, doc: Record, start: datetime | None, end: datetime | None) -> bool:
    if start is None and end is None:
        return True
    params = server.search_parameters.for_type(type_)
    for code in _CARE_DATES:
        if code in params and params[code].type == "date" and values(doc, code):
            return any((start is None or v["h"] > start) and (end is None or v["l"] < end)
                       for v in values(doc, code))
    return True  # no clinical date: part of the record whatever the period


def _wanted(type_: str, types: set[str]) -> bool:
    return type_ in types


def _types(server: FhirServer, raw: str | None) -> set[str] | None:
    if not raw:
        return None
    types = {t.strip() for t in raw.split(",") if t.strip()}
    unknown_types = sorted(t for t in types if not server.definitions.is_resource_type(t))
    if unknown_types:
        raise bad_request(f"_type: {', '.join(unknown_types)} is not a resource type", code="value")
    return types


def _date(name: str, raw: str | None, side: int) -> datetime | None:
    if raw is None:
        return None
    try:
        return period(raw)[side]
    except DateError as exc:
        raise bad_request(f"{name}: {exc}", code="value") from None
