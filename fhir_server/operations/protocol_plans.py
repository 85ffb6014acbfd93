"""One active care plan per patient and protocol: what `$apply` refuses to make twice.

A patient already following a protocol (an active or on-hold CarePlan whose
`instantiatesCanonical` names it, any version) is not given a second plan from it unless the
caller asks (`mode=new`): the answer is 409 naming the plan in force. `$apply` looks before it
builds anything, and again inside the transaction that stores the plan, after touching a guard
key for the patient and the protocol, so two concurrent applies cannot both find none: the
second conflicts on the guard, runs again on fresh data, and is refused.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fhir_server import jsonio
from fhir_server.errors import FhirError, Issue
from fhir_server.interactions.access import reach
from fhir_server.interactions.rules import WriteRefused
from fhir_server.search.execute import find
from fhir_server.search.params.token import keys_term
from fhir_server.search.reach import Reach

if TYPE_CHECKING:
    from fhir_server.interactions.request import FhirRequest
    from fhir_server.server import FhirServer
    from fhir_server.storage.store import Write

IN_FORCE = frozenset({"active", "on-hold"})
OPERATION = "apply"  # the marker `$apply` puts on the transaction it runs when the check applies


def register(rules) -> None:
    rules.register_unit(frozenset({"CarePlan"}), check)


def protocols(careplan: dict[str, Any]) -> set[str]:
    """The protocols a CarePlan follows: its `instantiatesCanonical` without `|version`."""
    return {c.split("|", 1)[0] for c in careplan.get("instantiatesCanonical") or () if isinstance(c, str)}


def in_force(server: FhirServer, reach_: Reach, subject: str, protocol: str, *, session: Any = None,
             besides: frozenset[str] = frozenset()) -> str | None:
    """`CarePlan/id` of a plan in force for `subject` from `protocol`, among those within reach
    (and other than `besides`); None if there is none."""
    for record in find(server, "CarePlan", [keys_term("subject", {subject})], reach=reach_, session=session,
                       json=True):
        plan = jsonio.loads(record.json)
        if record.id not in besides and plan.get("status") in IN_FORCE and protocol in protocols(plan):
            return f"CarePlan/{record.id}"
    return None


def refusal(subject: str, protocol: str, existing: str) -> list[Issue]:
    return [Issue("error", "duplicate",
                  f"{subject} already follows {protocol} through {existing} (in force); update that plan, "
                  f"or ask for a second one with mode=new", ["CarePlan.instantiatesCanonical"])]


def check(server: FhirServer, req: FhirRequest, writes: list[Write], session: Any) -> list[Write]:
    """Inside the `$apply` transaction: refuse a new plan in force from a protocol the patient
    already follows (409), after touching the guard of that patient and protocol."""
    if req.operation != OPERATION:
        return []
    written = frozenset(w.id for w in writes if w.type == "CarePlan")
    for write in writes:
        if write.type != "CarePlan" or write.json is None:
            continue
        plan = jsonio.loads(write.json)
        subject = (plan.get("subject") or {}).get("reference")
        if plan.get("status") not in IN_FORCE or not isinstance(subject, str):
            continue
        for protocol in sorted(protocols(plan)):
            server.store.guard(session, f"protocol-plan|{subject}|{protocol}")
            existing = in_force(server, reach(server, req, "s"), subject, protocol, session=session,
                                besides=written)
            if existing:
                raise WriteRefused(f"CarePlan/{write.id}", 409, refusal(subject, protocol, existing))
    return []


def refuse_if_following(server: FhirServer, reach_: Reach, subject: str, protocol: str) -> None:
    """Before anything is built: 409 if the patient already follows the protocol."""
    existing = in_force(server, reach_, subject, protocol)
    if existing:
        raise FhirError(409, refusal(subject, protocol, existing))
