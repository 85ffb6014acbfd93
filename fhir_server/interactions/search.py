"""search: type (`GET [type]?…`, `POST [type]/_search`), system (`GET [base]?_type=…`) and
compartment (`GET Patient/123/CarePlan`), with sorting, paging, includes, totals and subsets.

A search runs once: its ordered matches are stored (storage/searches.py) when they do not fit
one page, and every paging link reads that stored list, so pages stay stable while data
changes. Parameters the server does not know are reported (lenient) or refused (strict).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import orjson

from fhir_server import jsonio
from fhir_server.errors import FhirError, Issue, bad_request
from fhir_server.interactions.request import FhirRequest, FhirResponse, check_id
from fhir_server.search import include as includes
from fhir_server.search import sort as sorting
from fhir_server.search.execute import fetch, find, find_contained, stored_types
from fhir_server.search.query import RESULT_PARAMS, Context, build_terms
from fhir_server.search.summary import SUMMARY_VALUES, subset
from fhir_server.search.terms import EXACT, Term, values
from fhir_server.storage.searches import SearchResults

_TOTALS = ("none", "estimate", "accurate")


def search(server, req: FhirRequest) -> FhirResponse:
    if req.param("_page") is not None:
        return _stored_page(server, req)
    ctx = Context(server, req.base_url, strict=req.prefer_handling == "strict")
    form = _Form.read(server, req, ctx)
    types = _types(server, req, form, ctx)
    compartment = _compartment_terms(server, req) if req.id is not None else None
    matches: list[tuple[str, dict[str, Any]]] = []
    contained_keys: list[str] = []
    applied: list[tuple[str, str]] = []
    for type_ in types:
        extra = compartment.get(type_) if compartment is not None else None
        if compartment is not None and extra is None:
            continue
        terms, applied_here = build_terms(ctx, type_, form.criteria)
        applied = applied_here if not applied else applied
        terms += [extra] if extra else []
        if form.contained in ("false", "both"):
            matches.extend((type_, d) for d in find(server, type_, terms))
        if form.contained in ("true", "both"):
            for ctype, cdoc, inner in find_contained(server, type_, terms, stored_types(server)):
                if form.contained_type == "container":
                    matches.append((ctype, cdoc))
                else:
                    contained_keys.append(f"{ctype}/{cdoc['_id']}#{inner}")
    matches = _order(server, form, _unique(matches), types)
    keys = [f"{t}/{d['_id']}" for t, d in matches] + sorted(contained_keys)
    info = {"params": form.self_params(applied), "count": form.count, "summary": form.summary,
            "elements": form.elements, "total": form.total,
            "includes": [[i.source, i.code, i.target, i.iterate] for i in form.includes],
            "revincludes": [[i.source, i.code, i.target, i.iterate] for i in form.revincludes],
            "path": _path(req), "warnings": [w.to_json() for w in ctx.warnings]}
    search_id = None
    if len(keys) > form.count and form.summary != "count":
        search_id = SearchResults(server.database, server.settings.search_ttl_s).save(keys, info)
    return _page(server, req, keys, 0, info, search_id)


class _Form:
    """The request's search parameters split into criteria and result controls."""

    def __init__(self, server, req: FhirRequest, params: list[tuple[str, str]], ctx: Context):
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
    def read(cls, server, req: FhirRequest, ctx: Context) -> _Form:
        params = list(req.params)
        if isinstance(req.body, list):  # POST _search: the form body's parameters
            params += req.body
        return cls(server, req, params, ctx)

    def _control(self, server, ctx: Context, name: str, base: str, value: str) -> None:
        if base == "_count":
            if not value.isdigit():
                raise bad_request(f"_count must be a whole number, got {value!r}", code="value")
            self.count = min(int(value), server.settings.max_count)
        elif base == "_sort":
            self.sort = [(v[1:], True) if v.startswith("-") else (v, False) for v in value.split(",") if v]
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


def _types(server, req: FhirRequest, form: _Form, ctx: Context) -> list[str]:
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


