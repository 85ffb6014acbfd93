"""The secure messaging rules of one unit of work (registered by coordination/rules.py): every
Communication written is checked for its read receipts (read_receipts.py), its place in a
thread (message_threads.py) and its attachments (message_attachments.py), inside the unit's
database transaction, so that two recipients marking a message read at once both keep their
receipt (the later unit runs again on the version the first committed)."""

from __future__ import annotations

from typing import Any

from fhir_server.coordination import message_attachments, message_threads, read_receipts
from fhir_server.coordination.message_unit import TYPE, MessageUnit
from fhir_server.storage.store import Write

TYPES = frozenset({TYPE})


def register(rules) -> None:
    rules.register_unit(TYPES, check)


def check(server, req, writes: list[Write], session: Any) -> list[Write]:
    unit = MessageUnit(server, req, session, writes)
    for source, message, previous in unit.messages():
        read_receipts.check(unit, source, message, previous)
        message_threads.check(unit, source, message, previous)
        message_attachments.check(unit, source, message, previous)
    return []
