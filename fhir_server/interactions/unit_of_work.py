"""One unit of work as the unit rules (`rules.py` `register_unit`) see it: its staged writes,
parsed once; what they replace; the stored resources they name, read inside the unit's database
transaction, either whoever may see them (the server's own bookkeeping) or within the request's
reach (a resource the caller may not see is absent); and the writes a rule adds or amends.

The domains build one per rule run (`UnitOfWork(server, req, session, writes)`) and keep only
what is theirs beside it (the messages of a unit and the patients they name: coordination's
`message_unit.py`)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fhir_server import jsonio
from fhir_server.interactions.access import check_writes, current_for_write, reach, sees
from fhir_server.interactions.integrity import local_bases, parse_local
from fhir_server.interactions.request import FhirRequest
from fhir_server.interactions.resource import new_version
from fhir_server.interactions.update import next_version
from fhir_server.storage.store import Version, Write, now

if TYPE_CHECKING:
    from fhir_server.server import FhirServer


@dataclass
class UnitOfWork:
    server: FhirServer
    req: FhirRequest
    session: Any
    writes: list[Write]
    _parsed: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    _stored: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    _visible: dict[tuple[str, str], dict[str, Any] | None] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.bases = local_bases(self.server, self.req)
        self.by_key = {f"{w.type}/{w.id}": w for w in self.writes}

    # -- what the unit writes ----------------------------------------------------------------------

    def written(self, type_: str) -> list[tuple[Write, dict[str, Any]]]:
        """The resources of `type_` this unit creates or changes, with their new JSON."""
        return [(w, self.staged(f"{w.type}/{w.id}")) for w in self.writes if w.type == type_ and w.json is not None]

    def of_type(self, type_: str) -> list[Write]:
        """Every write of `type_`, deletions included."""
        return [w for w in self.writes if w.type == type_]

    def staged(self, key: str) -> dict[str, Any] | None:
        """What this unit writes to `key` (None: a deletion), parsed when first asked for."""
        if key not in self._parsed:
            json = self.by_key[key].json
            self._parsed[key] = jsonio.loads(json) if json is not None else None
        return self._parsed[key]

    def previous(self, write: Write) -> dict[str, Any] | None:
        """What `write` replaces (None for a create)."""
        return None if write.expected is None else self.stored(f"{write.type}/{write.id}")

    # -- what it names, whoever may see it ---------------------------------------------------------

    def key(self, reference: Any) -> str | None:
        """`Type/id` of a local literal reference (relative, or absolute on this server), given as
        a Reference or its `reference` string."""
        ref = reference.get("reference") if isinstance(reference, dict) else reference
        if not isinstance(ref, str):
            return None
        found = parse_local(ref, self.bases, self.server.definitions.is_resource_type)
        return f"{found[0]}/{found[1]}" if found else None

    def stored(self, key: str) -> dict[str, Any] | None:
        """The current stored version (before this unit), whoever may see it (None: absent or
        deleted)."""
        if key not in self._stored:
            type_, id_ = key.split("/", 1)
            version = self.server.store.read_in(self.session, type_, id_)
            self._stored[key] = jsonio.loads(version.json) if version and version.json and not version.deleted \
                else None
        return self._stored[key]

    def resource(self, key: str) -> dict[str, Any] | None:
        """The resource as it will be once the unit commits, whoever may see it: staged, else
        stored (None: absent or deleted)."""
        return self.staged(key) if key in self.by_key else self.stored(key)

    # -- what it names, within the request's reach -------------------------------------------------

    def visible(self, key: str | None, letter: str = "r") -> dict[str, Any] | None:
        """The resource as it will be once the unit commits, if the request may see it with
        `letter` (`r` to read, `u` to change): staged (the server checks the unit's own writes
        for reach), else the stored version within reach (None: absent, deleted, or out of the
        request's reach — the same answer)."""
        if key is None:
            return None
        if key in self.by_key:
            return self.staged(key)
        if (key, letter) not in self._visible:
            type_, id_ = key.split("/", 1)
            found = current_for_write(self.server, self.req, self.session, type_, id_, letter)
            ok = found is not None and not found.deleted and found.json is not None
            self._visible[key, letter] = jsonio.loads(found.json) if ok else None
        return self._visible[key, letter]

    def seen(self, version: Version) -> bool:
        """Whether the request may read a version a rule found on its own (to name it or not)."""
        return sees(self.server, reach(self.server, self.req, "r"), version)

    # -- what a rule adds or amends ----------------------------------------------------------------

    def create(self, resource: dict[str, Any]) -> Write:
        """A new resource the server writes as the request's consequence (it checks and audits
        what a rule adds)."""
        self.server.prepare_type(resource["resourceType"])
        return new_version(self.server, resource, str(uuid.uuid4()), 1, None, now(), "POST", self.req.base_url)

    def replace(self, key: str, resource: dict[str, Any]) -> Write:
        """`resource` as the next version of the stored `key`, a write to add to the unit (403 if
        the caller may not change it)."""
        type_, id_ = key.split("/", 1)
        put = FhirRequest("PUT", self.req.base_url, type_, id_, identity=self.req.identity, reaches=self.req.reaches)
        return next_version(self.server, put, self.session, id_, resource, None)

    def rewrite(self, key: str, resource: dict[str, Any]) -> Write | None:
        """`resource` as the next state of `key`: a write the unit already stages takes it in its
        place (same version, checked for reach again; None returned), else `replace` (a new
        version to add to the unit)."""
        write = self.by_key.get(key)
        if write is None:
            return self.replace(key, resource)
        replaced = new_version(self.server, resource, write.id, write.version, write.expected, write.last_updated,
                               write.method, self.req.base_url)
        write.json, write.index = replaced.json, replaced.index
        self._parsed.pop(key, None)
        check_writes(self.server, self.req, [write], self.session)  # still within reach as rewritten
        return None
