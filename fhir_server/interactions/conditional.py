"""The search behind conditional create, update, delete and patch, and conditional references.

A condition is a search query (`identifier=http://sys|123&_id=abc`), evaluated with the search
engine inside the write's transaction, so the decision (create, update which one, refuse) is
taken on the same snapshot the write commits on. A condition must restrict: a parameter that
would be ignored makes a search match everything, and a conditional write acting on everything
(a duplicate instead of the existing record, an update or delete of an arbitrary one) is worse
than no answer. So every parameter of a condition must become a term — unknown parameters and
modifiers, result parameters (`_sort`, `_count`, `_include`…), empty values and empty
alternatives are 400 naming the parameter, whatever `Prefer: handling` says — and several
matches always mean 412.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode

from fhir_server.errors import FhirError, Issue, bad_request
from fhir_server.search.execute import find
from fhir_server.search.query import RESULT_PARAMS, Context, build_terms, split_values
from fhir_server.search.reach import EVERYTHING, Reach
from fhir_server.search.terms import Values
from fhir_server.storage.store import Version

if TYPE_CHECKING:
    from fhir_server.server import FhirServer

# Parameters of a conditional write's URL that shape its response, not the match.
RESPONSE_FORMAT = frozenset({"_format", "_pretty"})


def query_string(params: list[tuple[str, str]]) -> str:
    """The condition in a `[type]?query` URL, without the parameters that shape the response;
    anything else (`_sort`, `_count`…) stays, for `parse` to refuse."""
    return urlencode([(k, v) for k, v in params if k not in RESPONSE_FORMAT], safe="|:/,$")


def parse(server: FhirServer, type_: str, text: str | None, where: str, reach: Reach) -> list[tuple[str, str]]:
    """The criteria of a condition, each one checked to restrict the match (400 otherwise)."""
    if not text or not text.strip():
        raise bad_request(f"{where} holds no search parameters: a conditional interaction needs a "
                          f"query such as identifier=system|value", code="required")
    text = _without_type(type_, text, where)
    pairs = parse_qsl(text, keep_blank_values=True)
    if not pairs:
        raise bad_request(f"{where} is not a search query: {text!r}; a conditional interaction needs a query "
                          f"such as identifier=system|value", code="invalid")
    for name, value in pairs:
        _check_pair(name, value, where)
    _terms(server, None, reach, type_, pairs)  # once outside the transaction: a bad condition fails fast
    return pairs


def _without_type(type_: str, text: str, where: str) -> str:
    """`identifier=…`, or `Patient?identifier=…` naming the condition's own type (never another)."""
    if "?" not in text:
        return text
    path, query = text.split("?", 1)
    named = path.rstrip("/").rsplit("/", 1)[-1]
    if path and named != type_:
        raise bad_request(f"{where} searches {named!r}, but the conditional interaction is on {type_}: "
                          f"write the condition as {type_}?… or without the type", code="invalid")
    return query


def _check_pair(name: str, value: str, where: str) -> None:
    """400 for what a search would ignore or could not compare: result parameters, empty values."""
    if name in RESULT_PARAMS:
        raise bad_request(f"{where}: {name} shapes a search's result and restricts nothing; a condition takes "
                          f"search parameters only (such as identifier=system|value)", code="not-supported")
    if not name:
        raise bad_request(f"{where} has a value without a parameter name", code="invalid")
    if not value:
        raise bad_request(f"parameter {name!r} in {where} has no value", code="value")
    if any(not alternative for alternative in split_values(value)):
        raise bad_request(f"parameter {name!r} in {where} has an empty alternative in {value!r}; remove the "
                          f"extra comma", code="value")


def matches(server: FhirServer, type_: str, criteria: list[tuple[str, str]], session: Any,
            reach: Reach) -> list[Version]:
    """Current resources of the type meeting the condition, read in the transaction, among those
    the request may see: a match out of its reach is no match (and is never overwritten)."""
    terms = _terms(server, session, reach, type_, criteria)
    return [Version(type_, r.id, r.version, r.last_updated, False, r.json)
            for r in find(server, type_, terms, reach=reach, session=session, json=True)]


def _terms(server: FhirServer, session: Any, reach: Reach, type_: str, criteria: list[tuple[str, str]]) -> list:
    """One term per criterion, or 400: a criterion without a term would widen the match (it is
    built again in the transaction, where a SearchParameter removed meanwhile must not widen it)."""
    context = Context(server, server.settings.base_url or "", strict=True, session=session,
                      strict_because="a condition must use known search parameters", reach=reach)
    terms, applied = build_terms(context, type_, criteria)
    ignored = [name for name, value in criteria if (name, value) not in applied]
    if ignored or not terms:
        name = (ignored or [name for name, _ in criteria] or [""])[0]
        raise bad_request(f"the parameter {name!r} of the condition does not restrict the match; a condition "
                          f"must only use search parameters of {type_}", code="not-supported")
    return terms


def matches_planned(server: FhirServer, type_: str, criteria: list[tuple[str, str]],
                    planned: list[tuple[str, str, dict[str, Any]]]) -> list[str]:
    """Ids of resources a transaction is about to write (`(type, id, ix)`) meeting the condition."""
    candidates = [(id_, ix) for t, id_, ix in planned if t == type_]
    if not candidates:
        return []
    terms = _terms(server, None, EVERYTHING, type_, criteria)  # the transaction's own writes
    return [id_ for id_, ix in candidates if all(t.match(Values(id_, ix)) for t in terms)]


def at_most_one(found: list[Version], type_: str, text: str | None) -> None:
    if len(found) > 1:
        raise FhirError(412, Issue("error", "multiple-matches",
                                   f"{len(found)} {type_} resources match {text!r}; make the condition "
                                   f"selective enough to match one"))


def guard_key(type_: str, criteria: list[tuple[str, str]]) -> str:
    """Same condition → same key, so racing conditional writes serialise on it."""
    canonical = "&".join(f"{k}={v}" for k, v in sorted(criteria))
    return f"{type_}?" + hashlib.sha256(canonical.encode()).hexdigest()[:32]
