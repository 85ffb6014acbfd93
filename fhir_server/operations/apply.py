"""`PlanDefinition/[id]/$apply`: a pluriprofessional protocol made into one patient's care plan.

The answer is a CarePlan (profile coord-careplan) following the protocol: one Task (coord-task)
per action, nested actions included, owned by the member of the patient's care team whose role
matches the action's participant role (TRE_G15 profession or coordination role), due when the
action's timing says; one Goal per goal of the protocol. Without `store`, Tasks and Goals are
contained in the CarePlan (nothing is written). With the parameter `store=true` — this server's
documented option — everything is created in one transaction and the stored CarePlan is
answered (201, Location), its Tasks and Goals as separate resources.

Parameters (R4 OperationDefinition PlanDefinition-apply): `subject` (required, `Patient/[id]`),
`encounter`, `practitioner` (the author and requester: a PractitionerRole or Practitioner),
`organization` (the structure, as the coord-ext-structure extension); `store` (this server's).
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from fhir_server import jsonio
from fhir_server.errors import FhirError, Issue, bad_request
from fhir_server.interactions.access import reach, sees
from fhir_server.interactions.read import current
from fhir_server.interactions.request import FhirRequest, FhirResponse, versioned_response
from fhir_server.search.dates import EARLIEST, LATEST
from fhir_server.search.execute import find
from fhir_server.search.params.reference import local_type
from fhir_server.search.params.token import keys_term
from fhir_server.storage.store import format_instant, now

if TYPE_CHECKING:
    from fhir_server.server import FhirServer

GUIDE = "https://fhir-server.dev/ig/coordination"
CAREPLAN_PROFILE = f"{GUIDE}/StructureDefinition/coord-careplan"
TASK_PROFILE = f"{GUIDE}/StructureDefinition/coord-task"
PROTOCOL_STEP = f"{GUIDE}/StructureDefinition/coord-ext-protocol-step"
STRUCTURE = f"{GUIDE}/StructureDefinition/coord-ext-structure"
CATEGORY = {"coding": [{"system": f"{GUIDE}/CodeSystem/coord-cs-careplan-category", "code": "protocole"}]}
_UNITS = {"min": timedelta(minutes=1), "h": timedelta(hours=1), "d": timedelta(days=1), "wk": timedelta(weeks=1),
          "mo": timedelta(days=30), "a": timedelta(days=365)}


def apply(server: FhirServer, req: FhirRequest) -> FhirResponse:
    args = _arguments(req)
    readable = reach(server, req, "r")
    plan = jsonio.loads(current(server, "PlanDefinition", req.id, readable).json)
    if plan.get("status") == "retired":
        raise FhirError(422, Issue("error", "business-rule", f"PlanDefinition/{req.id} is retired: it is not applied"))
    subject = args.get("subject")
    if not subject:
        raise bad_request("$apply needs subject=Patient/[id]", code="required")
    local = local_type(subject)
    if local is None or local[0] != "Patient":
        raise bad_request(f"subject {subject!r} is not Patient/[id]", code="value")
    patient = server.store.read("Patient", local[1], values=True)
    if patient is None or patient.deleted or not sees(server, readable, patient):
        raise FhirError(404, Issue("error", "not-found", f"{subject} does not exist"))
    teams = find(server, "CareTeam", [keys_term("subject", {subject})], reach=reach(server, req, "s"), json=True)
    careplan, tasks, goals = _careplan(plan, subject, args, [jsonio.loads(t.json) for t in teams])
    if args.get("store") not in ("true", True):
        careplan["contained"] = goals + tasks
        return FhirResponse(200, careplan)
    return _store(server, req, careplan, tasks, goals)


def _arguments(req: FhirRequest) -> dict[str, Any]:
    args: dict[str, Any] = {k: v for k, v in req.params if k in ("subject", "encounter", "practitioner",
                                                                  "organization", "store")}
    body = req.body
    if isinstance(body, dict) and body.get("resourceType") == "Parameters":
        for p in body.get("parameter") or ():
            value = next((v for k, v in p.items() if k.startswith("value")), None)
            if isinstance(value, dict):  # valueReference
                value = value.get("reference")
            if p.get("name") in ("subject", "encounter", "practitioner", "organization", "store"):
                args[p["name"]] = value
    return args


def _careplan(plan: dict[str, Any], subject: str, args: dict[str, Any], teams: list[dict[str, Any]]):
    started = now()
    members = _members_by_role(teams)
    canonical = plan.get("url", "") + (f"|{plan['version']}" if plan.get("version") else "")
    goals = [_goal(goal, subject, i) for i, goal in enumerate(plan.get("goal") or ())]
    requester = {"reference": args["practitioner"]} if args.get("practitioner") else None
    tasks: list[dict[str, Any]] = []
    for action in _actions(plan.get("action") or ()):
        tasks.append(_task(action, subject, requester, members, teams, started, len(tasks)))
    careplan: dict[str, Any] = {
        "resourceType": "CarePlan", "meta": {"profile": [CAREPLAN_PROFILE]},
        "status": "active", "intent": "plan", "category": [CATEGORY],
        "instantiatesCanonical": [canonical] if canonical else [],
        "title": plan.get("title") or plan.get("name"), "subject": {"reference": subject},
        "period": {"start": format_instant(started)}, "created": format_instant(started)}
    if not careplan["instantiatesCanonical"]:
        del careplan["instantiatesCanonical"]
    if args.get("organization"):
        careplan["extension"] = [{"url": STRUCTURE, "valueReference": {"reference": args["organization"]}}]
    if args.get("encounter"):
        careplan["encounter"] = {"reference": args["encounter"]}
    if requester:
        careplan["author"] = requester
    if teams:
        careplan["careTeam"] = [{"reference": f"CareTeam/{t['id']}"} for t in teams]
    if goals:
        careplan["goal"] = [{"reference": f"#{g['id']}"} for g in goals]
    if tasks:
        careplan["activity"] = [{"reference": {"reference": f"#{t['id']}", "display": t.get("description")}}
                                for t in tasks]
    return careplan, tasks, goals


def _actions(actions, prefix: str = ""):
    """Every action of the protocol, nested ones after their parent."""
    for i, action in enumerate(actions):
        key = action.get("id") or f"{prefix}{i + 1}"
        yield {**action, "id": key}
        yield from _actions(action.get("action") or (), f"{key}.")


def _members_by_role(teams: list[dict[str, Any]]) -> dict[tuple[str, str], list[dict[str, Any]]]:
    out: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for team in teams:
        for participant in team.get("participant") or ():
            member = participant.get("member")
            if not member:
                continue
            for role in participant.get("role") or ():
                for coding in role.get("coding") or ():
                    out.setdefault((coding.get("system", ""), coding.get("code", "")), []).append(member)
    return out


def _task(action: dict[str, Any], subject: str, requester, members, teams, started: datetime, n: int) -> dict[str, Any]:
    task: dict[str, Any] = {
        "resourceType": "Task", "id": f"task-{n + 1}", "meta": {"profile": [TASK_PROFILE]},
        "extension": [{"url": PROTOCOL_STEP, "valueString": action["id"]}],
        "status": "requested", "intent": "order", "for": {"reference": subject},
        "authoredOn": format_instant(started),
        "description": action.get("title") or action.get("description") or f"Action {action['id']}"}
    if action.get("code"):
        task["code"] = action["code"][0]
    owner = _owner(action, members, teams)
    if owner:
        task["owner"] = owner
    if requester:
        task["requester"] = requester
    due = _due(action, started)
    if due:
        task["restriction"] = {"period": {"start": format_instant(started), "end": format_instant(due)}}
    return task


def _owner(action: dict[str, Any], members, teams) -> dict[str, Any] | None:
    for participant in action.get("participant") or ():
        for coding in (participant.get("role") or {}).get("coding") or ():
            found = members.get((coding.get("system", ""), coding.get("code", "")))
            if found:
                return found[0]
    return {"reference": f"CareTeam/{teams[0]['id']}"} if teams else None


def _due(action: dict[str, Any], started: datetime) -> datetime | None:
    duration = action.get("timingDuration")
    if isinstance(duration, dict) and isinstance(duration.get("value"), (int, float)):
        unit = _UNITS.get(duration.get("code") or duration.get("unit") or "")
        if unit:
            return _after(started, unit, duration["value"])
    bounds = ((action.get("timingTiming") or {}).get("repeat") or {}).get("boundsDuration")
    if isinstance(bounds, dict) and isinstance(bounds.get("value"), (int, float)):
        unit = _UNITS.get(bounds.get("code") or bounds.get("unit") or "")
        if unit:
            return _after(started, unit, bounds["value"])
    return None


def _after(started: datetime, unit: timedelta, count: float) -> datetime:
    """`started` + `count` units, at the edge of time for a duration past it (`1e300 d` is valid FHIR)."""
    try:
        return started + unit * float(count)
    except OverflowError:
        return LATEST if count > 0 else EARLIEST


def _goal(goal: dict[str, Any], subject: str, n: int) -> dict[str, Any]:
    out: dict[str, Any] = {"resourceType": "Goal", "id": f"goal-{n + 1}", "lifecycleStatus": "active",
                           "description": goal.get("description") or {"text": f"Goal {n + 1}"},
                           "subject": {"reference": subject}}
    for key in ("category", "priority", "addresses"):
        if goal.get(key):
            out[key] = goal[key]
    return out


def _store(server: FhirServer, req: FhirRequest, careplan, tasks, goals) -> FhirResponse:
    """One transaction: the CarePlan, its Tasks (basedOn it) and Goals, linked by urn:uuid."""
    ids = {f"#{r['id']}": f"urn:uuid:{uuid.uuid4()}" for r in tasks + goals}
    plan_url = f"urn:uuid:{uuid.uuid4()}"
    entries = []
    for resource in goals + tasks:
        body = {k: v for k, v in resource.items() if k != "id"}
        if resource["resourceType"] == "Task":
            body["basedOn"] = [{"reference": plan_url}]
        entries.append({"fullUrl": ids[f"#{resource['id']}"], "resource": body,
                        "request": {"method": "POST", "url": resource["resourceType"]}})
    plan = jsonio.loads(jsonio.dumps(careplan))
    for item in plan.get("goal") or ():
        item["reference"] = ids[item["reference"]]
    for activity in plan.get("activity") or ():
        activity["reference"]["reference"] = ids[activity["reference"]["reference"]]
    entries.insert(0, {"fullUrl": plan_url, "resource": plan, "request": {"method": "POST", "url": "CarePlan"}})
    transaction = FhirRequest("POST", req.base_url, shape="system", prefer_return="minimal", request_id=req.request_id,
                              identity=req.identity,
                              body={"resourceType": "Bundle", "type": "transaction", "entry": entries})
    result = server.dispatch(transaction)
    location = result.body["entry"][0]["response"]["location"]
    stored = server.store.read("CarePlan", location.split("/")[1])
    return versioned_response(req, stored, 201, location=True)