def _compartment_terms(server, req: FhirRequest) -> dict[str, Term]:
    """`Patient/123/CarePlan`: per type, the OR of its compartment parameters = Patient/123."""
    check_id(req.id)
    definition = server.definitions.resource(f"http://hl7.org/fhir/CompartmentDefinition/{req.type.lower()}")
    if definition is None or definition.get("code") != req.type:
        raise FhirError(404, Issue("error", "not-found", f"{req.type} defines no compartment"))
    target = f"{req.type}/{req.id}"
    out = {}
    for entry in definition.get("resource") or ():
        codes = [c for c in entry.get("param") or () if c != "{def}"]
        if not codes:
            continue
        keys = [f"{c}={target}" for c in codes]

        def match(doc, codes=tuple(codes)) -> bool:
            return any(target in values(doc, c) for c in codes)

        out[entry["code"]] = Term("k", keys, match, EXACT)
    if req.compartment != "*" and req.compartment not in out:
        raise FhirError(400, Issue("error", "invalid", f"{req.compartment} is not in the {req.type} compartment"))
    return out


def _unique(matches):
    seen, out = set(), []
    for type_, doc in matches:
        if (type_, doc["_id"]) not in seen:
            seen.add((type_, doc["_id"]))
            out.append((type_, doc))
    return out


def _order(server, form: _Form, matches, types: list[str]):
    if not form.sort:
        return sorted(matches, key=lambda m: (m[1].get("ts"), m[0], m[1]["_id"]))
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
    docs = sorting.order([dict(d, _t=t) for t, d in matches], keys)
    return [(d.pop("_t"), d) for d in docs]


def _path(req: FhirRequest) -> str:
    parts = [p for p in (req.type, req.id, req.compartment) if p]
    return "/".join(parts)


def _stored_page(server, req: FhirRequest) -> FhirResponse:
    token = req.param("_page") or ""
    search_id, _, offset = token.partition(".")
    stored = SearchResults(server.database, server.settings.search_ttl_s).load(search_id) \
        if search_id.isalnum() else None
    if stored is None or not offset.isdigit():
        raise FhirError(410, Issue("error", "not-found", "this page of search results has expired or never "
                                                         "existed; run the search again"))
    stored["params"] = [tuple(pair) for pair in stored["params"]]  # BSON gives lists back
    return _page(server, req, stored["keys"], int(offset), stored, search_id)


def _page(server, req: FhirRequest, keys: list[str], offset: int, info: dict[str, Any],
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
    entries = []
    if info["summary"] != "count":
        page_keys = keys[offset:offset + count]
        docs = fetch(server, [k.split("#", 1)[0] for k in page_keys])
        page = [(k.split("/", 1)[0], docs[k]) for k in page_keys if k in docs]
        for key in page_keys:
            container = docs.get(key.split("#", 1)[0])
            if container is None:
                continue
            if "#" in key:
                entries.append(_contained_entry(server, base, key, container, info))
            else:
                entries.append(_entry(server, base, key.split("/", 1)[0], container, "match", info))
        inc = [includes.Include(*i) for i in info["includes"]]
        rev = [includes.Include(*i) for i in info["revincludes"]]
        if inc or rev:
            extra, capped = includes.included(server, page, inc, rev)
            entries.extend(_entry(server, base, t, d, "include", info) for t, d in extra)
            if capped:
                info["warnings"].append(Issue("warning", "too-costly", f"only the first {includes.MAX_INCLUDED} "
                                                                       f"included resources are returned").to_json())
    if info["warnings"]:
        entries.append({"fullUrl": "urn:uuid:outcome", "resource": {"resourceType": "OperationOutcome",
                                                                    "issue": info["warnings"]},
                        "search": {"mode": "outcome"}})
    if entries:
        bundle["entry"] = entries
    return FhirResponse(200, bundle)


def _contained_entry(server, base: str, key: str, container: dict[str, Any], info: dict[str, Any]) -> dict[str, Any]:
    """A contained resource as a match (`_containedType=contained`): fullUrl `Type/id#inner`."""
    inner_id = key.split("#", 1)[1]
    resource = next((r for r in jsonio.loads(container["json"]).get("contained") or ()
                     if isinstance(r, dict) and r.get("id") == inner_id), None)
    json = subset(server.definitions, jsonio.dumps(resource), info["summary"], info["elements"])
    return {"fullUrl": f"{base}/{key}", "resource": orjson.Fragment(json), "search": {"mode": "match"}}


def _entry(server, base: str, type_: str, doc: dict[str, Any], mode: str, info: dict[str, Any]) -> dict[str, Any]:
    json = subset(server.definitions, doc["json"], info["summary"], info["elements"])
    return {"fullUrl": f"{base}/{type_}/{doc['_id']}", "resource": orjson.Fragment(json), "search": {"mode": mode}}

