"""The shared agenda (ANS GAP on FHIR R4 Schedule, Slot, Appointment): an Appointment that holds
its Slots makes them busy in the same unit of work, and a Slot is held by one Appointment.

Which statuses hold (FHIR R4 Appointment.status): `pending` (some participants have not yet
accepted: the Slot is `busy-tentative`), `booked`, `arrived`, `checked-in` and `fulfilled` (the
Slot is `busy`; a fulfilled appointment keeps the time it used). `proposed` and `waitlist` are
requests — GAP's "demande de rendez-vous" names the wished Slot while proposed — and hold
nothing; `cancelled`, `noshow` and `entered-in-error` release their Slots, which become `free`
again unless another Appointment holds them. A Slot the Appointment stops naming is released
the same way, and so is every Slot of a deleted Appointment.

Refused, naming the entry in a transaction: booking a Slot another active Appointment holds
(409 naming it, when the caller may see it), a Slot that is `busy-unavailable`,
`entered-in-error` or `busy` without any Appointment holding it (409), a Slot that is not
stored or out of the request's reach (422, as if absent), and a Slot written `free` (or any
status but busy) while an Appointment holds it (409: cancel or move the appointment first).

Racing bookings of one Slot both write it, so the later one conflicts and runs again on fresh
data, where it finds the holder; each Slot decided on is also a guard key of the unit, so units
that decide on the same Slot without writing it serialise too. The Slots' own rules (times,
overlaps on a Schedule) are in `slots.py`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fhir_server.coordination import slots
from fhir_server.errors import Issue
from fhir_server.interactions import conditional, integrity
from fhir_server.interactions.rules import WriteRefused
from fhir_server.interactions.unit_of_work import UnitOfWork
from fhir_server.search.reach import EVERYTHING
from fhir_server.storage.store import Write

TYPES = frozenset({"Appointment", "Slot"})
HOLDING = {"pending": "busy-tentative", "booked": "busy", "arrived": "busy", "checked-in": "busy", "fulfilled": "busy"}
BUSY = frozenset({"busy", "busy-tentative"})
UNBOOKABLE = frozenset({"busy-unavailable", "entered-in-error"})


@dataclass(frozen=True)
class Holder:
    key: str  # Appointment/id
    status: str
    newly: bool  # this unit makes it hold the Slot (it did not before)
    where: str  # Appointment.slot[i], or "" for a stored holder the unit does not write
    named: str  # how a message names it: its key, or "another appointment" when out of the caller's reach


def register(rules) -> None:
    rules.register_unit(TYPES, check)


def check(server, req, writes: list[Write], session: Any) -> list[Write]:
    unit = UnitOfWork(server, req, session, writes)
    slots.check(unit)
    added = []
    for slot_key, released in _slots_touched(unit).items():
        write = _settle(unit, slot_key, released)
        if write is not None:
            added.append(write)
    return added


def _named_slots(unit: UnitOfWork, appointment: dict[str, Any] | None) -> dict[str, str]:
    """The local Slots an Appointment names → where (`Appointment.slot[i]`)."""
    out: dict[str, str] = {}
    for i, ref in enumerate((appointment or {}).get("slot") or ()):
        key = unit.key(ref)
        if key is not None and key.startswith("Slot/"):
            out.setdefault(key, f"Appointment.slot[{i}]")
    return out


def _holds(appointment: dict[str, Any] | None) -> bool:
    return appointment is not None and appointment.get("status") in HOLDING


def _slots_touched(unit: UnitOfWork) -> dict[str, bool]:
    """Every Slot this unit's Appointments name (now or before), or whose status it changes
    itself (a created one: from free) → whether an Appointment of the unit releases it (held it
    before, not now)."""
    touched: dict[str, bool] = {}
    for write in unit.of_type("Appointment"):
        now = unit.staged(f"Appointment/{write.id}")
        before = unit.previous(write)
        held_now = _named_slots(unit, now) if _holds(now) else {}
        for key in _named_slots(unit, now):
            touched.setdefault(key, False)
        for key in _named_slots(unit, before) if _holds(before) else {}:
            touched[key] = touched.get(key, False) or key not in held_now
    for write in unit.of_type("Slot"):
        key = f"Slot/{write.id}"
        before = (unit.previous(write) or {}).get("status", "free")
        if write.json is not None and before != unit.staged(key).get("status"):
            touched.setdefault(key, False)  # a status changed by hand: is an appointment holding it?
    return touched


def _settle(unit: UnitOfWork, slot_key: str, released: bool) -> Write | None:
    """The Slot's next state from the Appointments that hold it once the unit commits (a write,
    or None when it stays as it is); WriteRefused when they cannot all have it."""
    unit.server.store.guard(unit.session, f"{slot_key}:appointments")
    holders = _holders(unit, slot_key)
    if len(holders) > 1:
        _refuse_double_booking(slot_key, holders)
    written = slot_key in unit.by_key
    slot = unit.resource(slot_key)
    if not holders:
        free = released and not written and slot is not None and slot.get("status") in BUSY
        return unit.rewrite(slot_key, {**slot, "status": "free"}) if free else None
    holder = holders[0]
    if slot is None or (not written and unit.visible(slot_key, "u") is None):
        if not holder.newly or (slot is None and not integrity.enabled(unit.server)):
            return None  # gone meanwhile, or loaded before its Slot with integrity off: nothing to mark
        raise WriteRefused(holder.key, 422, Issue("error", "not-found", (
            f"{holder.where} names {slot_key}, which is not a stored Slot"), [holder.where]))
    status, wanted = slot.get("status"), HOLDING[holder.status]
    if written and not holder.newly and status not in BUSY:
        raise WriteRefused(slot_key, 409, Issue("error", "conflict", (
            f"{slot_key} is held by {holder.named} ({holder.status}): it stays busy until that appointment is "
            f"cancelled or moved to another slot"), ["Slot.status"]))
    if holder.newly and (status in UNBOOKABLE or (status in BUSY and not written and not released)):
        why = (f"{status} although no appointment on this server holds it (booked elsewhere, or loaded busy: "
               f"load it free, or in the transaction of the appointment that holds it)") if status in BUSY else status
        raise WriteRefused(holder.key, 409, Issue("error", "conflict", (
            f"{holder.where} names {slot_key}, which is {why}: it cannot be booked; choose a free slot"),
            [holder.where]))
    if status == wanted or status in UNBOOKABLE:
        return None  # as it should be, or held before and blocked since: left as its owner set it
    return unit.rewrite(slot_key, {**slot, "status": wanted})


def _refuse_double_booking(slot_key: str, holders: list[Holder]) -> None:
    source = next((h for h in holders if h.newly), holders[-1])
    other = next(h for h in holders if h is not source)
    where = source.where or "Appointment.slot"
    raise WriteRefused(source.key, 409, Issue("error", "conflict", (
        f"{where} names {slot_key}, which {other.named} already holds ({other.status}): a slot is booked by one "
        f"appointment; choose another slot, or cancel that appointment first"), [where]))


def _holders(unit: UnitOfWork, slot_key: str) -> list[Holder]:
    """The Appointments that hold the Slot once the unit commits: stored ones the unit leaves
    alone (all of them, seen by the caller or not), then the unit's own."""
    found: list[Holder] = []
    criteria = [("slot", slot_key), ("status", ",".join(HOLDING))]
    for version in conditional.matches(unit.server, "Appointment", criteria, unit.session, EVERYTHING):
        key = f"Appointment/{version.id}"
        if key not in unit.by_key:
            stored = unit.stored(key) or {}
            found.append(Holder(key, stored.get("status", ""), False, "",
                                key if unit.seen(version) else "another appointment"))
    for write in unit.of_type("Appointment"):
        key = f"Appointment/{write.id}"
        now, before = unit.staged(key), unit.previous(write)
        where = _named_slots(unit, now).get(slot_key) if _holds(now) else None
        if where is not None:
            newly = not (_holds(before) and slot_key in _named_slots(unit, before))
            found.append(Holder(key, now["status"], newly, where, key))
    return found
