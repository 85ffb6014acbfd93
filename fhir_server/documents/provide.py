"""The document rules of one unit of work (registered by the server's wiring): a provide
bundle's shape, every written DocumentReference's content, then the relations that change
other documents' status, whose writes commit with the unit. (That a document's patient exists
is referential integrity's check, or the provide bundle's.)"""

from __future__ import annotations

from typing import Any

from fhir_server.documents import attachments, relations, submission
from fhir_server.errors import Issue
from fhir_server.interactions.rules import WriteRefused
from fhir_server.interactions.unit_of_work import UnitOfWork
from fhir_server.storage.store import Write

TYPES = frozenset({"DocumentReference", "List"})


def register(rules) -> None:
    rules.register_unit(TYPES, check)


def check(server, req, writes: list[Write], session: Any) -> list[Write]:
    unit = UnitOfWork(server, req, session, writes)
    submission.check(unit)
    for write, doc in unit.written("DocumentReference"):
        source = f"DocumentReference/{write.id}"
        previous = unit.previous(write)
        if previous is None or previous.get("content") != doc.get("content"):
            _content(unit, source, doc)
    return relations.follow(unit)


def _content(unit: UnitOfWork, source: str, doc: dict[str, Any]) -> None:
    def binary(url: str) -> Any:
        key = unit.key(url)
        if key is None or not key.startswith("Binary/"):
            return attachments.NOT_LOCAL
        return unit.resource(key)

    found: list[Issue] = []
    for i, content in enumerate(doc.get("content") or ()):
        attachment = content.get("attachment") if isinstance(content, dict) else None
        if isinstance(attachment, dict):
            found += attachments.issues(attachment, f"DocumentReference.content[{i}].attachment", binary)
    if found:
        raise WriteRefused(source, 422, found)
