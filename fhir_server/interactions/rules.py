"""Rules a domain adds to every write (e.g. the coordination guide's Task state machine).

The interactions know only this registry; the server's wiring registers the rules, so the
generic REST layer does not import any domain.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Rule = Callable[[dict[str, Any] | None, dict[str, Any]], None]  # (previous, new) → raise FhirError(422)


class WriteRules:
    def __init__(self) -> None:
        self._by_type: dict[str, list[Rule]] = {}

    def register(self, resource_type: str, rule: Rule) -> None:
        self._by_type.setdefault(resource_type, []).append(rule)

    def applies(self, resource_type: str) -> bool:
        return resource_type in self._by_type

    def check(self, previous: dict[str, Any] | None, resource: dict[str, Any]) -> None:
        """Raise a 422 FhirError when `resource`, replacing `previous`, breaks a rule."""
        for rule in self._by_type.get(resource.get("resourceType"), ()):
            rule(previous, resource)
