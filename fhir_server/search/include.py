"""`_include` and `_revinclude` (with `:iterate` and `*`): the resources a page brings along.

References are read from the stored search values, so a forward include is one `_id`
lookup per target type and a reverse include one keyed query per source type and parameter
(a `*` source means the types that have resources, and only parameters that may refer to the
page's types). The work follows what is added, and what is added is bounded: at most
`FHIR_MAX_INCLUDED` resources per page (422 beyond, not a silently cut list), `:iterate`
rounds until nothing new comes (at most `MAX_ROUNDS`), the request's budget checked each round.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fhir_server import budget
from fhir_server.errors import FhirError, Issue
from fhir_server.search.execute import find, stored_types
from fhir_server.search.params import reference
from fhir_server.search.params.token import keys_term
from fhir_server.search.terms import IDS, Term, values
from fhir_server.storage.records import Record

if TYPE_CHECKING:
    from fhir_server.search.reach import Reach
    from fhir_server.server import FhirServer

MAX_ROUNDS = 32  # :iterate rounds; each adds only what earlier rounds did not, so chains end sooner


@dataclass(frozen=True)
class Include:
    source: str  # resource type, or "*"
    code: str  # reference parameter code, or "*"
    target: str | None
    iterate: bool

    def text(self) -> str:
        out = "*" if self.source == "*" and self.code == "*" else f"{self.source}:{self.code}"
        return out + (f":{self.target}" if self.target else "")


def parse(server: FhirServer, name: str, value: str) -> Include:
    iterate = name.endswith(":iterate") or name.endswith(":recurse")
    if value == "*":
        return Include("*", "*", None, iterate)
    parts = value.split(":")
    if len(parts) not in (2, 3) or not server.definitions.is_resource_type(parts[0]):
        raise FhirError(400, Issue("error", "invalid", f"{name}={value}: expected Type:parameter[:targetType]"))
    source, code = parts[0], parts[1]
    target = parts[2] if len(parts) == 3 else None
    if code != "*":
        param = server.search_parameters.get(source, code)
        if param is None or param.type != "reference":
            raise FhirError(400, Issue("error", "invalid", f"{name}={value}: {code!r} is not a reference "
                                                           f"parameter of {source}"))
    if target is not None and not server.definitions.is_resource_type(target):
        raise FhirError(400, Issue("error", "invalid", f"{name}={value}: {target!r} is not a resource type"))
    return Include(source, code, target, iterate)


def _reference_codes(server: FhirServer, type_: str, code: str) -> list[str]:
    if code != "*":
        return [code]
    return [c for c, p in server.search_parameters.for_type(type_).items() if p.type == "reference"]


def too_many(limit: int) -> FhirError:
    """The 422 of a page whose includes exceed the limit."""
    return FhirError(422, Issue("error", "too-costly", (
        f"_include/_revinclude would add more than {limit} resources to this page (FHIR_MAX_INCLUDED): use a "
        f"smaller _count, fewer or narrower includes (Type:parameter:Target rather than *), or no :iterate")))


class _Added:
    """What the includes added so far: each resource once, never more than `limit`."""

    def __init__(self, matches: list[Record], limit: int):
        self.seen = {record.key for record in matches}
        self.records: list[Record] = []
        self.limit = limit

    def add(self, record: Record) -> bool:
        """Keep `record` unless already there (False); 422 past the limit."""
        if record.key in self.seen:
            return False
        if len(self.records) >= self.limit:
            raise too_many(self.limit)
        self.seen.add(record.key)
        self.records.append(record)
        return True


def included(server: FhirServer, matches: list[Record], includes: list[Include], revincludes: list[Include],
             *, reach: Reach, limit: int, session: Any = None) -> list[Record]:
    """Resources to add with search.mode=include (422 beyond `limit` of them). Only what
    `reach` lets the request see is read: nothing else is returned, nor followed by `:iterate`."""
    added = _Added(matches, limit)
    stored: list[str] | None = None
    frontier = matches
    for round_ in range(MAX_ROUNDS + 1):
        budget.check()
        fwd = [i for i in includes if round_ == 0 or i.iterate]
        rev = [i for i in revincludes if round_ == 0 or i.iterate]
        if not (fwd or rev) or not frontier:
            break
        if stored is None and any(i.source == "*" for i in rev):
            stored = stored_types(server)
        before = len(added.records)
        _forward(server, frontier, fwd, added, session, reach)
        _reverse(server, frontier, rev, added, session, reach, stored or [])
        frontier = added.records[before:]
    return added.records


def _forward(server: FhirServer, docs: list[Record], includes: list[Include], added: _Added, session: Any,
             reach: Reach) -> None:
    wanted: dict[str, set[str]] = {}
    codes: dict[tuple[str, str], list[str]] = {}
    for doc in budget.checked(docs, every=256):
        for inc in includes:
            if inc.source not in ("*", doc.type):
                continue
            if (doc.type, inc.code) not in codes:
                codes[doc.type, inc.code] = _reference_codes(server, doc.type, inc.code)
            for code in codes[doc.type, inc.code]:
                for key in values(doc, code):
                    local = reference.local_type(key)
                    if local and (inc.target is None or inc.target == local[0]) and key not in added.seen \
                            and server.definitions.is_resource_type(local[0]):
                        wanted.setdefault(local[0], set()).add(local[1])
    for type_, ids in sorted(wanted.items()):
        by_id = Term(IDS, sorted(ids), lambda doc, ids=ids: doc.id in ids)
        for record in find(server, type_, [by_id], reach=reach, json=True, session=session):
            added.add(record)


def _reverse(server: FhirServer, docs: list[Record], revincludes: list[Include], added: _Added, session: Any,
             reach: Reach, stored: list[str]) -> None:
    targets = {doc.key for doc in docs}
    for inc in revincludes:
        types = stored if inc.source == "*" else [inc.source]
        for type_ in (t for t in types if not reach.excludes(t)):
            for code in _reference_codes(server, type_, inc.code):
                budget.check()
                keys = {k for k in targets if inc.target is None or k.startswith(inc.target + "/")}
                keys = _referable(server, type_, code, keys) if inc.code == "*" else keys
                if not keys:
                    continue
                for record in find(server, type_, [keys_term(code, keys)], reach=reach, session=session, json=True):
                    added.add(record)


def _referable(server: FhirServer, type_: str, code: str, keys: set[str]) -> set[str]:
    """The `Type/id` keys the parameter may refer to (its targets; all when it names none):
    a `*` revinclude asks no parameter about types it cannot point at."""
    param = server.search_parameters.get(type_, code)
    targets = set(param.targets) if param is not None else set()
    if not targets:
        return keys
    return {k for k in keys if k.split("/", 1)[0] in targets}
