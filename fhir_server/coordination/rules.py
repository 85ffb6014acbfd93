"""Business rules of the coordination domain, checked on every write of a new version."""

from __future__ import annotations

from typing import Any

from fhir_server.coordination import task_states

_BY_TYPE = {"Task": (task_states.check,)}


def applies(resource_type: str) -> bool:
    return resource_type in _BY_TYPE


def check(previous: dict[str, Any] | None, resource: dict[str, Any]) -> None:
    """Raise a 422 FhirError when `resource`, replacing `previous`, breaks a domain rule."""
    for rule in _BY_TYPE.get(resource.get("resourceType"), ()):
        rule(previous, resource)
