"""The search behind conditional create, update and delete.

A condition is a search query (`identifier=http://sys|123&_id=abc`), evaluated with the search
engine inside the write's transaction, so the decision (create, update which one, refuse) is
taken on the same snapshot the write commits on. A condition must mean something: an unknown
parameter is an error here, never ignored, and several matches always mean 412.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode

from fhir_server.errors import FhirError, Issue, bad_request
from fhir_server.search.execute import find
from fhir_server.search.query import RESULT_PARAMS, Context, build_terms
from fhir_server.search.reach import EVERYTHING, Reach
from fhir_server.search.terms import Values
from fhir_server.storage.store import Version

if TYPE_CHECKING:
    from fhir_server.server import FhirServer


def query_string(params: list[tuple[str, str]]) -> str:
    """The condition in a `[type]?query` URL, without the response-shaping parameters."""
    return urlencode([(k, v) for k, v in params if k not in RESULT_PARAMS], safe="|:/,$")


def parse(server: FhirServer, type_: str, text: str | None, where: str, reach: Reach) -> list[tuple[str, str]]:
    if not text or not text.strip():
        raise bad_request(f"{where} holds no search parameters: a conditional interaction needs a "
                          f"query such as identifier=system|value", code="required")
    text = text.split("?", 1)[1] if "?" in text else text  # accept "Patient?identifier=…"
    pairs = [(k, v) for k, v in parse_qsl(text, keep_blank_values=True) if k not in RESULT_PARAMS]
    if not pairs:
        raise bad_request(f"{where} is not a search query: {text!r}", code="invalid")
    for name, value in pairs:
        if not value:
            raise bad_request(f"parameter {name!r} in {where} has no value", code="value")
    # Build once outside the transaction so that a bad condition fails fast with a 400.
    build_terms(_context(server, None, reach), type_, pairs)
    return pairs


def matches(server: FhirServer, type_: str, criteria: list[tuple[str, str]], session: Any,
            reach: Reach) -> list[Version]:
    """Current resources of the type meeting the condition, read in the transaction, among those
    the request may see: a match out of its reach is no match (and is never overwritten)."""
    terms, _ = build_terms(_context(server, session, reach), type_, criteria)
    return [Version(type_, r.id, r.version, r.last_updated, False, r.json)
            for r in find(server, type_, terms, reach=reach, session=session, json=True)]


def _context(server: FhirServer, session: Any, reach: Reach) -> Context:
    return Context(server, server.settings.base_url or "", strict=True, session=session,
                   strict_because="a condition must use known search parameters", reach=reach)


def matches_planned(server: FhirServer, type_: str, criteria: list[tuple[str, str]],
                    planned: list[tuple[str, str, dict[str, Any]]]) -> list[str]:
    """Ids of resources a transaction is about to write (`(type, id, ix)`) meeting the condition."""
    candidates = [(id_, ix) for t, id_, ix in planned if t == type_]
    if not candidates:
        return []
    terms, _ = build_terms(_context(server, None, EVERYTHING), type_, criteria)  # the transaction's own writes
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
