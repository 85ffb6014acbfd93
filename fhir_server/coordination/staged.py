"""One unit of work as the coordination unit rules see it: the resources it writes (parsed once),
what they replace, the stored resources they name (read inside the unit's database transaction),
and the rewriting of a resource the unit already writes (a Slot a transaction creates `free`
and books in the same breath commits `busy`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fhir_server import jsonio
from fhir_server.interactions.access import check_writes, reach, sees
from fhir_server.interactions.integrity import local_bases, parse_local
from fhir_server.interactions.request import FhirRequest
from fhir_server.interactions.resource import new_version
from fhir_server.interactions.update import next_version
from fhir_server.storage.store import Version, Write

if TYPE_CHECKING:
    from fhir_server.server import FhirServer


@dataclass
class Staged:
    server: FhirServer
    req: FhirRequest
    session: Any
    writes: list[Write]
    _parsed: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    _stored: dict[str, dict[str, Any] | None] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.bases = local_bases(self.server, self.req)
        self.by_key = {f"{w.type}/{w.id}": w for w in self.writes}

    def of_type(self, type_: str) -> list[Write]:
        """Every write of `type_`, deletions included."""
        return [w for w in self.writes if w.type == type_]

    def staged(self, key: str) -> dict[str, Any] | None:
        """What this unit writes to `key` (None: a deletion)."""
        if key not in self._parsed:
            json = self.by_key[key].json
            self._parsed[key] = jsonio.loads(json) if json is not None else None
        return self._parsed[key]

    def stored(self, key: str) -> dict[str, Any] | None:
        """The current stored version (before this unit), whoever may see it (None: absent)."""
        if key not in self._stored:
            type_, id_ = key.split("/", 1)
            version = self.server.store.read_in(self.session, type_, id_)
            self._stored[key] = jsonio.loads(version.json) if version and version.json and not version.deleted \
                else None
        return self._stored[key]

    def resource(self, key: str) -> dict[str, Any] | None:
        """The resource as it will be once the unit commits: staged, else stored."""
        return self.staged(key) if key in self.by_key else self.stored(key)

    def previous(self, write: Write) -> dict[str, Any] | None:
        """What `write` replaces (None for a create)."""
        return None if write.expected is None else self.stored(f"{write.type}/{write.id}")

    def key(self, reference: Any) -> str | None:
        """`Type/id` of a local literal reference (relative, or absolute on this server)."""
        ref = reference.get("reference") if isinstance(reference, dict) else reference
        if not isinstance(ref, str):
            return None
        found = parse_local(ref, self.bases, self.server.definitions.is_resource_type)
        return f"{found[0]}/{found[1]}" if found else None

    def visible(self, key: str, letter: str) -> bool:
        """Whether the request may see the stored `key` for `letter` (a hidden one is absent)."""
        type_, id_ = key.split("/", 1)
        limit = reach(self.server, self.req, letter)
        if limit.term(type_) is None:
            return True
        current = self.server.store.read_in(self.session, type_, id_, values=True)
        return current is not None and not current.deleted and sees(self.server, limit, current)

    def seen(self, version: Version) -> bool:
        """Whether the request may read a version a rule found on its own (to name it or not)."""
        return sees(self.server, reach(self.server, self.req, "r"), version)

    def rewrite(self, key: str, resource: dict[str, Any]) -> Write | None:
        """`resource` as the next state of `key`: a write the unit already stages takes it in its
        place (same version, checked for reach again; None returned), else a new version to add
        to the unit (the server checks and audits those)."""
        type_, id_ = key.split("/", 1)
        write = self.by_key.get(key)
        if write is not None:
            replaced = new_version(self.server, resource, id_, write.version, write.expected, write.last_updated,
                                   write.method, self.req.base_url)
            write.json, write.index = replaced.json, replaced.index
            self._parsed.pop(key, None)
            check_writes(self.server, self.req, [write], self.session)  # still within reach as rewritten
            return None
        put = FhirRequest("PUT", self.req.base_url, type_, id_, identity=self.req.identity, reaches=self.req.reaches)
        return next_version(self.server, put, self.session, id_, resource, None)
