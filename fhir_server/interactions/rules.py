"""Rules a domain adds to writes, so the generic REST layer imports no domain: the interactions
know only this registry, and the server's wiring registers the rules.

- A *resource rule* sees one resource and the version it replaces (the coordination guide's
  Task state machine): `(previous, new)`, raising a 422.
- A *unit rule* sees every write a unit of work staged (a transaction's entries together, or
  one create or update) inside its database transaction, before the access and integrity
  checks: it may refuse the unit (`WriteRefused`, naming the resource so a transaction names
  its entry) or return more writes that commit with it (document sharing supersedes the
  document a new one replaces). A rule may also amend a write the unit itself stages, keeping
  its version, and check it for reach again (the shared agenda commits `busy` a Slot that a
  transaction creates `free` and books in the same breath).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from fhir_server.errors import FhirError, Issue

if TYPE_CHECKING:
    from fhir_server.interactions.request import FhirRequest
    from fhir_server.storage.store import Write

Rule = Callable[[dict[str, Any] | None, dict[str, Any]], None]  # (previous, new) → raise FhirError(422)
# (server, request, staged writes, session) → the writes to add; raise WriteRefused to refuse
UnitRule = Callable[[Any, "FhirRequest", list["Write"], Any], list["Write"]]


class WriteRefused(FhirError):
    """A unit of work refused because of one of its resources; `source` is that resource's
    Type/id, which a transaction turns into the entry that wrote it."""

    def __init__(self, source: str, status: int, issues: Issue | list[Issue]):
        super().__init__(status, issues)
        self.source = source


class WriteRules:
    def __init__(self) -> None:
        self._by_type: dict[str, list[Rule]] = {}
        self._units: list[tuple[frozenset[str], UnitRule]] = []

    def register(self, resource_type: str, rule: Rule) -> None:
        self._by_type.setdefault(resource_type, []).append(rule)

    def register_unit(self, resource_types: frozenset[str], rule: UnitRule) -> None:
        """`rule` runs on the units of work that write one of `resource_types`."""
        self._units.append((resource_types, rule))

    def applies(self, resource_type: str) -> bool:
        return resource_type in self._by_type

    def check(self, previous: dict[str, Any] | None, resource: dict[str, Any]) -> None:
        """Raise a 422 FhirError when `resource`, replacing `previous`, breaks a rule."""
        for rule in self._by_type.get(resource.get("resourceType"), ()):
            rule(previous, resource)

    def check_unit(self, server: Any, req: FhirRequest, writes: list[Write], session: Any) -> list[Write]:
        """The writes the unit rules add to a unit of work (raising WriteRefused to refuse it)."""
        written = {w.type for w in writes}
        added: list[Write] = []
        for types, rule in self._units:
            if written & types:
                added.extend(rule(server, req, writes, session))
        return added
