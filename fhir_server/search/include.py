"""`_include` and `_revinclude` (with `:iterate` and `*`): the resources a page brings along.

References are read from the stored search values, so a forward include is one `_id`
lookup per target type and a reverse include one keyed query per source type.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fhir_server.errors import FhirError, Issue
from fhir_server.search.execute import find
from fhir_server.search.params import reference
from fhir_server.search.params.token import keys_term
from fhir_server.search.terms import IDS, Term, values
from fhir_server.storage.records import Record

if TYPE_CHECKING:
    from fhir_server.search.reach import Reach
    from fhir_server.server import FhirServer

MAX_ROUNDS = 4  # :iterate depth
MAX_INCLUDED = 5000


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


def included(server: FhirServer, matches: list[Record], includes: list[Include], revincludes: list[Include],
             *, reach: Reach, session: Any = None) -> tuple[list[Record], bool]:
    """Resources to add with search.mode=include, and whether the cap cut the list short. Only
    what `reach` lets the request see is read: nothing else is returned, nor followed by
    `:iterate`."""
    seen = {record.key for record in matches}
    out: list[Record] = []
    frontier = matches
    for round_ in range(MAX_ROUNDS + 1):
        fwd = [i for i in includes if round_ == 0 or i.iterate]
        rev = [i for i in revincludes if round_ == 0 or i.iterate]
        if not (fwd or rev) or not frontier:
            break
        new = _forward(server, frontier, fwd, seen, session, reach) + \
            _reverse(server, frontier, rev, seen, session, reach)
        out.extend(new)
        if len(out) > MAX_INCLUDED:
            return out[:MAX_INCLUDED], True
        frontier = new
    return out, False


def _forward(server: FhirServer, docs: list[Record], includes, seen, session, reach: Reach) -> list[Record]:
    wanted: dict[str, set[str]] = {}
    for doc in docs:
        for inc in includes:
            if inc.source not in ("*", doc.type):
                continue
            for code in _reference_codes(server, doc.type, inc.code):
                for key in values(doc, code):
                    local = reference.local_type(key)
                    if local and (inc.target is None or inc.target == local[0]) and key not in seen \
                            and server.definitions.is_resource_type(local[0]):
                        wanted.setdefault(local[0], set()).add(local[1])
    out = []
    for type_, ids in sorted(wanted.items()):
        by_id = Term(IDS, sorted(ids), lambda doc, ids=ids: doc.id in ids)
        for record in find(server, type_, [by_id], reach=reach, json=True, session=session):
            if record.key not in seen:
                seen.add(record.key)
                out.append(record)
    return out


def _reverse(server: FhirServer, docs: list[Record], revincludes, seen, session, reach: Reach) -> list[Record]:
    out = []
    targets = {doc.key for doc in docs}
    for inc in revincludes:
        types = server.definitions.resource_types if inc.source == "*" else (inc.source,)
        for type_ in (t for t in types if not reach.excludes(t)):
            for code in _reference_codes(server, type_, inc.code):
                keys = {k for k in targets if inc.target is None or k.startswith(inc.target + "/")}
                if not keys:
                    continue
                for record in find(server, type_, [keys_term(code, keys)], reach=reach, session=session, json=True):
                    if record.key not in seen:
                        seen.add(record.key)
                        out.append(record)
    return out
