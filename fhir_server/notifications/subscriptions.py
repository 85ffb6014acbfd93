"""The write rules of a Subscription: what the server accepts, and who it belongs to.

- A rest-hook channel only (422 naming `channel.type` otherwise), with an endpoint that passes
  the SSRF guard (`endpoints.py`), `payload` absent or FHIR JSON, `header` values `Name: value`,
  and a criteria the search engine evaluates (`criteria.py`).
- `requested` becomes `active` once these hold (R4's handshake is the server's check here);
  `off` stops it; `error` is the server's, when an endpoint keeps failing (`delivery.py`).
- Its owner is the token that wrote it last (the server's own writes aside), stored in the same
  unit of work: notifications stay within what that token may see.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fhir_server.errors import FhirError, Issue
from fhir_server.interactions.rules import WriteRefused, WriteRules
from fhir_server.interactions.unit_of_work import UnitOfWork
from fhir_server.notifications import criteria, endpoints
from fhir_server.security.identity import Identity
from fhir_server.security.scopes import Scopes
from fhir_server.storage.store import Write

if TYPE_CHECKING:
    from fhir_server.interactions.request import FhirRequest
    from fhir_server.server import FhirServer

CHANNELS = ("rest-hook",)  # what this server delivers (the CapabilityStatement says so)
PAYLOADS = ("application/fhir+json", "application/json")
# the server writing its own changes of a Subscription (status error): every right, not an owner
SERVER = Identity("fhir-server", "fhir-server", Scopes.all())


def register(rules: WriteRules) -> None:
    rules.register("Subscription", activate)
    rules.register_unit(frozenset({"Subscription"}), check_unit)


def activate(previous: dict[str, Any] | None, resource: dict[str, Any]) -> None:
    """`requested` → `active`: the unit rule refuses the write if the Subscription cannot be served."""
    if resource.get("status") == "requested":
        resource["status"] = "active"
        resource.pop("error", None)


def check_unit(server: FhirServer, req: FhirRequest, writes: list[Write], session: Any) -> list[Write]:
    """Every Subscription the unit writes is one the server can serve (422/400 naming the element
    otherwise), and belongs to the request's token from now on."""
    if req.identity == SERVER:
        return []  # the server's own status change: the Subscription was checked when written
    unit = UnitOfWork(server, req, session, writes)
    for write, resource in unit.written("Subscription"):
        try:
            check(server, resource)
        except FhirError as exc:
            raise WriteRefused(f"Subscription/{write.id}", exc.status, exc.issues) from None
        if req.identity is not None:
            server.outbox.set_owner(session, write.id, identity_document(req.identity))
    return []


def check(server: FhirServer, resource: dict[str, Any]) -> None:
    """What a Subscription must hold for this server to notify it."""
    criteria.parse(server, resource.get("criteria"))
    channel = resource.get("channel") or {}
    kind = channel.get("type")
    if kind not in CHANNELS:
        raise _refused(f"channel.type {kind!r} is not supported; this server delivers: {', '.join(CHANNELS)}",
                       "Subscription.channel.type", "not-supported")
    endpoint = channel.get("endpoint")
    if not isinstance(endpoint, str) or not endpoint:
        raise _refused("a rest-hook channel needs an endpoint", "Subscription.channel.endpoint", "required")
    try:
        endpoints.check(endpoint, server.settings)
    except endpoints.EndpointRefused as exc:
        raise _refused(f"channel.endpoint refused: {exc}", "Subscription.channel.endpoint", "security") from None
    payload = channel.get("payload")
    if payload is not None and payload.split(";", 1)[0].strip() not in PAYLOADS:
        raise _refused(f"channel.payload {payload!r} is not supported: leave it out (an empty notification) or "
                       f"use application/fhir+json", "Subscription.channel.payload", "not-supported")
    for i, header in enumerate(channel.get("header") or ()):
        name, colon, _ = header.partition(":")
        if not colon or not name.strip() or any(c in header for c in "\r\n"):
            raise _refused(f"channel.header {header!r} is not an HTTP header line 'Name: value'",
                           f"Subscription.channel.header[{i}]", "value")


def headers(resource: dict[str, Any]) -> dict[str, str]:
    """The channel's `header` values as HTTP headers."""
    out: dict[str, str] = {}
    for line in (resource.get("channel") or {}).get("header") or ():
        name, _, value = line.partition(":")
        out[name.strip()] = value.strip()
    return out


def identity_document(identity: Identity) -> dict[str, Any]:
    """What is kept of the owner's token to rebuild its reach when notifying."""
    return {"sub": identity.subject, "client": identity.client_id, "scope": identity.scopes.text,
            "everything": identity.scopes.everything, "user": identity.fhir_user, "patient": identity.patient,
            "purpose": identity.purpose_of_use, "open": identity.open}


def owner_identity(doc: dict[str, Any]) -> Identity:
    scopes = Scopes.all() if doc.get("everything") else Scopes.parse(doc.get("scope") or "",
                                                                     patient=doc.get("patient") is not None)
    return Identity(doc.get("sub"), doc.get("client"), scopes, fhir_user=doc.get("user"), patient=doc.get("patient"),
                    purpose_of_use=doc.get("purpose"), open=bool(doc.get("open")))


def _refused(text: str, expression: str, code: str) -> FhirError:
    return FhirError(422, Issue("error", code, text, expression=[expression]))
