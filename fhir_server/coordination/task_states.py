"""The Task state machine (FHIR R4 Task, "Task state machine"): which status may follow which.

A coordination task moves forward — requested, then received/accepted (or straight to ready),
in progress, possibly on hold, and ends completed, failed, rejected or cancelled. Ended tasks
stay ended; `entered-in-error` can correct any status. A write that jumps elsewhere (a completed
task back in progress, a draft already completed) is refused with the transitions allowed.
"""

from __future__ import annotations

from typing import Any

from fhir_server.errors import FhirError, Issue

ALLOWED: dict[str, frozenset[str]] = {
    "draft": frozenset({"requested", "ready", "cancelled"}),
    "requested": frozenset({"received", "accepted", "rejected", "ready", "in-progress", "cancelled"}),
    "received": frozenset({"accepted", "rejected", "cancelled"}),
    "accepted": frozenset({"ready", "in-progress", "cancelled"}),
    "ready": frozenset({"in-progress", "cancelled"}),
    "in-progress": frozenset({"on-hold", "completed", "failed", "cancelled"}),
    "on-hold": frozenset({"in-progress", "cancelled"}),
    # ended: nothing follows (but entered-in-error, below)
    "rejected": frozenset(), "cancelled": frozenset(), "completed": frozenset(), "failed": frozenset(),
    "entered-in-error": frozenset(),
}


def check(previous: dict[str, Any] | None, resource: dict[str, Any]) -> None:
    """422 if `resource` (the next version of a Task) takes a status its previous one cannot reach."""
    if previous is None:
        return
    before, after = previous.get("status"), resource.get("status")
    if before == after or after == "entered-in-error" or before not in ALLOWED:
        return
    if after not in ALLOWED[before]:
        allowed = ", ".join(sorted(ALLOWED[before])) or "none (the task has ended)"
        raise FhirError(422, Issue(
            "error", "business-rule",
            f"Task status cannot go from {before!r} to {after!r}; from {before!r} it may go to: {allowed} "
            f"(or entered-in-error)", ["Task.status"]))
