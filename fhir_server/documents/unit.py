"""One unit of work as the document rules see it: the resources it writes (parsed once), what
they replace, and the stored resources they name, read inside the unit's database transaction."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fhir_server import jsonio
from fhir_server.interactions.integrity import local_bases, parse_local
from fhir_server.storage.store import Write

if TYPE_CHECKING:
    from fhir_server.interactions.request import FhirRequest
    from fhir_server.server import FhirServer


@dataclass
class Unit:
    server: FhirServer
    req: FhirRequest
    session: Any
    writes: list[Write]
    _parsed: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    _stored: dict[str, dict[str, Any] | None] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.bases = local_bases(self.server, self.req)
        self.by_key = {f"{w.type}/{w.id}": w for w in self.writes}

    def written(self, type_: str) -> list[tuple[Write, dict[str, Any]]]:
        """The resources of `type_` this unit creates or changes, with their new JSON."""
        return [(w, self.staged(f"{w.type}/{w.id}")) for w in self.writes if w.type == type_ and w.json is not None]

    def staged(self, key: str) -> dict[str, Any] | None:
        """What this unit writes to `key` (None: a deletion), parsed when first asked for."""
        if key not in self._parsed:
            json = self.by_key[key].json
            self._parsed[key] = jsonio.loads(json) if json is not None else None
        return self._parsed[key]

    def key(self, reference: Any) -> str | None:
        """`Type/id` of a local literal reference (relative, or absolute on this server)."""
        ref = reference.get("reference") if isinstance(reference, dict) else reference
        if not isinstance(ref, str):
            return None
        found = parse_local(ref, self.bases, self.server.definitions.is_resource_type)
        return f"{found[0]}/{found[1]}" if found else None

    def resource(self, key: str) -> dict[str, Any] | None:
        """The resource as it will be once the unit commits: staged, else stored (None: absent)."""
        return self.staged(key) if key in self.by_key else self.stored(key)

    def stored(self, key: str) -> dict[str, Any] | None:
        """The current stored version (before this unit), whoever may see it."""
        if key not in self._stored:
            type_, id_ = key.split("/", 1)
            version = self.server.store.read_in(self.session, type_, id_)
            self._stored[key] = jsonio.loads(version.json) if version and version.json and not version.deleted \
                else None
        return self._stored[key]

    def previous(self, write: Write) -> dict[str, Any] | None:
        """What `write` replaces (None for a create)."""
        return None if write.expected is None else self.stored(f"{write.type}/{write.id}")
