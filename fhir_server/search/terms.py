"""A parsed search criterion, in the two forms the executor needs.

- `field`/`conditions`: conditions on one stored value (`code`, `code.l`…; `IDS` for resource
  ids, `KEYS` for index keys as they are) whose union selects a superset of the matches (no
  field when no index can help, e.g. `:missing=true` or `:not`); one query per condition, since
  an equality or a range on one field is what every server plans well;
- `match`: the exact predicate on a candidate's search values.

The executor drives the query with the most selective indexed term and checks every term's
`match` on what comes back: one single-field index per query, which every MongoDB-compatible
server plans well, and exact FHIR semantics whatever the database.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

IDS = "_id"  # a term on resource ids
KEYS = "_keys"  # a term whose conditions are index keys already (compartments, :missing)


class Candidate(Protocol):
    """What a predicate reads: a stored `Record`, or values not stored yet."""

    @property
    def id(self) -> str: ...

    @property
    def values(self) -> dict[str, Any]: ...


@dataclass(frozen=True, slots=True)
class Values:
    """Search values to test that are not a stored resource (a transaction's planned writes,
    a composite's components, a contained resource)."""

    id: str
    values: dict[str, Any]

# Planner ranks: lower is more selective.
EXACT = 0  # equality on ids/keys
PREFIX = 10  # string prefix, uri below
RANGE = 20  # dates, numbers
SCAN = 100  # no index


@dataclass(frozen=True)
class Bounds:
    """What a range term implies for the low ends (`l`) of the stored ranges, and for the high
    ends (`h`, keyed for long ranges only), so that ANDed terms on one parameter
    (`date=ge2024&date=lt2025`) can drive together with one bounded range."""

    code: str
    low: Any = None  # l >= low (None: open)
    high: Any = None  # l <= high (None: open)
    h_low: Any = None  # long ranges: h > h_low (None: the l bounds find them too)


@dataclass
class Term:
    field: str | None
    conditions: list[Any]
    match: Callable[[Candidate], bool]
    rank: int = EXACT
    bounds: Bounds | None = None

    @property
    def indexed(self) -> bool:
        return self.field is not None


def values(doc: Candidate, code: str) -> list[Any]:
    """The search values of one parameter (empty if none)."""
    return doc.values.get(code) or []


def ids_term(ids: set[str]) -> Term:
    """Resources with one of these ids."""
    return Term(IDS, sorted(ids), lambda doc: doc.id in ids, EXACT)


NOTHING = Term(IDS, [], lambda doc: False, EXACT)  # matches no resource (a type out of a request's reach)
