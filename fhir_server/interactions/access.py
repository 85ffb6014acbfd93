"""What the request's scopes allow, checked where the interaction knows the resource types:
the router checks the type of a typed interaction; searches and history over several types
keep the types allowed and say which were left out."""

from __future__ import annotations

from fhir_server.errors import FhirError, Issue
from fhir_server.interactions.request import FhirRequest

_DOING = {"c": "create", "r": "read", "u": "update", "d": "delete", "s": "search"}
# Types whose resources, once written, no one may change or delete through the API, whatever
# the scopes: the audit trail.
IMMUTABLE = frozenset({"AuditEvent"})


def authorize(req: FhirRequest, type_: str | None, letter: str) -> None:
    """403 unless the request's scopes allow `letter` on `type_` (None: on every type)."""
    scopes = req.identity.scopes
    target = "*" if type_ is None else type_
    if not scopes.allows(target, letter):
        what = "every resource type" if type_ is None else type_
        text = f"the access token's scopes ({scopes.text or 'none'}) do not allow {_DOING[letter]} ({letter}) on {what}"
        if scopes.held_back(target, letter):
            text += ("; patient/ scopes and granular scopes (?…) are not enforced by this server yet, so they grant "
                     "nothing: ask for user/ or system/ scopes")
        raise FhirError(403, Issue("error", "forbidden", text))


def check_mutable(type_: str | None, letter: str, *, upsert: bool = False) -> None:
    """405 for an update, patch or delete of a resource that is never changed (AuditEvent).
    An `upsert` (PUT of an id) may still create one: the update refuses it if it exists."""
    if type_ in IMMUTABLE and (letter == "d" or (letter == "u" and not upsert)):
        raise immutable(type_)


def immutable(type_: str) -> FhirError:
    return FhirError(405, Issue("error", "not-supported", f"{type_} resources are a record of what happened: "
                                f"they can be created and read, never changed or deleted"),
                     headers={"Allow": "GET, HEAD, POST, PUT"})


def allowed_types(req: FhirRequest, types: list[str], letter: str) -> tuple[list[str], list[str]]:
    """(the types the scopes allow `letter` on, those left out)."""
    if req.identity is None:
        return types, []
    scopes = req.identity.scopes
    kept = [t for t in types if scopes.allows(t, letter)]
    return kept, [t for t in types if not scopes.allows(t, letter)]


def left_out(types: list[str], letter: str) -> Issue:
    """The warning a searchset carries for the types its scopes do not cover."""
    shown = ", ".join(types[:20]) + (f" and {len(types) - 20} more" if len(types) > 20 else "")
    return Issue("warning", "forbidden", f"not searched, the access token's scopes do not allow "
                 f"{_DOING[letter]} ({letter}) on: {shown}")
