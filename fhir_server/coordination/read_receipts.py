"""Read receipts, one per recipient (`coord-ext-read-by`: reader and time).

`Communication.received` keeps its R4 meaning — when the message reached the recipients'
system — and says nothing about reading: "unread for X" is `read-by:not=X`. A receipt names one
of the message's recipients, or a current member of a CareTeam it is addressed to (a reader who
is neither is refused, 422 naming the extension), at most once, and once written it stays (an
update that drops or alters one is refused). A
receipt is written by, or for, the recipient who read: a professional's token writes receipts
only for the recipients they act as — themselves, their PractitionerRoles, the organizations of
those roles (whoever works a structure's box reads for it) — so a sender cannot fake one (403).
Open mode and unrestricted (system) tokens write any recipient's receipt, as a gateway would.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fhir_server.coordination.message_unit import MessageUnit
from fhir_server.errors import Issue
from fhir_server.interactions.care_circle import current_members
from fhir_server.interactions.care_team import is_care_team_user
from fhir_server.interactions.rules import WriteRefused
from fhir_server.storage.store import now

if TYPE_CHECKING:
    from fhir_server.security.identity import Identity
    from fhir_server.server import FhirServer

READ_BY = "https://fhir-server.dev/ig/coordination/StructureDefinition/coord-ext-read-by"


def receipts(unit: MessageUnit, message: dict[str, Any]) -> list[tuple[int, str | None, Any]]:
    """(index in `extension`, reader, time) of each receipt; the reader as `Type/id` when local."""
    out = []
    for i, ext in enumerate(message.get("extension") or ()):
        if isinstance(ext, dict) and ext.get("url") == READ_BY:
            parts = {e.get("url"): e for e in ext.get("extension") or () if isinstance(e, dict)}
            out.append((i, reference_text(unit, parts.get("reader", {}).get("valueReference")),
                        parts.get("time", {}).get("valueDateTime")))
    return out


def recipients(unit: MessageUnit, message: dict[str, Any]) -> set[str]:
    """Who may have read the message: its recipients, and the current members of a CareTeam
    among them (each member of a team reads for themselves)."""
    found = {r for r in (reference_text(unit, r) for r in message.get("recipient") or ()) if r}
    moment = now()
    for team in [r for r in found if r.startswith("CareTeam/")]:
        found |= current_members(unit.resource(team) or {}, moment)
    return found


def reference_text(unit: MessageUnit, reference: Any) -> str | None:
    """A reference as compared here: `Type/id` when local, else the reference as written."""
    key = unit.key(reference)
    if key is not None:
        return key
    ref = reference.get("reference") if isinstance(reference, dict) else None
    return ref if isinstance(ref, str) else None


def acting_as(server: FhirServer, identity: Identity | None) -> frozenset[str] | None:
    """The references whose receipts the caller writes (None: any recipient's)."""
    if identity is None or identity.open or identity.scopes.everything:
        return None
    user = identity.fhir_user
    if not user:
        return frozenset()
    if is_care_team_user(identity):
        return server.circles.of(user).acting.everyone | {user}
    return frozenset({user})


def check(unit: MessageUnit, source: str, message: dict[str, Any], previous: dict[str, Any] | None) -> None:
    before = {(reader, time) for _, reader, time in receipts(unit, previous or {})}
    found = receipts(unit, message)
    for reader, time in sorted(before - {(reader, time) for _, reader, time in found}, key=repr):
        raise WriteRefused(source, 422, Issue("error", "business-rule", (
            f"the read receipt of {reader} at {time} was removed or changed: a receipt, once written, stays "
            f"(keep the coord-ext-read-by extensions of the current version)"), ["Communication.extension"]))
    addressed = recipients(unit, message)
    seen: dict[str, Any] = {}
    for i, reader, time in found:
        where = f"Communication.extension[{i}]"
        if reader is None or reader not in addressed:
            raise WriteRefused(source, 422, Issue("error", "business-rule", (
                f"{where} (coord-ext-read-by) says {reader or 'nobody'} read the message, who is not one of its "
                f"recipients ({', '.join(sorted(addressed)) or 'none'}): a receipt names the recipient who read"),
                [where]))
        if reader in seen:
            raise WriteRefused(source, 422, Issue("error", "business-rule", (
                f"{where} (coord-ext-read-by): {reader} already read the message at {seen[reader]}; one receipt "
                f"per recipient"), [where]))
        seen[reader] = time
    _written_by_the_reader(unit, source, [(i, r) for i, r, t in found if (r, t) not in before])


def _written_by_the_reader(unit: MessageUnit, source: str, new: list[tuple[int, str | None]]) -> None:
    """403 for a new receipt of a recipient the caller does not act as."""
    acting = acting_as(unit.server, unit.req.identity) if new else None
    if acting is None:
        return
    for i, reader in new:
        if reader not in acting:
            where = f"Communication.extension[{i}]"
            raise WriteRefused(source, 403, Issue("error", "forbidden", (
                f"{where} (coord-ext-read-by) is a receipt for {reader}, whom this access token does not act for: "
                f"a recipient marks a message read for themselves, their roles or their structure's box "
                f"(POST Communication/[id]/$mark-read)"), [where]))
