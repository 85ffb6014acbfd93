"""Referential integrity (FHIR_REFERENTIAL_INTEGRITY, on by default), as HAPI and Blaze do it.

- A write whose *local literal* reference resolves to nothing is refused (422 naming the
  element): `Type/id`, or the same written with this server's base URL, must name a current
  resource; `Type/id/_history/n` a stored version. Not checked: contained (`#x`), `urn:`
  placeholders, logical (identifier-only) references, other servers, canonicals.
- Deleting a resource that current resources refer to is refused (409 listing a few), unless
  they are deleted in the same unit of work (a transaction, or `_cascade=delete`).

Both run once per unit of work, after every write is staged (`check`, called by
`FhirServer.transact`), so what a transaction creates counts as existing and what it deletes as
gone. Targets are looked up in one query per type; referrers through the reference keys search
already indexes (`subject=Patient/1`), one query per type that has resources — so, as with
HAPI, a reference in an element no search parameter covers is checked on write but does not
hold back a delete. Whether a target exists is decided whatever the caller may see (the write
must be consistent); a 409 names only referrers the caller may see and counts the others.
AuditEvent and Provenance record what happened to a resource: they never hold its deletion.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fhir_server import budget
from fhir_server.errors import FhirError, Issue, bad_request
from fhir_server.interactions.access import reach
from fhir_server.interactions.audit import access
from fhir_server.interactions.request import FhirRequest, FhirResponse
from fhir_server.interactions.rules import WriteRefused
from fhir_server.storage.records import Ids, Record
from fhir_server.storage.store import Version, Write

if TYPE_CHECKING:
    from fhir_server.server import FhirServer

# Records of what happened to resources: they outlive them, and never hold a deletion back.
RECORDS = frozenset({"AuditEvent", "Provenance"})
MAX_CASCADE = 1000  # resources one `_cascade=delete` may delete besides the one asked for
_LISTED = 5  # referrers a 409 names
_LOCAL = re.compile(r"^(?:(?P<base>.+?)/)?(?P<type>[A-Z][A-Za-z]+)/(?P<id>[A-Za-z0-9\-.]{1,64})"
                    r"(?:/_history/(?P<version>[A-Za-z0-9\-.]{1,64}))?$")
# Elements named `reference` that are uris, not References: (resource type, parent element)
_URI_REFERENCES = frozenset({("DetectedIssue", ""), ("Immunization", "education")})


@dataclass(frozen=True)
class Reference:
    """One local literal reference of a resource, and where it is (`Task.for`)."""

    type: str
    id: str
    version: str | None
    element: str

    @property
    def key(self) -> str:
        return f"{self.type}/{self.id}"


class DanglingReference(WriteRefused):
    """422: a write refers to what does not exist; `source` is the writing resource's Type/id
    (a transaction names its entry with it)."""

    def __init__(self, source: str, issues: list[Issue]):
        super().__init__(source, 422, issues)


def enabled(server: FhirServer) -> bool:
    return bool(server.settings.referential_integrity)


def local_bases(server: FhirServer, req: FhirRequest | None) -> tuple[str, ...]:
    """The base URLs under which an absolute reference is local."""
    bases = (req.base_url if req is not None else None, server.settings.base_url)
    return tuple(dict.fromkeys(b.rstrip("/") for b in bases if b))


def local_references(resource: dict[str, Any], bases: tuple[str, ...],
                     is_type: Callable[[str], bool]) -> Iterator[Reference]:
    """The local literal references of a resource and of its contained resources; resources
    nested otherwise (a Bundle's entries, a Parameters' parts) are not this resource's."""
    root = resource.get("resourceType")
    if not isinstance(root, str):
        return
    yield from _walk(resource, root, root, "", bases, is_type)


def _walk(value: Any, path: str, type_: str, parent: str, bases: tuple[str, ...],
          is_type: Callable[[str], bool]) -> Iterator[Reference]:
    if isinstance(value, list):
        for i, item in enumerate(value):
            yield from _walk(item, f"{path}[{i}]", type_, parent, bases, is_type)
        return
    if not isinstance(value, dict):
        return
    ref = value.get("reference")
    if isinstance(ref, str) and "language" not in value and (type_, parent) not in _URI_REFERENCES:
        found = parse_local(ref, bases, is_type)  # an Expression has a language; its reference is a uri
        if found is not None:
            yield Reference(*found, path)
    for key, item in value.items():
        if not isinstance(item, (dict, list)) or key.startswith("_"):
            continue
        if key == "contained" and path == type_:
            for i, inner in enumerate(item if isinstance(item, list) else ()):
                if isinstance(inner, dict) and isinstance(inner.get("resourceType"), str):
                    yield from _walk(inner, f"{path}.contained[{i}]", inner["resourceType"], "", bases, is_type)
            continue
        if isinstance(item, dict) and "resourceType" in item:
            continue  # a resource inside this one (Bundle.entry.resource, Parameters.parameter.resource)
        if isinstance(item, list) and any(isinstance(i, dict) and "resourceType" in i for i in item):
            continue
        yield from _walk(item, f"{path}.{key}", type_, key, bases, is_type)


