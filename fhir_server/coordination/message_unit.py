"""One unit of work as the messaging rules see it: the shared view (`interactions/unit_of_work.py`:
staged writes parsed once, what they replace, the resources they name read within the request's
reach, so a message or attachment the caller may not see is absent), with the Communications
the unit writes and the patients a resource is about."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from fhir_server.interactions.unit_of_work import UnitOfWork
from fhir_server.search.compartments import linking_params, named
from fhir_server.search.terms import Values

TYPE = "Communication"


@dataclass
class MessageUnit(UnitOfWork):
    _values: dict[str, Values | None] = field(default_factory=dict)

    def messages(self) -> Iterator[tuple[str, dict[str, Any], dict[str, Any] | None]]:
        """(Communication/id, the new version, the version it replaces or None) per message written."""
        for write, message in self.written(TYPE):
            yield f"{TYPE}/{write.id}", message, self.previous(write)

    def patients(self, key: str) -> frozenset[str]:
        """The ids of the patients a resource is about: a Patient itself, a Binary those of its
        security context, anything else the patients its search values name."""
        type_, _, id_ = key.partition("/")
        if type_ == "Patient":
            return frozenset({id_})
        if type_ == "Binary":
            context = self.key((self.resource(key) or {}).get("securityContext"))
            return self.patients(context) if context and context != key else frozenset()
        links = linking_params(self.server, "Patient").get(type_, ())
        found = self._index(key)
        return frozenset(named(found, links, "Patient")) if found is not None and links else frozenset()

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
