"""A Slot's own rules on a shared agenda: it ends after it starts, and the Slots of one Schedule
do not overlap (one that is `entered-in-error` no longer counts). A Slot ending exactly when
another starts is not an overlap.

Two units creating overlapping Slots on one Schedule write no common document, so a unit that
changes a Schedule's Slots touches the guard `Schedule/<id>:slots`: the later unit conflicts
there and runs again, on data where the other Slot is stored. The Slots of a Schedule are read
once per unit (those around the times it writes), whatever the caller may see — the agenda is
one — and compared in one sweep by start, so a transaction loading a month of slots costs
n log n, not n²; a Slot the caller may not read is named "another slot". Overlaps among stored
Slots alone (data loaded before this rule) do not refuse a unit that does not touch them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fhir_server.errors import Issue
from fhir_server.interactions import conditional
from fhir_server.interactions.rules import WriteRefused
from fhir_server.interactions.unit_of_work import UnitOfWork
from fhir_server.search.reach import EVERYTHING

TIMES = ("start", "end", "schedule", "status")


@dataclass(frozen=True)
class Span:
    start: datetime
    end: datetime
    key: str  # Slot/id
    named: str  # how a message names it
    changed: bool  # written by this unit in a way that may overlap


def check(unit: UnitOfWork) -> None:
    """422 for a Slot of the unit that ends before it starts or overlaps another of its Schedule."""
    by_schedule: dict[str, list[Span]] = {}
    changed: set[str] = set()
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
        if schedule is None or slot.get("status") == "entered-in-error":
            continue
        moved = any((unit.previous(write) or {}).get(f) != slot.get(f) for f in TIMES)
        by_schedule.setdefault(schedule, []).append(Span(start, end, key, key, moved))
        if moved:
            changed.add(schedule)
    for schedule in sorted(changed):
        _no_overlap(unit, schedule, by_schedule[schedule])


def _no_overlap(unit: UnitOfWork, schedule: str, staged: list[Span]) -> None:
    unit.server.store.guard(unit.session, f"{schedule}:slots")
    moved = [s for s in staged if s.changed]
    low, high = min(s.start for s in moved), max(s.end for s in moved)
    spans = staged + _stored(unit, schedule, low, high)
    widest_any: Span | None = None  # of the spans seen so far, the one ending last
    widest_changed: Span | None = None  # the same among those this unit changes
    for span in sorted(spans, key=lambda s: (s.start, s.end, s.key)):
        other = widest_any if span.changed else widest_changed
        if other is not None and span.start < other.end:
            mine, theirs = (span, other) if span.changed else (other, span)
            raise WriteRefused(mine.key, 422, Issue("error", "business-rule", (
                f"Slot {_text(mine)} overlaps {theirs.named} ({_text(theirs)}) on {schedule}: the slots of one "
                f"schedule do not overlap; shorten one, or mark the other entered-in-error"),
                ["Slot.start", "Slot.end"]))
        if widest_any is None or span.end > widest_any.end:
            widest_any = span
        if span.changed and (widest_changed is None or span.end > widest_changed.end):
            widest_changed = span


def _stored(unit: UnitOfWork, schedule: str, low: datetime, high: datetime) -> list[Span]:
    """The stored Slots of the Schedule around [low, high) that the unit leaves alone."""
    criteria = [("schedule", schedule), ("start", f"lt{high.isoformat()}"), ("end", f"gt{low.isoformat()}"),
                ("status:not", "entered-in-error")]
    out = []
    for version in conditional.matches(unit.server, "Slot", criteria, unit.session, EVERYTHING):
        key = f"Slot/{version.id}"
        if key not in unit.by_key:
            slot = unit.stored(key) or {}
            start, end = _instant(slot.get("start")), _instant(slot.get("end"))
            if slot.get("status") != "entered-in-error" and start is not None and end is not None and end > start:
                out.append(Span(start, end, key, key if unit.seen(version) else "another slot", False))
    return out


def _instant(value: Any) -> datetime | None:
    """A Slot instant (always with its time zone in R4)."""
    try:
        parsed = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None
    return parsed if parsed is not None and parsed.tzinfo is not None else None


def _text(span: Span) -> str:
    return f"{span.start.isoformat()} – {span.end.isoformat()}"
