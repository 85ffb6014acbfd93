"""A Slot's own rules on a shared agenda: it ends after it starts, and the Slots of one Schedule
do not overlap (one that is `entered-in-error` no longer counts). A Slot ending exactly when
another starts is not an overlap.

Two units creating overlapping Slots on one Schedule write no common document, so each Slot
checked touches the guard `Schedule/<id>:slots` inside its unit: the later unit conflicts there
and runs again, on data where the other Slot is stored. The overlap search runs on every Slot of
the Schedule, the caller's reach aside (the agenda is one whatever the caller sees); a Slot the
caller may not read is named "another slot"."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fhir_server.coordination.staged import Staged
from fhir_server.errors import Issue
from fhir_server.interactions import conditional
from fhir_server.interactions.rules import WriteRefused
from fhir_server.search.reach import EVERYTHING

TIMES = ("start", "end", "schedule", "status")


def check(unit: Staged) -> None:
    """422 for a Slot of the unit that ends before it starts or overlaps another of its Schedule."""
    mine: dict[str, tuple[str, datetime, datetime]] = {}  # slot key → (schedule, start, end), for overlaps
    for write in unit.of_type("Slot"):
        key = f"Slot/{write.id}"
        slot = unit.staged(key)
        if slot is None:
            continue
        start, end = _instant(slot.get("start")), _instant(slot.get("end"))
        if start is None or end is None:
            continue  # required by R4: structural validation has said so
        if end <= start:
            raise WriteRefused(key, 422, Issue("error", "business-rule", (
                f"Slot.end ({slot['end']}) is not after Slot.start ({slot['start']}): a slot ends after it starts"),
                ["Slot.end"]))
        schedule = unit.key(slot.get("schedule"))
        previous = unit.previous(write) or {}
        if schedule is None or slot.get("status") == "entered-in-error" or \
                all(previous.get(f) == slot.get(f) for f in TIMES):
            continue  # nothing to compare with, or no change that could make an overlap
        mine[key] = (schedule, start, end)
    for key, (schedule, start, end) in mine.items():
        _no_overlap(unit, key, schedule, start, end)


def _no_overlap(unit: Staged, key: str, schedule: str, start: datetime, end: datetime) -> None:
    unit.server.store.guard(unit.session, f"{schedule}:slots")
    for other_key, named in _others(unit, schedule, start, end):
        if other_key != key:
            other = unit.resource(other_key) or {}
            raise WriteRefused(key, 422, Issue("error", "business-rule", (
                f"Slot {unit.staged(key)['start']} – {unit.staged(key)['end']} overlaps {named} "
                f"({other.get('start')} – {other.get('end')}) on {schedule}: the slots of one schedule do not "
                f"overlap; shorten one, or mark the other entered-in-error"), ["Slot.start", "Slot.end"]))


def _others(unit: Staged, schedule: str, start: datetime, end: datetime) -> list[tuple[str, str]]:
    """The Slots of the Schedule that will overlap [start, end) once the unit commits → how to
    name each: stored ones the unit leaves alone, then the unit's own."""
    found: list[tuple[str, str]] = []
    criteria = [("schedule", schedule), ("start", f"lt{_text(end)}"), ("end", f"gt{_text(start)}"),
                ("status:not", "entered-in-error")]
    for version in conditional.matches(unit.server, "Slot", criteria, unit.session, EVERYTHING):
        key = f"Slot/{version.id}"
        if key not in unit.by_key and _overlaps(unit.stored(key), start, end):
            found.append((key, key if unit.seen(version) else "another slot"))
    for write in unit.of_type("Slot"):
        key = f"Slot/{write.id}"
        slot = unit.staged(key)
        if slot is not None and unit.key(slot.get("schedule")) == schedule and _overlaps(slot, start, end):
            found.append((key, key))
    return found


def _overlaps(slot: dict[str, Any] | None, start: datetime, end: datetime) -> bool:
    """Exactly, on the instants (the search's ranges are a superset)."""
    if slot is None or slot.get("status") == "entered-in-error":
        return False
    other_start, other_end = _instant(slot.get("start")), _instant(slot.get("end"))
    return other_start is not None and other_end is not None and other_start < end and other_end > start


def _instant(value: Any) -> datetime | None:
    """A Slot instant (always with its time zone in R4)."""
    try:
        parsed = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None
    return parsed if parsed is not None and parsed.tzinfo is not None else None


def _text(instant: datetime) -> str:
    return instant.isoformat()
