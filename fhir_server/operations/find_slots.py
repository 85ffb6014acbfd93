"""`Slot/$find`: the free Slots of a practitioner, a structure, a specialty or a service over a
period — what plain search cannot say in one query (parameter names after the IHE Scheduling
and Argonaut `Appointment/$find`).

- `start`, `end` (required): the Slots that start at or after `start` and end at or before `end`
  (a date covers its whole day: `end=2027-06-08` keeps the slots of June 8).
- `practitioner`: the Schedules of the Practitioner itself and of each of their active
  PractitionerRoles (`Slot?schedule.actor=` names one or the other, never both).
- `organization`: the Schedules of the structure's active PractitionerRoles, HealthcareServices
  and Locations; with `practitioner`, only that practitioner's roles in the structure.
- `specialty`, `service-type` (`system|code` or `code`): the Slot's own, or its Schedule's when
  the Slot states none (GAP puts the specialty on both, other agendas on the Schedule alone).
- `_count`: the page size.

Only active Schedules count (`active` absent or true). Every lookup runs within the caller's
reach: a practitioner, role or schedule the caller may not see contributes nothing, exactly as if
absent. The answer is a searchset of free Slots ordered by start, paged like a search."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from fhir_server import budget, jsonio
from fhir_server.errors import bad_request
from fhir_server.interactions import searchset
from fhir_server.interactions.access import reach
from fhir_server.interactions.request import FhirRequest, FhirResponse
from fhir_server.search.dates import DateError, period
from fhir_server.search.execute import find
from fhir_server.search.query import Context, build_terms
from fhir_server.search.reach import Reach
from fhir_server.storage.records import Record

if TYPE_CHECKING:
    from fhir_server.server import FhirServer

DEFINITION = "https://fhir-server.dev/ig/coordination/OperationDefinition/coord-op-slot-find"
NAMES = ("start", "end", "practitioner", "organization", "specialty", "service-type", "_count")
ACTIVE = ("active:not", "false")


def find_slots(server: FhirServer, req: FhirRequest) -> FhirResponse:
    if req.param("_page") is not None:
        return searchset.stored_page(server, req)
    inputs = _inputs(req)
    start, end = _instant(inputs, "start", 0), _instant(inputs, "end", 1)
    if end <= start:
        raise bad_request(f"end ({inputs['end']}) is not after start ({inputs['start']})", code="value")
    count = searchset.page_count(server, inputs.get("_count"), positive=True)
    searched = reach(server, req, "s")
    search = _Search(server, req, searched)
    keys = _free_slots(search, inputs)
    info = {"params": [(k, v) for k, v in inputs.items()], "count": count, "summary": None, "elements": None,
            "total": "accurate", "includes": [], "revincludes": [], "path": "Slot/$find", "warnings": []}
    return searchset.first_page(server, req, keys, info)


class _Search:
    """Searches run with the request's reach (a hidden resource is never a candidate)."""

    def __init__(self, server: FhirServer, req: FhirRequest, searched: Reach):
        self.server, self.searched = server, searched
        self.context = Context(server, req.base_url, strict=True, reach=searched,
                               strict_because="Slot/$find searches with known parameters")

    def __call__(self, type_: str, criteria: list[tuple[str, str]], json: bool = False) -> list[Record]:
        terms, _ = build_terms(self.context, type_, criteria)
        return find(self.server, type_, terms, reach=self.searched, json=json)


def _free_slots(search: _Search, inputs: dict[str, str]) -> list[str]:
    actors = _actors(search, inputs.get("practitioner"), inputs.get("organization"))
    if actors is not None and not actors:
        return []
    criteria = [ACTIVE] + ([("actor", ",".join(sorted(actors)))] if actors is not None else [])
    schedules = {r.key: jsonio.loads(r.json) for r in search("Schedule", criteria, json=True)}
    if not schedules:
        return []
    slots = search("Slot", [("status", "free"), ("schedule", ",".join(sorted(schedules))),
                            ("start", f"ge{inputs['start']}"), ("end", f"le{inputs['end']}")], json=True)
    found: list[tuple[datetime, str]] = []
    for record in budget.checked(slots, every=256):
        slot = jsonio.loads(record.json)
        schedule = schedules.get(_local(slot.get("schedule")), {})
        if all(_codes_match(slot, schedule, element, inputs.get(name))
               for name, element in (("specialty", "specialty"), ("service-type", "serviceType"))):
            found.append((period(slot["start"])[0], record.key))
    return [key for _, key in sorted(found)]