def parse_local(ref: str, bases: tuple[str, ...], is_type: Callable[[str], bool]) -> tuple[str, str, str | None] | None:
    match = _LOCAL.match(ref)
    if match is None or not is_type(match["type"]):
        return None
    base = match["base"]
    if base is not None and base.rstrip("/") not in bases:
        return None  # another server, or not a RESTful URL
    return match["type"], match["id"], match["version"]


# -- the check of a unit of work ----------------------------------------------------------------

def check(server: FhirServer, req: FhirRequest, writes: list[Write], session: Any) -> None:
    """Inside the unit of work, once every write is staged: 422 if a written resource refers to
    nothing, 409 if a deleted one is still referred to by a resource this unit leaves alone."""
    if not enabled(server) or not writes:
        return
    _check_targets(server, req, writes, session)
    _check_deletions(server, req, writes, session)


def _check_targets(server: FhirServer, req: FhirRequest, writes: list[Write], session: Any) -> None:
    staged = {f"{w.type}/{w.id}": w for w in writes}
    bases = local_bases(server, req)
    pending: list[tuple[Write, Reference]] = []
    current: dict[str, set[str]] = {}
    versions: set[str] = set()
    for write in writes:
        if write.json is None:
            continue
        budget.check()
        for ref in local_references(json.loads(write.json), bases, server.definitions.is_resource_type):
            mine = staged.get(ref.key)
            if ref.version is not None:
                if mine is None or mine.json is None or str(mine.version) != ref.version:
                    versions.add(f"{ref.key}/{ref.version}")
                    pending.append((write, ref))
            elif mine is None:
                current.setdefault(ref.type, set()).add(ref.id)
                pending.append((write, ref))
            elif mine.json is None:
                pending.append((write, ref))  # deleted by this very unit of work
    if not pending:
        return
    live = {f"{t}/{r.id}" for t, ids in current.items()
            for r in server.store.find(t, Ids(tuple(sorted(ids))), session=session)}
    stored = server.store.stored_versions(sorted(versions), session=session)
    missing = [(w, r) for w, r in pending if not _resolved(r, staged, live, stored)]
    if missing:
        raise DanglingReference(f"{missing[0][0].type}/{missing[0][0].id}",
                                [_dangling(w, r) for w, r in missing])


def _resolved(ref: Reference, staged: dict[str, Write], live: set[str], stored: set[str]) -> bool:
    if ref.version is not None:
        return f"{ref.key}/{ref.version}" in stored
    return ref.key not in staged and ref.key in live


def _dangling(write: Write, ref: Reference) -> Issue:
    what = f"{ref.key}/_history/{ref.version}" if ref.version else ref.key
    gone = "that version does not exist" if ref.version else "no such resource exists here (or it is deleted)"
    return Issue("error", "not-found", (
        f"{ref.element} of {write.type}/{write.id} refers to {what}, but {gone}: create it first (in the same "
        f"transaction if you like), refer to it by identifier or to another server by absolute URL, or ask the "
        f"administrator to load with FHIR_REFERENTIAL_INTEGRITY=off"), [ref.element])


def _check_deletions(server: FhirServer, req: FhirRequest, writes: list[Write], session: Any) -> None:
    deleted = [w for w in writes if w.json is None]
    if not deleted:
        return
    targets: dict[str, set[str]] = {}
    for write in deleted:
        targets.setdefault(write.type, set()).add(write.id)
    touched: dict[str, set[str]] = {}
    for write in writes:
        touched.setdefault(write.type, set()).add(write.id)
    found = referrers(server, targets, touched, _LISTED + 1, session, json=True)
    if found:
        raise still_referenced(server, req, [f"{w.type}/{w.id}" for w in deleted], found)


def referrers(server: FhirServer, targets: dict[str, set[str]], exclude: dict[str, set[str]], limit: int,
              session: Any, *, json: bool = False) -> list[Record]:
    """Up to `limit` current resources (records of events aside) whose indexed references name
    one of `targets` (type → ids), leaving out `exclude` (type → ids): one query per stored type."""
    out: list[Record] = []
    for type_ in sorted(server.store.stored_types()):
        if type_ in RECORDS or not server.definitions.is_resource_type(type_) or len(out) >= limit:
            continue
        budget.check()
        keys = _reference_keys(server, type_, targets)
        if keys:
            out += server.store.referring(type_, keys, limit=limit - len(out), exclude=sorted(exclude.get(type_, ())),
                                          json=json, session=session)
    return out


