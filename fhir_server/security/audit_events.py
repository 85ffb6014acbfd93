"""One access to the server, as an AuditEvent in the shape of IHE Basic Audit Log Patterns (BALP).

`Access` is what the request path hands over (cheap: no serialising, no scanning); the audit
trail's writer thread turns it into the AuditEvent, scanning the bodies there for the patients
concerned, so the request does not wait for it.

Shape (BALP "RESTful activity"): type `rest`; subtype the FHIR interaction (`read`, `search-type`,
`create`, `operation`…); action C/R/U/D/E; outcome 0 (success), 4 (the client's error: 4xx) or
8 (the server's: 5xx); the agents — the user (`fhirUser`, else the token's `sub`) as requestor,
the client application with its network address, and this server; `source` this server; the
entities — every patient concerned (role Patient), the resource acted on (with its version), the
query of a search or operation (base64, as BALP says), and the request id (`X-Request-Id`).
"""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from fhir_server.security.identity import Identity
from fhir_server.security.patients import patients_in

_DCM = "http://dicom.nema.org/resources/ontology/DCM"
_ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"
_BALP_ENTITY = "https://profiles.ihe.net/ITI/BALP/CodeSystem/BasicAuditEntityType"
_CLIENT_ID = "urn:ietf:params:oauth:client-id"
MAX_PATIENTS = 10_000  # entities per event; past it the event says how many were left out

# interaction code → BALP action
_ACTIONS = {"create": "C", "read": "R", "vread": "R", "history-instance": "R", "update": "U", "patch": "U",
            "delete": "D"}
_METHOD_ACTIONS = {"GET": "R", "HEAD": "R", "POST": "C", "PUT": "U", "PATCH": "U", "DELETE": "D"}


@dataclass
class Access:
    """What one request (or bundle entry) did, as the request path knows it."""

    recorded: datetime
    identity: Identity | None  # None: refused before anyone was identified (401), or a public URL
    address: str | None
    method: str
    interaction: str | None  # restful-interaction code (None: the URL or method was not understood)
    status: int
    path: str  # relative URL with its query, e.g. `Observation?subject=Patient/1`
    request_id: str | None = None
    resource: str | None = None  # `Type/id` or `Type/id/_history/n` acted on
    query: bool = False  # a search or an operation: `path` is recorded as the query
    error: str | None = None  # what went wrong, for 4xx/5xx
    patients: set[str] = field(default_factory=set)  # patient ids known without scanning
    bodies: list[Any] = field(default_factory=list)  # request/response bodies to scan for patients
    entry: int | None = None  # the index of the batch or transaction entry this access was
    consequence: bool = False  # a write the server made because of the request (a unit-of-work rule)


def audit_event(access: Access, server: dict[str, Any]) -> dict[str, Any]:
    """The AuditEvent for `access`; `server` is the Reference this server is named by."""
    patients = set(access.patients)
    for body in access.bodies:
        patients |= patients_in(body)
    outcome = "0" if access.status < 400 else "4" if access.status < 500 else "8"
    event: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "id": str(uuid.uuid4()),
        "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-event-type", "code": "rest",
                 "display": "Restful Operation"},
        "subtype": [{"system": "http://hl7.org/fhir/restful-interaction", "code": access.interaction}]
        if access.interaction else [],
        "action": _action(access),
        "recorded": _instant(access.recorded),
        "outcome": outcome,
    }
    if not event["subtype"]:
        del event["subtype"]
    if access.error and outcome != "0":
        event["outcomeDesc"] = f"{access.status}: {access.error}"[:1000]
    elif outcome != "0":
        event["outcomeDesc"] = str(access.status)
    if access.identity is not None and access.identity.purpose_of_use:
        event["purposeOfEvent"] = [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason",
                                                "code": access.identity.purpose_of_use}]}]
    event["agent"] = _agents(access, server)
    event["source"] = {"observer": server, "type": [{
        "system": "http://terminology.hl7.org/CodeSystem/security-source-type", "code": "4",
        "display": "Application Server"}]}
    entities = _patient_entities(sorted(patients))
    if access.resource:
        acted_on = {"what": {"reference": access.resource}, "type": _coding(_ENTITY_TYPE, "2", "System Object"),
                    "role": _coding(_ROLE, "4", "Domain Resource")}
        if access.consequence:
            acted_on["description"] = "written by the server as a consequence of the request (e.g. a replaced " \
                                      "document superseded)"
        entities.append(acted_on)
    if access.query:
        entities.append({"type": _coding(_ENTITY_TYPE, "2", "System Object"),
                         "role": _coding(_ROLE, "24", "Query"),
                         "query": base64.b64encode(f"{access.method} {access.path}".encode()).decode()})
    if access.request_id:
        request = {"what": {"identifier": {"value": access.request_id}},
                   "type": _coding(_BALP_ENTITY, "XrequestId", "X-Request-Id")}
        if access.entry is not None:
            request["description"] = f"Bundle.entry[{access.entry}] of the batch or transaction"
        entities.append(request)
    if entities:
        event["entity"] = entities
    return event


def _action(access: Access) -> str:
    if access.interaction in _ACTIONS:
        return _ACTIONS[access.interaction]
    if access.interaction is None:
        return _METHOD_ACTIONS.get(access.method, "E")
    return "E"  # searches, histories over many resources, operations, bundles, capabilities


def _agents(access: Access, server: dict[str, Any]) -> list[dict[str, Any]]:
    identity = access.identity
    network = {"address": access.address, "type": "2"} if access.address else None
    agents = []
    if identity is not None and not identity.open and (identity.fhir_user or identity.user_subject):
        who: dict[str, Any] = {"reference": identity.fhir_user} if identity.fhir_user else {}
        if identity.user_subject:
            who["identifier"] = {"value": identity.user_subject}
        agents.append({"type": _concept("http://terminology.hl7.org/CodeSystem/extra-security-role-type",
                                        "humanuser", "human user"),
                       "who": who, "requestor": True})
    client: dict[str, Any] = {"type": _concept(_DCM, "110153", "Source Role ID"), "requestor": not agents}
    if identity is not None and identity.client_id:
        client["who"] = {"identifier": {"system": _CLIENT_ID, "value": identity.client_id}}
    elif identity is not None and identity.open:
        client["who"] = {"display": "anonymous client (open mode, no authentication)"}
    else:
        client["who"] = {"display": "unidentified client"}
    if network:
        client["network"] = network
    agents.append(client)
    agents.append({"type": _concept(_DCM, "110152", "Destination Role ID"), "who": server, "requestor": False})
    return agents


def _patient_entities(ids: list[str]) -> list[dict[str, Any]]:
    entities = [{"what": {"reference": f"Patient/{id_}"}, "type": _coding(_ENTITY_TYPE, "1", "Person"),
                 "role": _coding(_ROLE, "1", "Patient")} for id_ in ids[:MAX_PATIENTS]]
    if len(ids) > MAX_PATIENTS:
        entities.append({"type": _coding(_ENTITY_TYPE, "1", "Person"), "role": _coding(_ROLE, "1", "Patient"),
                         "description": f"{len(ids) - MAX_PATIENTS} more patients, not listed"})
    return entities


def _coding(system: str, code: str, display: str) -> dict[str, str]:
    return {"system": system, "code": code, "display": display}


def _concept(system: str, code: str, display: str) -> dict[str, Any]:
    return {"coding": [_coding(system, code, display)]}


def _instant(ts: datetime) -> str:
    return ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z"
