"""Run terms against one resource type: drive with the cheapest indexed term, check them all.

The driving term's conditions become queries on the single `k` index (or on `_id`), one per
condition, so the database only ever plans an equality or a bounded range on one field; every
term's exact predicate then runs on what came back. With no indexed term the collection is
scanned once (search values only, never the resource JSON).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from fhir_server.errors import FhirError, Issue
from fhir_server.search.keys import contained_prefix, key_condition, prefixed, search_conditions
from fhir_server.search.terms import PREFIX, Term
from fhir_server.storage.database import translate_errors

# Without the JSON: what the predicates, sorting and includes need.
META_PROJECTION = {"json": 0, "k": 0}
FULL_PROJECTION = {"json": 1, "ix": 1, "v": 1, "ts": 1, "del": 1}
# A driving term with more conditions than this is cheaper as a scan.
MAX_DRIVING_CONDITIONS = 500


def plan(terms: list[Term], keyed_only: bool = False) -> Term | None:
    """The indexed term with the lowest estimated cost, or None (scan)."""
    best, best_cost = None, None
    for term in terms + _merged_ranges(terms):
        if not term.indexed or not term.conditions or len(term.conditions) > MAX_DRIVING_CONDITIONS:
            continue
        if keyed_only and term.field == "_id":
            continue
        if term.field not in ("_id", "k") and any(key_condition(term.field, c) is None for c in term.conditions):
            continue
        cost = term.rank + len(term.conditions)
        if best_cost is None or cost < best_cost:
            best, best_cost = term, cost
    return best


def _merged_ranges(terms: list[Term]) -> list[Term]:
    """ANDed range terms on one parameter (`date=ge2024&date=lt2025`) as one bounded range on
    the low ends, plus the long ranges' high ends when a term needs them: each alone is open
    on one side and reads a share of the collection, together they read what they match."""
    groups: dict[str, list[Term]] = {}
    for term in terms:
        if term.bounds is not None:
            groups.setdefault(term.bounds.code, []).append(term)
    merged = []
    for code, group in groups.items():
        if len(group) < 2:
            continue
        lows = [t.bounds.low for t in group if t.bounds.low is not None]
        highs = [t.bounds.high for t in group if t.bounds.high is not None]
        if not lows or not highs:
            continue
        window: dict[str, Any] = {"$gte": max(lows), "$lte": min(highs)}
        conditions = [key_condition(f"ix.{code}.l", window)]
        h_lows = [t.bounds.h_low for t in group if t.bounds.h_low is not None]
        if h_lows:
            conditions.append(key_condition(f"ix.{code}.h", {"$gt": max(h_lows)}))
        if any(c is None for c in conditions):
            continue
        matches = [t.match for t in group]
        merged.append(Term("k", conditions, lambda doc, matches=matches: all(m(doc) for m in matches), PREFIX))
    return merged


def queries(database, term: Term) -> list[dict[str, Any]]:
    if term.field == "_id":
        ids = list(term.conditions)
        return [{"_id": ids[0]}] if len(ids) == 1 else [{"_id": {"$in": ids}}]
    if term.field == "k":  # raw keys, e.g. a compartment's `patient=Patient/1` OR `performer=Patient/1`
        return [{"k": key if isinstance(key, str) or database.tight_multikey_ranges else {"$elemMatch": key}}
                for key in term.conditions]
    out = []
    for condition in term.conditions:
        for key in search_conditions(term.field, condition) or ():
            if isinstance(key, dict) and not database.tight_multikey_ranges:
                key = {"$elemMatch": key}
            out.append({"k": key})
    return out


@translate_errors
def find(server, type_: str, terms: list[Term], session: Any = None,
         projection: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Current, non-deleted documents of `type_` matching every term (unordered)."""
    collection = server.store.db[type_]
    projection = projection or META_PROJECTION
    if "ix" not in projection and any(projection.values()):
        projection = {**projection, "ix": 1}
    if any(projection.values()):
        projection = {**projection, "del": 1}
    driver = plan(terms)
    docs: Iterable[dict[str, Any]]
    if driver is None:
        docs = collection.find({}, projection, session=session)
        rest = terms
    else:
        seen: dict[str, dict[str, Any]] = {}
        for query in queries(server.database, driver):
            for doc in collection.find(query, projection, session=session):
                seen.setdefault(doc["_id"], doc)
        docs = seen.values()
        rest = terms  # the driver's predicate is exact, its index condition may be a superset
    return [doc for doc in docs if not doc.get("del") and all(t.match(doc) for t in rest)]


@translate_errors
def fetch(server, keys: list[str]) -> dict[str, dict[str, Any]]:
    """Full current documents for `Type/id` keys, one `_id` lookup per type; deleted ones left out."""
    by_type: dict[str, list[str]] = {}
    for key in keys:
        type_, id_ = key.split("/", 1)
        by_type.setdefault(type_, []).append(id_)
    out = {}
    for type_, ids in by_type.items():
        for doc in server.store.db[type_].find({"_id": {"$in": ids}}, FULL_PROJECTION):
            if not doc.get("del"):
                out[f"{type_}/{doc['_id']}"] = doc
    return out


@translate_errors
def find_contained(server, type_: str, terms: list[Term],
                   containers: list[str]) -> list[tuple[str, dict[str, Any], str]]:
    """Resources of `type_` contained in resources of the `containers` types, matching every term:
    (container type, container document, contained id). Needs one keyed term to drive with."""
    driver = plan(terms, keyed_only=True)
    if driver is None:
        raise FhirError(400, Issue("error", "too-costly", "_contained searches need at least one indexed "
                                   "search parameter (not only _id, :missing=true, :not or :contains)"))
    prefix = contained_prefix(type_)
    found: dict[tuple[str, str, str], tuple[str, dict[str, Any], str]] = {}
    for container in containers:
        collection = server.store.db[container]
        for query in queries(server.database, driver):
            for doc in collection.find({"k": prefixed(query["k"], prefix)}, FULL_PROJECTION | {"cix": 1}):
                if doc.get("del"):
                    continue
                for entry in doc.get("cix") or ():
                    pseudo = {"_id": entry["id"], "ix": entry["ix"]}
                    if entry["t"] == type_ and all(t.match(pseudo) for t in terms):
                        found.setdefault((container, doc["_id"], entry["id"]), (container, doc, entry["id"]))
    return list(found.values())


@translate_errors
def stored_types(server) -> list[str]:
    """Resource types that have a collection in the database."""
    names = set(server.store.db.list_collection_names())
    return [t for t in server.definitions.resource_types if t in names]