def _reference_keys(server: FhirServer, type_: str, targets: dict[str, set[str]]) -> list[str]:
    """The search keys (`code=Target/id`) by which resources of `type_` would name the targets."""
    keys: list[str] = []
    for code, param in server.search_parameters.for_type(type_).items():
        if param.type != "reference":
            continue
        for target, ids in targets.items():
            if not param.targets or target in param.targets or "Resource" in param.targets:
                keys += [f"{code}={target}/{id_}" for id_ in sorted(ids)]
    return keys


def still_referenced(server: FhirServer, req: FhirRequest, deleted: list[str], found: list[Record]) -> FhirError:
    """The 409 of a delete that would leave references dangling, naming the referrers the caller
    may see (at most five) and counting the others."""
    visible = reach(server, req, "s")
    bases = local_bases(server, req)
    gone = set(deleted)
    named: list[str] = []
    hidden = 0
    for record in found[:_LISTED]:
        if not visible.sees(record.type, record):
            hidden += 1
            continue
        elements = sorted({r.element for r in local_references(json.loads(record.json or b"{}"), bases,
                                                               server.definitions.is_resource_type)
                           if r.key in gone})
        named.append(f"{record.key} ({', '.join(elements) or 'a reference'})")
    listed = ", ".join(named)
    if hidden:
        listed += (", and " if listed else "") + f"{hidden} resource{'s' if hidden > 1 else ''} you cannot see"
    if len(found) > _LISTED:
        listed += ", and more"
    what = deleted[0] if len(deleted) == 1 else f"{', '.join(deleted[:3])}{'…' if len(deleted) > 3 else ''}"
    return FhirError(409, Issue("error", "conflict", (
        f"{what} cannot be deleted: other resources refer to it: {listed}. Delete or change them first (or in the "
        f"same transaction), or delete them with it: DELETE {deleted[0]}?_cascade=delete (an administrator's "
        f"token with system-level delete on their types; at most {MAX_CASCADE} resources)")))


# -- _cascade=delete ----------------------------------------------------------------------------

CASCADE = "_cascade"


def cascade_requested(req: FhirRequest) -> bool:
    """Whether a delete asks `_cascade=delete` (400 for any other value)."""
    values = [v for k, v in req.params if k == CASCADE]
    if not values:
        return False
    if values != ["delete"]:
        raise bad_request(f"{CASCADE}={','.join(values)} is not understood: the one value is {CASCADE}=delete",
                          code="value")
    return True


def without_cascade(params: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return [(k, v) for k, v in params if k != CASCADE]


def cascade(server: FhirServer, req: FhirRequest, deleted: list[Version], session: Any) -> list[Version]:
    """The current versions of every resource that refers, directly or through others, to
    `deleted`, to delete with them in the same unit of work: 403 unless the token may delete
    every such type at system level (or in open mode), 409 past MAX_CASCADE resources."""
    if not enabled(server):
        return []
    seen: dict[str, set[str]] = {}
    for version in deleted:
        seen.setdefault(version.type, set()).add(version.id)
    frontier = seen
    more: list[Version] = []
    while frontier:
        budget.check()
        found = referrers(server, frontier, seen, MAX_CASCADE - len(more) + 1, session, json=True)
        if len(more) + len(found) > MAX_CASCADE:
            raise FhirError(409, Issue("error", "too-costly", (
                f"{CASCADE}=delete would delete more than {MAX_CASCADE} resources besides "
                f"{', '.join(v.key for v in deleted)}; delete the resources that refer to it in smaller steps "
                f"(conditional deletes, transactions)")))
        frontier = {}
        for record in found:
            _may_cascade(req, record.type)
            seen.setdefault(record.type, set()).add(record.id)
            frontier.setdefault(record.type, set()).add(record.id)
            more.append(Version(record.type, record.id, record.version, record.last_updated, False, record.json))
    return more


def _may_cascade(req: FhirRequest, type_: str) -> None:
    scopes = req.identity.scopes if req.identity is not None else None
    if scopes is None or scopes.everything:
        return
    if any(s.context == "system" and not s.criteria and s.covers(type_, "d") for s in scopes.granted):
        return
    raise FhirError(403, Issue("error", "forbidden", (
        f"{CASCADE}=delete would delete {type_} resources: that needs an administrator's token with system-level "
        f"delete on {type_} (system/{type_}.d or system/*.d); the access token has {scopes.text or 'none'}")))


def audit_cascade(server: FhirServer, req: FhirRequest, deleted: list[Version], written: list[Version]) -> None:
    """Each resource a cascade deleted recorded in the audit trail like a delete of its own."""
    versions = {v.key: v for v in written}
    for before in deleted:
        after = versions.get(before.key)
        if after is None:
            continue
        one = dataclasses.replace(req, type=before.type, id=before.id, params=[], body=None, shape="instance",
                                  url=f"{before.type}/{before.id}", reaches={})
        response = FhirResponse(200, touched=[before.json] if before.json else [],
                                etag=f'W/"{after.version}"')
        server.audit.record(access(one, "delete", 200, response))
