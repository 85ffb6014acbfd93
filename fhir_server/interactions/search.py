"""search: type (`GET [type]?…`, `POST [type]/_search`), system (`GET [base]?_type=…`) and
compartment (`GET Patient/123/CarePlan`), with sorting, paging, includes, totals and subsets.

A search runs once: its ordered matches are stored (storage/searches.py) when they do not fit
one page, and every paging link reads that stored list, so pages stay stable while data
changes. Parameters the server does not know are reported (lenient) or refused (strict).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fhir_server import budget
from fhir_server.errors import FhirError, Issue, bad_request
from fhir_server.interactions import searchset
from fhir_server.interactions.access import allowed_types, left_out, reach
from fhir_server.interactions.request import FhirRequest, FhirResponse, check_id
from fhir_server.search import include as includes
from fhir_server.search import sort as sorting
from fhir_server.search.compartments import compartment_terms
from fhir_server.search.execute import find, find_contained, stored_types
from fhir_server.search.query import RESULT_PARAMS, Context, build_terms
from fhir_server.search.summary import SUMMARY_VALUES
from fhir_server.search.terms import Term
from fhir_server.storage.records import Record

if TYPE_CHECKING:
    from fhir_server.server import FhirServer

_TOTALS = ("none", "estimate", "accurate")


def search(server: FhirServer, req: FhirRequest) -> FhirResponse:
    if req.param("_page") is not None:
        return searchset.stored_page(server, req)
    searched = reach(server, req, "s")
    ctx = Context(server, req.base_url, strict=req.prefer_handling == "strict", reach=searched)
    form = _Form.read(server, req, ctx)
    types = _types(server, req, form, ctx)
    if req.type is None or req.id is not None:  # several types: the router checked none of them
        types, excluded = allowed_types(req, types, "s")
        if excluded:
            ctx.warnings.append(left_out(excluded, "s"))
    compartment = _compartment(server, req) if req.id is not None else None
    matches: list[Record] = []
    contained_keys: list[str] = []
    applied: list[tuple[str, str]] = []
    for type_ in budget.checked(types):
        extra = compartment.get(type_) if compartment is not None else None
        if compartment is not None and extra is None:
            continue
        terms, applied_here = build_terms(ctx, type_, form.criteria)
        applied = applied_here if not applied else applied
        terms += [extra] if extra else []
        if form.contained in ("false", "both"):
            matches.extend(find(server, type_, terms, reach=searched))
        if form.contained in ("true", "both"):
            for container, inner in find_contained(server, type_, terms, stored_types(server), reach=searched):
                if form.contained_type == "container":
                    matches.append(container)
                else:
                    contained_keys.append(f"{container.key}#{inner}")
    matches = _order(server, form, _unique(matches), types)
    keys = [record.key for record in matches] + sorted(contained_keys)
    info = {"params": form.self_params(applied), "count": form.count, "summary": form.summary,
            "elements": form.elements, "total": form.total,
            "includes": [[i.source, i.code, i.target, i.iterate] for i in form.includes],
            "revincludes": [[i.source, i.code, i.target, i.iterate] for i in form.revincludes],
            "path": _path(req), "warnings": [w.to_json() for w in ctx.warnings]}
    return searchset.first_page(server, req, keys, info)


class _Form:
    """The request's search parameters split into criteria and result controls."""

    def __init__(self, server: FhirServer, req: FhirRequest, params: list[tuple[str, str]], ctx: Context):
        self.criteria: list[tuple[str, str]] = []
        self.count = server.settings.default_count
        self.sort: list[tuple[str, bool]] = []
        self.summary: str | None = None
        self.elements: list[str] | None = None
        self.total = "accurate"
        self.includes: list[includes.Include] = []
        self.revincludes: list[includes.Include] = []
        self.type_filter: list[str] | None = None
        self.contained = "false"  # false | true | both
        self.contained_type = "container"  # container | contained
        self.controls: list[tuple[str, str]] = []
        for name, value in params:
            base = name.split(":", 1)[0]
            if base not in RESULT_PARAMS:
                self.criteria.append((name, value))
                continue
            self._control(server, ctx, name, base, value)

    @classmethod
    def read(cls, server: FhirServer, req: FhirRequest, ctx: Context) -> _Form:
        params = list(req.params)
        if isinstance(req.body, list):  # POST _search: the form body's parameters
            params += req.body
        return cls(server, req, params, ctx)

    def _control(self, server: FhirServer, ctx: Context, name: str, base: str, value: str) -> None:
        if base == "_count":
            self.count = searchset.page_count(server, value)
        elif base == "_sort":
            self.sort = sorting.parse(value, server.settings.max_sort_keys)
        elif base == "_summary":
            if value not in SUMMARY_VALUES:
                raise bad_request(f"_summary must be one of {', '.join(SUMMARY_VALUES)}", code="value")
            self.summary = value
        elif base == "_elements":
            self.elements = [e.strip() for e in value.split(",") if e.strip()]
        elif base == "_total":
            if value not in _TOTALS:
                raise bad_request(f"_total must be one of {', '.join(_TOTALS)}", code="value")
            self.total = value
        elif base == "_include":
            self.includes.append(includes.parse(server, name, value))
        elif base == "_revinclude":
            self.revincludes.append(includes.parse(server, name, value))
        elif base == "_type":
            self.type_filter = [t for v in value.split(",") for t in [v.strip()] if t]
        elif base == "_contained":
            if value not in ("false", "true", "both"):
                raise bad_request("_contained must be false, true or both", code="value")
            self.contained = value
        elif base == "_containedType":
            if value not in ("container", "contained"):
                raise bad_request("_containedType must be container or contained", code="value")
            self.contained_type = value
        self.controls.append((name, value))

    def self_params(self, applied: list[tuple[str, str]]) -> list[tuple[str, str]]:
        return applied + [(k, v) for k, v in self.controls if k not in ("_format", "_pretty")]


