"""`POST Communication/[id]/$mark-read`: a recipient marks a message read, without racing.

The receipt (`coord-ext-read-by`: reader, and the server's time) is added to the current
version inside the write's unit of work, so two recipients reading at once both end up in
`read-by` (the later unit runs again on the version the first committed) and no client has to
send the whole message back. The readers are the `reader` parameters (a query parameter or a
Parameters `valueReference`, needed in open mode), else the message's recipients the token's
user acts as: themselves, their PractitionerRoles, the organizations of those roles (a
structure's box), and their memberships of a CareTeam the message is addressed to. Marking
again is a no-op: each recipient has one receipt, the first. The coordination rules check every
receipt (coordination/read_receipts.py): a reader who is not a recipient is 422, a recipient
the token does not act for 403. Answers the message (200)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fhir_server import jsonio
from fhir_server.errors import FhirError, Issue
from fhir_server.interactions.access import current_for_write
from fhir_server.interactions.care_circle import current_members
from fhir_server.interactions.care_team import is_care_team_user
from fhir_server.interactions.integrity import local_bases, parse_local
from fhir_server.interactions.read import gone, unknown
from fhir_server.interactions.request import FhirRequest, FhirResponse, versioned_response
from fhir_server.interactions.resource import new_version
from fhir_server.storage.store import format_instant, next_instant, now

if TYPE_CHECKING:
    from fhir_server.server import FhirServer

TYPE = "Communication"
READ_BY = "https://fhir-server.dev/ig/coordination/StructureDefinition/coord-ext-read-by"
DEFINITION = "https://fhir-server.dev/ig/coordination/OperationDefinition/coord-op-mark-read"


def mark_read(server: FhirServer, req: FhirRequest) -> FhirResponse:
    asked = _asked(req)
    server.prepare_type(TYPE)

    def work(session):
        current = current_for_write(server, req, session, TYPE, req.id, "u")
        if current is None:
            raise unknown(TYPE, req.id)
        if current.deleted:
            raise gone(current)
        message = jsonio.loads(current.json)
        local = _local(server, req)
        readers = asked or _recipients_acted_for(server, req, session, message, local)
        done = {_reader(ext, local) for ext in message.get("extension") or () if isinstance(ext, dict)
                and ext.get("url") == READ_BY}
        new = [r for r in dict.fromkeys(local(r) or r for r in readers) if r not in done]
        if not new:
            return []
        when = format_instant(now())
        message.setdefault("extension", []).extend(_receipt(r, when) for r in new)
        return [new_version(server, message, req.id, current.version + 1, current.version,
                            next_instant(current.last_updated), "PUT", req.base_url, current)]

    written = server.transact(work, req=req)
    if written:
        return versioned_response(req, written[0], 200)
    current = current_for_write(server, req, None, TYPE, req.id, "r")
    if current is None or current.deleted:
        raise unknown(TYPE, req.id)
    return versioned_response(req, current, 200)


def _asked(req: FhirRequest) -> list[str]:
    """The `reader` parameters, from the URL and from a Parameters body."""
    readers = [v for k, v in req.params if k == "reader"]
    body = req.body
    if isinstance(body, dict) and body.get("resourceType") == "Parameters":
        for p in body.get("parameter") or ():
            if not isinstance(p, dict) or p.get("name") != "reader":
                continue
            ref = (p.get("valueReference") or {}).get("reference") if isinstance(p.get("valueReference"), dict) \
                else None
            if not isinstance(ref, str):
                raise FhirError(400, Issue("error", "invalid", "the reader parameter is a valueReference naming the "
                                           "recipient who read (PractitionerRole/[id], Organization/[id]…)",
                                           ["Parameters.parameter"]))
            readers.append(ref)
    elif body is not None:
        raise FhirError(400, Issue("error", "invalid", "$mark-read takes no body, or a Parameters resource"))
    return readers


def _recipients_acted_for(server: FhirServer, req: FhirRequest, session: Any, message: dict[str, Any],
                          local) -> list[str]:
    """The recipients the token's user acts as, and their memberships of a CareTeam addressed."""
    identity = req.identity
    user = identity.fhir_user if identity is not None else None
    if not user:
        raise FhirError(400, Issue("error", "required", "say who read the message: a reader parameter "
                                   "(Reference to one of its recipients), or a token naming the user (fhirUser)"))
    acting = server.circles.of(user).acting.everyone | {user} if is_care_team_user(identity) else {user}
    recipients = [local(r.get("reference")) for r in message.get("recipient") or () if isinstance(r, dict)]
    found = [r for r in recipients if r in acting]
    moment = now()
    for team in (r for r in recipients if isinstance(r, str) and r.startswith("CareTeam/")):
        version = server.store.read_in(session, "CareTeam", team.split("/", 1)[1])
        if version is not None and version.json is not None:
            found += sorted(current_members(jsonio.loads(version.json), moment) & acting)
    if not found:
        raise FhirError(422, Issue("error", "business-rule", (
            f"{user} is none of the message's recipients, nor acts for one (through a PractitionerRole, its "
            f"organization, or a membership of a CareTeam addressed): only a recipient marks a message read"),
            ["Communication.recipient"]))
    return found


def _local(server: FhirServer, req: FhirRequest):
    bases = local_bases(server, req)

    def local(ref: Any) -> str | None:
        if not isinstance(ref, str):
            return None
        found = parse_local(ref, bases, server.definitions.is_resource_type)
        return f"{found[0]}/{found[1]}" if found else ref

    return local


def _reader(ext: dict[str, Any], local) -> str | None:
    for part in ext.get("extension") or ():
        if isinstance(part, dict) and part.get("url") == "reader":
            return local((part.get("valueReference") or {}).get("reference"))
    return None


def _receipt(reader: str, when: str) -> dict[str, Any]:
    return {"url": READ_BY, "extension": [{"url": "reader", "valueReference": {"reference": reader}},
                                          {"url": "time", "valueDateTime": when}]}
