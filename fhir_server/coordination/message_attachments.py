"""Attachments of a message: a `payload.contentReference`, or a `payload.contentAttachment.url`
naming a resource of this server (a DocumentReference, a Binary), must name one that exists and
that the caller may see (else 422 not-found, hidden as absent), about no patient but the
message's: a DocumentReference by its subject, a Binary by its security context. Who among the
recipients may then read it is the access rule's answer (interactions/care_team.py), not this
module's: a recipient outside the patient's care team gets the message, not the attachment."""

from __future__ import annotations

from typing import Any

from fhir_server.coordination.message_unit import MessageUnit
from fhir_server.errors import Issue
from fhir_server.interactions import integrity
from fhir_server.interactions.rules import WriteRefused


def check(unit: MessageUnit, source: str, message: dict[str, Any], previous: dict[str, Any] | None) -> None:
    if previous is not None and all(previous.get(k) == message.get(k) for k in ("payload", "subject")):
        return  # checked when it was written
    subject = unit.key(message.get("subject"))
    patients = frozenset({subject.split("/", 1)[1]}) if subject and subject.startswith("Patient/") else frozenset()
    for j, payload in enumerate(message.get("payload") or ()):
        if not isinstance(payload, dict):
            continue
        if isinstance(payload.get("contentReference"), dict):
            _attachment(unit, source, f"Communication.payload[{j}].contentReference",
                        payload["contentReference"].get("reference"), patients)
        attachment = payload.get("contentAttachment")
        if isinstance(attachment, dict) and isinstance(attachment.get("url"), str):
            _attachment(unit, source, f"Communication.payload[{j}].contentAttachment.url", attachment["url"], patients)


def _attachment(unit: MessageUnit, source: str, where: str, reference: Any, patients: frozenset[str]) -> None:
    key = unit.key(reference)
    if key is None:
        return  # elsewhere (another server, a logical reference): nothing here to check
    if unit.visible(key) is None:
        if not integrity.enabled(unit.server):
            return
        raise WriteRefused(source, 422, Issue("error", "not-found", (
            f"{where} names {reference!r}, which is not stored on this server: attach a DocumentReference or "
            f"Binary that exists"), [where]))
    about = unit.patients(key)
    if not about <= patients:
        others = ", ".join(f"Patient/{p}" for p in sorted(about - patients))
        mine = ", ".join(f"Patient/{p}" for p in sorted(patients)) or "no patient"
        raise WriteRefused(source, 422, Issue("error", "business-rule", (
            f"{where} names {key}, which is about {others}; this message is about {mine}: an attachment belongs "
            f"to the message's patient"), [where]))
