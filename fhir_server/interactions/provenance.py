"""Provenance of writes: who changed what, committed with the change.

Every create, update, patch and delete made by an identified user or client (not in open mode,
where nobody is identified) adds one Provenance to the same database transaction as the write
(`attach` wraps the unit of work), so a write that fails leaves none and one that commits always
has one. A transaction Bundle gets one Provenance for all its writes.

The Provenance names each version written (`Type/id/_history/n`), when (`recorded`), the activity
(CREATE, UPDATE, DELETE), the user as `author` (on behalf of their organization when the user is
a PractitionerRole), the client application as `performer`, and the purpose of use (e.g. BTG).

A client may send its own Provenance in the `X-Provenance` header (FHIR http.html#provenance):
it is checked like any resource (400/422 before anything is written), its `target`, if given,
must name what the request writes, and it is stored with the server's `target`, `recorded` and
agents added: what the client asserts (another author, a signature, the sources) is kept, what
the token proves is always there. Agents the token proves come as `enterer` when the client
named its own agents, `author` otherwise.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from fhir_server import jsonio
from fhir_server.errors import FhirError, Issue, bad_request
from fhir_server.interactions.request import FhirRequest
from fhir_server.interactions.resource import new_version, validate
from fhir_server.storage.store import Write, format_instant, now

if TYPE_CHECKING:
    from fhir_server.server import FhirServer

HEADER = "X-Provenance"
_PARTICIPANT = "http://terminology.hl7.org/CodeSystem/provenance-participant-type"
_OPERATION = "http://terminology.hl7.org/CodeSystem/v3-DataOperation"
_CLIENT_ID = "urn:ietf:params:oauth:client-id"
_ACTIVITY = {"POST": "CREATE", "PUT": "UPDATE", "PATCH": "UPDATE", "DELETE": "DELETE"}

Work = Callable[[Any], list[Write]]


def attach(server: FhirServer, req: FhirRequest, work: Work) -> Work:
    """`work` with the Provenance of its writes added (unchanged when there is nobody to name
    and no X-Provenance)."""
    declared = declared_provenance(server, req)
    identity = req.identity
    identified = identity is not None and not identity.open
    if declared is None and not identified:
        return work
    server.prepare_type("Provenance")

    def with_provenance(session) -> list[Write]:
        writes = work(session)
        if not writes:
            return writes
        return [*writes, _provenance(server, req, writes, declared, session)]

    return with_provenance


def declared_provenance(server: FhirServer, req: FhirRequest) -> dict[str, Any] | None:
    """The X-Provenance header's resource, checked (400/422 naming the header), or None."""
    if req.provenance is None:
        return None
    try:
        declared = jsonio.loads(req.provenance)
    except ValueError as exc:
        raise bad_request(f"{HEADER} is not JSON ({exc}); send a Provenance resource as JSON on one line",
                          code="structure") from None
    if not isinstance(declared, dict) or declared.get("resourceType") != "Provenance":
        raise bad_request(f"{HEADER} must be a Provenance resource (resourceType Provenance)", code="structure")
    if identity_open(req) and not declared.get("agent"):
        raise bad_request(f"{HEADER} needs an agent: without authentication the server knows nobody to name",
                          code="required", expression="Provenance.agent")
    # target and recorded are the server's to fill; a stand-in lets the rest be checked now
    trial = {**declared, "target": declared.get("target") or [{"reference": "Basic/x"}],
             "recorded": format_instant(now()), "agent": declared.get("agent") or [{"who": {"display": "x"}}]}
    trial.pop("id", None)
    try:
        validate(server, trial)
    except FhirError as exc:
        raise FhirError(exc.status, [Issue(i.severity, i.code, f"{HEADER}: {i.diagnostics}", i.expression)
                                     for i in exc.issues]) from None
    return declared


def identity_open(req: FhirRequest) -> bool:
    return req.identity is None or req.identity.open


