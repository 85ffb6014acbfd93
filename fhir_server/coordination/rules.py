"""Business rules of the coordination domain, checked on every write of a new version."""

from __future__ import annotations

from fhir_server.coordination import agenda, identity_vigilance, messaging, rcp, task_states


def register(rules) -> None:
    """Add the domain's rules to a server's `WriteRules`."""
    rules.register("Task", task_states.check)
    messaging.register(rules)
    agenda.register(rules)
    identity_vigilance.register(rules)
    rcp.register(rules)
