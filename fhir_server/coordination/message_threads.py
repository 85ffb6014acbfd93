"""Threads: a reply (`inResponseTo`) answers a message stored on this server that the caller may
see (one out of reach is absent: 422 not-found, as for one that does not exist), and stays in
its thread. A thread is the tree of messages linked by `inResponseTo`; every message of it is
about the same patient (`subject`, or none) and carries the same `topic` (the subject line),
so a reply neither moves a conversation to another patient nor starts another one under the
first one's name. `partOf` (the event a message belongs to) is free."""

from __future__ import annotations

from typing import Any

from fhir_server.coordination.message_unit import TYPE, MessageUnit
from fhir_server.errors import Issue
from fhir_server.interactions.rules import WriteRefused

THREAD = ("inResponseTo", "subject", "topic")


def check(unit: MessageUnit, source: str, message: dict[str, Any], previous: dict[str, Any] | None) -> None:
    if previous is not None and all(previous.get(k) == message.get(k) for k in THREAD):
        return  # checked when it was written
    for i, reference in enumerate(message.get("inResponseTo") or ()):
        where = f"Communication.inResponseTo[{i}]"
        key = unit.key(reference)
        answered = unit.visible(key) if key and key.startswith(f"{TYPE}/") and key != source else None
        if answered is None:
            named = (reference or {}).get("reference") if isinstance(reference, dict) else None
            raise WriteRefused(source, 422, Issue("error", "not-found", (
                f"{where} names {named or 'no message'!r}, which is not a message stored on this server: a reply "
                f"answers an existing Communication (Communication/[id])"), [where]))
        _same(unit, source, where, key, "subject", "patient", unit.key(answered.get("subject")),
              unit.key(message.get("subject")))
        _same(unit, source, where, key, "topic", "topic", _topic(answered.get("topic")), _topic(message.get("topic")))


def _same(unit: MessageUnit, source: str, where: str, key: str, element: str, what: str, theirs: Any,
          mine: Any) -> None:
    if theirs != mine:
        raise WriteRefused(source, 422, Issue("error", "business-rule", (
            f"{where} answers {key}, whose {what} is {_shown(theirs)}; this reply's is {_shown(mine)}: a reply "
            f"stays in its thread (same subject and topic); start a new message for another one"),
            [where, f"Communication.{element}"]))


def _topic(topic: Any) -> tuple | None:
    """A topic as compared: its codes when coded, else its text."""
    if not isinstance(topic, dict):
        return None
    codes = sorted((c.get("system"), c.get("code")) for c in topic.get("coding") or () if isinstance(c, dict))
    return ("codes", *codes) if codes else ("text", topic.get("text"))


def _shown(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, tuple):
        return repr(value[1]) if value[0] == "text" else ", ".join(f"{s}|{c}" for s, c in value[1:])
    return str(value)
