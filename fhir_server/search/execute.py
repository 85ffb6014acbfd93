"""Run terms against one resource type: drive with the cheapest indexed term, check them all.

The driving term's conditions become index keys (or ids), one indexed query each, so the
database only ever plans an equality or a bounded range on one field; every term's exact
predicate then runs on what came back. With no indexed term the type is scanned once (search
values only, never the resource JSON). Storage runs the queries: this module decides which.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fhir_server import budget
from fhir_server.errors import FhirError, Issue
from fhir_server.search.keys import contained_prefix, key_condition, prefixed, search_conditions
from fhir_server.search.terms import IDS, KEYS, NOTHING, PREFIX, Term, Values
from fhir_server.storage.records import Ids, Key, Keys, Record, Selection

if TYPE_CHECKING:
    from fhir_server.search.reach import Reach
    from fhir_server.server import FhirServer

# A driving term with more conditions than this is cheaper as a scan.
MAX_DRIVING_CONDITIONS = 500


def plan(terms: list[Term], keyed_only: bool = False) -> Term | None:
    """The indexed term with the lowest estimated cost, or None (scan)."""
    best, best_cost = None, None
    for term in terms + _merged_ranges(terms):
        if not term.indexed or not term.conditions or len(term.conditions) > MAX_DRIVING_CONDITIONS:
            continue
        if keyed_only and term.field == IDS:
            continue
        if term.field not in (IDS, KEYS) and any(key_condition(term.field, c) is None for c in term.conditions):
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
        conditions = [key_condition(f"{code}.l", window)]
        h_lows = [t.bounds.h_low for t in group if t.bounds.h_low is not None]
        if h_lows:
            conditions.append(key_condition(f"{code}.h", {"$gt": max(h_lows)}))
        if any(c is None for c in conditions):
            continue
        matches = [t.match for t in group]
        merged.append(Term(KEYS, conditions, lambda doc, matches=matches: all(m(doc) for m in matches), PREFIX))
    return merged


def selection(term: Term | None) -> Selection:
    """What storage reads for a driving term (None: the whole type)."""
    if term is None:
        return None
    if term.field == IDS:
        return Ids(tuple(term.conditions))
    if term.field == KEYS:
        return Keys(tuple(term.conditions))
    keys: list[Key] = []
    for condition in term.conditions:
        keys.extend(search_conditions(term.field, condition) or ())
    return Keys(tuple(keys))


def find(server: FhirServer, type_: str, terms: list[Term], *, reach: Reach, session: Any = None,
         json: bool = False) -> list[Record]:
    """Live resources of `type_` matching every term (unordered), with their JSON if asked,
    among those `reach` lets the request see (search/reach.py): every caller says whose
    search it runs, the server's own lookups with `EVERYTHING`."""
    limit = reach.term(type_)
    if limit is not None:
        if limit is NOTHING:  # the type is out of reach
            return []
        terms = [*terms, limit]
    found = server.store.find(type_, selection(plan(terms)), json=json, session=session)
    # the driver's predicate is exact, its index condition may be a superset
    return [record for record in budget.checked(found, every=32) if all(t.match(record) for t in terms)]


def find_contained(server: FhirServer, type_: str, terms: list[Term], containers: list[str], *,
                   reach: Reach) -> list[tuple[Record, str]]:
    """Resources of `type_` contained in resources of the `containers` types, matching every term:
    (container, contained id), in the containers `reach` lets the request see (a contained
    resource belongs to its container). Needs one keyed term to drive with."""
    driver = plan(terms, keyed_only=True)
    if driver is None:
        raise FhirError(400, Issue("error", "too-costly", "_contained searches need at least one indexed "
                                   "search parameter (not only _id, :missing=true, :not or :contains)"))
    prefix = contained_prefix(type_)
    keys = Keys(tuple(prefixed(key, prefix) for key in selection(driver).keys))
    found: dict[tuple[str, str, str], tuple[Record, str]] = {}
    for container in containers:
        if reach.excludes(container):
            continue
        for record in budget.checked(server.store.find(container, keys, json=True, contained=True), every=512):
            if not reach.sees(container, record):
                continue
            for inner in record.contained:
                if inner.type == type_ and all(t.match(Values(inner.id, inner.values)) for t in terms):
                    found.setdefault((container, record.id, inner.id), (record, inner.id))
    return list(found.values())


def stored_types(server: FhirServer) -> list[str]:
    """Resource types that have resources in the database, in the definitions' order."""
    names = server.store.stored_types()
    return [t for t in server.definitions.resource_types if t in names]