def _actors(search: _Search, practitioner: str | None, organization: str | None) -> set[str] | None:
    """The references a Schedule's actor must be one of (None: any)."""
    if practitioner is None and organization is None:
        return None
    roles = [ACTIVE]
    if practitioner is not None:
        roles.append(("practitioner", _reference("practitioner", practitioner, "Practitioner")))
    if organization is not None:
        roles.append(("organization", _reference("organization", organization, "Organization")))
    actors = {r.key for r in search("PractitionerRole", roles)}
    if practitioner is not None and organization is None:
        actors |= {r.key for r in search("Practitioner", [("_id", _id(practitioner))])}
    if organization is not None and practitioner is None:
        structure = ("organization", _reference("organization", organization, "Organization"))
        actors |= {r.key for r in search("HealthcareService", [ACTIVE, structure])}
        actors |= {r.key for r in search("Location", [structure])}
    return actors


def _codes_match(slot: dict[str, Any], schedule: dict[str, Any], element: str, token: str | None) -> bool:
    if token is None:
        return True
    concepts = slot.get(element) or schedule.get(element) or []
    system, _, code = token.rpartition("|") if "|" in token else (None, "", token)
    return any(coding.get("code") == code and (system is None or coding.get("system") == system)
               for concept in concepts if isinstance(concept, dict)
               for coding in concept.get("coding") or () if isinstance(coding, dict))


def _inputs(req: FhirRequest) -> dict[str, str]:
    """The parameters, from the URL or a Parameters body; 400 for one unknown or repeated."""
    pairs = [(k, v) for k, v in req.params if k not in ("_format", "_pretty")]
    body = req.body if isinstance(req.body, dict) else None
    if body is not None:
        if body.get("resourceType") != "Parameters":
            raise bad_request("POST Slot/$find takes a Parameters resource", code="structure")
        pairs += [(p.get("name"), _value(p)) for p in body.get("parameter") or () if isinstance(p, dict)]
    out: dict[str, str] = {}
    for name, value in pairs:
        if name not in NAMES:
            raise bad_request(f"Slot/$find has no parameter {name!r}; it takes {', '.join(NAMES)}",
                              code="not-supported")
        if name in out:
            raise bad_request(f"Slot/$find takes one {name!r}", code="value")
        if not isinstance(value, str) or not value:
            raise bad_request(f"Slot/$find parameter {name!r} has no value", code="value")
        out[name] = value
    for name in ("start", "end"):
        if name not in out:
            raise bad_request(f"Slot/$find needs {name!r} (a date or dateTime): the period to look in",
                              code="required")
    return out


def _value(parameter: dict[str, Any]) -> str | None:
    for key, value in parameter.items():
        if key == "valueReference" and isinstance(value, dict):
            return value.get("reference")
        if key == "valueCoding" and isinstance(value, dict):
            return f"{value.get('system')}|{value.get('code')}" if value.get("system") else value.get("code")
        if key.startswith("value") and isinstance(value, (str, int)) and not isinstance(value, bool):
            return str(value)
    return None


def _instant(inputs: dict[str, str], name: str, side: int) -> datetime:
    try:
        return period(inputs[name])[side]
    except DateError as exc:
        raise bad_request(f"Slot/$find {name}: {exc}", code="value") from None




def _reference(name: str, value: str, type_: str) -> str:
    """`Type/id` from `Type/id` or a bare id; 400 for a reference to another type."""
    if "/" not in value:
        return f"{type_}/{value}"
    if not value.startswith(f"{type_}/") or value.count("/") != 1:
        raise bad_request(f"Slot/$find {name} must be {type_}/<id> or an id, got {value[:80]!r}", code="value")
    return value


def _id(practitioner: str) -> str:
    return _reference("practitioner", practitioner, "Practitioner").split("/", 1)[1]


def _local(reference: Any) -> str | None:
    ref = reference.get("reference") if isinstance(reference, dict) else None
    return "/".join(ref.rstrip("/").split("/")[-2:]) if isinstance(ref, str) else None
