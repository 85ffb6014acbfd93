"""One unit of work as the messaging rules see it: the Communications it writes (parsed once),
what they replace, and the resources they name, read inside the unit's database transaction
and within the request's reach (a message or attachment the caller may not see is absent)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fhir_server import jsonio
from fhir_server.interactions.access import current_for_write
from fhir_server.interactions.integrity import local_bases, parse_local
from fhir_server.search.compartments import linking_params, named
from fhir_server.search.terms import Values
from fhir_server.storage.store import Write

if TYPE_CHECKING:
    from fhir_server.interactions.request import FhirRequest
    from fhir_server.server import FhirServer

TYPE = "Communication"


@dataclass
class MessageUnit:
    server: FhirServer
    req: FhirRequest
    session: Any
    writes: list[Write]
    _json: dict[str, dict[str, Any] | None] = field(default_factory=dict)
    _values: dict[str, Values | None] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.bases = local_bases(self.server, self.req)
        self.by_key = {f"{w.type}/{w.id}": w for w in self.writes}

    def messages(self) -> Iterator[tuple[str, dict[str, Any], dict[str, Any] | None]]:
        """(Communication/id, the new version, the version it replaces or None) per message written."""
        for write in self.writes:
            if write.type == TYPE and write.json is not None:
                key = f"{TYPE}/{write.id}"
                previous = None if write.expected is None else self._stored(key, within_reach=False)
                yield key, jsonio.loads(write.json), previous

    def key(self, reference: Any) -> str | None:
        """`Type/id` of a local literal reference (relative, or absolute on this server)."""
        ref = reference.get("reference") if isinstance(reference, dict) else reference
        if not isinstance(ref, str):
            return None
        found = parse_local(ref, self.bases, self.server.definitions.is_resource_type)
        return f"{found[0]}/{found[1]}" if found else None

    def visible(self, key: str) -> dict[str, Any] | None:
        """The resource as it will be once the unit commits, if the request may see it (None:
        absent, deleted, or out of its reach — the same answer)."""
        if key in self.by_key:
            json = self.by_key[key].json
            return jsonio.loads(json) if json is not None else None
        return self._stored(key, within_reach=True)

    def patients(self, key: str) -> frozenset[str]:
        """The ids of the patients a resource is about: a Patient itself, a Binary those of its
        security context, anything else the patients its search values name."""
        type_, _, id_ = key.partition("/")
        if type_ == "Patient":
            return frozenset({id_})
        if type_ == "Binary":
            context = self.key((self.unrestricted(key) or {}).get("securityContext"))
            return self.patients(context) if context and context != key else frozenset()
        links = linking_params(self.server, "Patient").get(type_, ())
        found = self._index(key)
        return frozenset(named(found, links, "Patient")) if found is not None and links else frozenset()

    def unrestricted(self, key: str) -> dict[str, Any] | None:
        """The resource whoever may see it (what a Binary's security context is about)."""
        if key in self.by_key:
            json = self.by_key[key].json
            return jsonio.loads(json) if json is not None else None
        return self._stored(key, within_reach=False)

    def _stored(self, key: str, *, within_reach: bool) -> dict[str, Any] | None:
        cache = f"{key}?{within_reach}"
        if cache not in self._json:
            type_, _, id_ = key.partition("/")
            if within_reach:
                version = current_for_write(self.server, self.req, self.session, type_, id_, "r")
            else:
                version = self.server.store.read_in(self.session, type_, id_)
            ok = version is not None and not version.deleted and version.json is not None
            self._json[cache] = jsonio.loads(version.json) if ok else None
        return self._json[cache]

    def _index(self, key: str) -> Values | None:
        if key not in self._values:
            type_, _, id_ = key.partition("/")
            write = self.by_key.get(key)
            if write is not None:
                found = Values(id_, write.index.values) if write.index is not None else None
            else:
                version = self.server.store.read_in(self.session, type_, id_, values=True)
                found = Values(id_, version.values or {}) if version is not None and not version.deleted else None
            self._values[key] = found
        return self._values[key]