def _provenance(server: FhirServer, req: FhirRequest, writes: list[Write], declared: dict[str, Any] | None,
                session) -> Write:
    targets = [f"{w.type}/{w.id}/_history/{w.version}" for w in writes]
    if declared is not None:
        _check_targets(declared.get("target"), writes, req.base_url)
    recorded = max(w.last_updated for w in writes)
    resource: dict[str, Any] = {k: v for k, v in (declared or {}).items() if k not in ("id", "meta", "text")}
    resource["resourceType"] = "Provenance"
    resource["target"] = [{"reference": t} for t in targets]
    resource["recorded"] = format_instant(recorded)
    activities = {_ACTIVITY[w.method] if w.method != "PUT" or w.version > 1 else "CREATE" for w in writes}
    if len(activities) == 1 and "activity" not in resource:
        resource["activity"] = {"coding": [{"system": _OPERATION, "code": activities.pop()}]}
    resource["agent"] = list(resource.get("agent") or ()) + _agents(server, req, session,
                                                                     asserted=bool(resource.get("agent")))
    identity = req.identity
    if identity is not None and identity.purpose_of_use and "reason" not in resource:
        resource["reason"] = [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason",
                                           "code": identity.purpose_of_use}]}]
    id_ = str(uuid.uuid4())
    return new_version(server, resource, id_, 1, None, recorded, "POST", req.base_url)


def _check_targets(declared: Any, writes: list[Write], base_url: str) -> None:
    """A target the client gives must be one of the resources this request writes."""
    written = {f"{w.type}/{w.id}" for w in writes} | {f"{w.type}/{w.id}/_history/{w.version}" for w in writes}
    for i, target in enumerate(declared or ()):
        reference = target.get("reference") if isinstance(target, dict) else None
        if isinstance(reference, str) and reference.startswith(base_url.rstrip("/") + "/"):
            reference = reference[len(base_url.rstrip("/")) + 1:]
        if reference not in written:
            raise bad_request(f"{HEADER} target {reference or target!r} is not what this request writes "
                              f"({', '.join(sorted(written)[:10])}); leave target out and the server fills it",
                              code="invariant", expression=f"Provenance.target[{i}]")


def _agents(server: FhirServer, req: FhirRequest, session, asserted: bool) -> list[dict[str, Any]]:
    """The agents the access token proves: the user, then the client."""
    identity = req.identity
    if identity is None or identity.open:
        return []
    agents = []
    if identity.fhir_user or identity.user_subject:
        user: dict[str, Any] = {"type": _role("enterer" if asserted else "author", "Enterer" if asserted else "Author")}
        if identity.fhir_user:
            user["who"] = {"reference": identity.fhir_user}
        else:
            user["who"] = {"identifier": {"system": server.settings.auth_issuer or "urn:ietf:rfc:3986",
                                          "value": identity.user_subject}}
        organization = _organization(server, identity.fhir_user, session)
        if organization:
            user["onBehalfOf"] = {"reference": organization}
        agents.append(user)
    if identity.client_id:
        agents.append({"type": _role("performer", "Performer"),
                       "who": {"identifier": {"system": _CLIENT_ID, "value": identity.client_id},
                               "display": identity.client_id}})
    return agents


def _organization(server: FhirServer, fhir_user: str | None, session) -> str | None:
    """The organization a PractitionerRole user acts for."""
    if not fhir_user or not fhir_user.startswith("PractitionerRole/"):
        return None
    stored = server.store.read_in(session, "PractitionerRole", fhir_user.split("/", 1)[1])
    if stored is None or not stored.json:
        return None
    reference = (jsonio.loads(stored.json).get("organization") or {}).get("reference")
    return reference if isinstance(reference, str) and reference.startswith("Organization/") else None


def _role(code: str, display: str) -> dict[str, Any]:
    return {"coding": [{"system": _PARTICIPANT, "code": code, "display": display}]}