def _types(server: FhirServer, req: FhirRequest, form: _Form, ctx: Context) -> list[str]:
    if req.type is not None and req.id is None:
        return [req.type]
    if req.id is not None:  # compartment: one type, or * for all in the compartment
        if req.compartment != "*" and not server.definitions.is_resource_type(req.compartment or ""):
            raise FhirError(404, Issue("error", "not-supported", f"{req.compartment!r} is not a resource type"))
        return list(server.definitions.resource_types) if req.compartment == "*" else [req.compartment]
    if form.type_filter:
        unknown = [t for t in form.type_filter if not server.definitions.is_resource_type(t)]
        if unknown:
            raise bad_request(f"_type: {', '.join(unknown)} is not a resource type", code="value")
        return form.type_filter
    if form.criteria and not all(n.split(":")[0] in ("_id", "_lastUpdated", "_tag", "_profile", "_security",
                                                       "_source", "_list", "_has")
                                 for n, _ in form.criteria):
        raise bad_request("a system-level search with type-specific parameters needs _type", code="required")
    return list(server.definitions.resource_types)


def _compartment(server: FhirServer, req: FhirRequest) -> dict[str, Term]:
    check_id(req.id)
    terms = compartment_terms(server, req.type, req.id)
    if req.compartment != "*" and req.compartment not in terms:
        raise FhirError(400, Issue("error", "invalid", f"{req.compartment} is not in the {req.type} compartment"))
    return terms


def _unique(matches: list[Record]) -> list[Record]:
    first: dict[str, Record] = {}
    for record in matches:
        first.setdefault(record.key, record)
    return list(first.values())


def _order(server: FhirServer, form: _Form, matches: list[Record], types: list[str]) -> list[Record]:
    if not form.sort:
        return sorted(matches, key=lambda m: (m.last_updated, m.type, m.id))
    keys = []
    for code, descending in form.sort:
        if code in ("_id", "_lastUpdated"):
            keys.append((code, "special", descending))
            continue
        param = next((server.search_parameters.get(t, code) for t in types
                      if server.search_parameters.get(t, code)), None)
        if param is None:
            raise bad_request(f"_sort: {code!r} is not a search parameter of {', '.join(types[:3])}", code="value")
        keys.append((code, param.type, descending))
    return sorting.order(matches, keys)


def _path(req: FhirRequest) -> str:
    parts = [p for p in (req.type, req.id, req.compartment) if p]
    return "/".join(parts)
