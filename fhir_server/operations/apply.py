"""`PlanDefinition/[id]/$apply`: a pluriprofessional protocol made into one patient's care plan.

The answer is a CarePlan (profile coord-careplan) following the protocol: one Task (coord-task)
per action, nested actions included, owned by the member of the patient's care team qualified
for the action's role (`protocol_routing.py`: active teams, current memberships, profession and
specialty matched exactly), due when the action's timing says; one Goal per goal of the protocol.
An action nobody in the team is qualified for is a `draft` Task without owner whose
`statusReason` says why, and the CarePlan's `note` says the same: it waits for someone to be
assigned and is never given to another profession.

The author of the plan and requester of its tasks is a PractitionerRole: the `practitioner`
parameter, else the caller (the token's fhirUser); a Practitioner stands for their one current
role (the one in the patient's team when they have several). A user names only themselves or
one of their roles. Without either (open mode, no token) the answer is 400: the plan needs an
author.

Without `store`, Tasks and Goals are contained in the CarePlan (nothing is written). With
`store=true` — this server's documented option — everything is created in one transaction and
the stored CarePlan is answered (201, Location), its Tasks and Goals as separate resources;
`Prefer: return=OperationOutcome` answers the outcome instead, with a warning per unassigned
action. A patient who already follows the protocol (a plan in force from it) is refused with 409
naming that plan, unless `mode=new` asks for another one (`protocol_plans.py`).

Parameters (R4 OperationDefinition PlanDefinition-apply): `subject` (required, `Patient/[id]`),
`encounter`, `practitioner` (PractitionerRole or Practitioner), `organization` (the structure,
as the coord-ext-structure extension); this server's `store` and `mode` (`new`).
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
from fhir_server.operations import protocol_plans
from fhir_server.operations.protocol_routing import (
    Candidate,
    active_teams,
    candidates,
    current_role,
    owner,
    wanted_role,
)
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
PARAMETERS = ("subject", "encounter", "practitioner", "organization", "store", "mode")
_UNITS = {"min": timedelta(minutes=1), "h": timedelta(hours=1), "d": timedelta(days=1), "wk": timedelta(weeks=1),
          "mo": timedelta(days=30), "a": timedelta(days=365)}


class Context:
    """What one `$apply` reads, within the caller's reach, at one instant."""

    def __init__(self, server: FhirServer, req: FhirRequest):
        self.server = server
        self.req = req
        self.readable = reach(server, req, "r")
        self.searchable = reach(server, req, "s")
        self.moment = now()

    def read(self, reference: str, expected: tuple[str, ...]) -> dict[str, Any] | None:
        """The resource `Type/id` if it is live and within reach (a hidden one is absent)."""
        local = local_type(reference)
        if local is None or local[0] not in expected:
            return None
        found = self.server.store.read(local[0], local[1], values=True)
        if found is None or found.deleted or found.json is None or not sees(self.server, self.readable, found):
            return None
        return jsonio.loads(found.json)

    def search(self, type_: str, param: str, reference: str) -> list[dict[str, Any]]:
        return [jsonio.loads(r.json) for r in find(self.server, type_, [keys_term(param, {reference})],
                                                   reach=self.searchable, json=True)]

    def roles_of(self, member: str) -> list[dict[str, Any]]:
        """The current PractitionerRoles a team member stands for (none for a relative, a patient)."""
        kind = member.split("/", 1)[0]
        if kind == "PractitionerRole":
            role = self.read(member, ("PractitionerRole",))
            found = [role] if role else []
        elif kind in ("Practitioner", "Organization"):
            found = self.search("PractitionerRole", kind.lower(), member)
        else:
            found = []
        return sorted((r for r in found if current_role(r, self.moment)), key=lambda r: r["id"])


def apply(server: FhirServer, req: FhirRequest) -> FhirResponse:
    args = _arguments(req)
    if args.get("store") in ("true", True) and req.method != "POST":
        raise bad_request("store=true writes the care plan: send $apply with POST", code="not-supported")
    ctx = Context(server, req)
    plan = jsonio.loads(current(server, "PlanDefinition", req.id, ctx.readable).json)
    if plan.get("status") == "retired":
        raise FhirError(422, Issue("error", "business-rule", f"PlanDefinition/{req.id} is retired: it is not applied"))
    subject = _subject(ctx, args)
    if args.get("mode") not in (None, "new"):
        raise bad_request(f"mode {args['mode']!r} is not known: mode=new applies the protocol again to a patient "
                          f"who already follows it", code="value")
    protocol = plan.get("url") or f"PlanDefinition/{req.id}"
    if args.get("mode") != "new":
        protocol_plans.refuse_if_following(server, ctx.searchable, subject, protocol)
    teams = active_teams(ctx.search("CareTeam", "subject", subject), ctx.moment)
    if not teams:
        raise FhirError(422, Issue("error", "business-rule", f"{subject} has no active CareTeam: the protocol's "
                                   f"actions are given to the members of the patient's care team; create one (or "
                                   f"bring one back to status active) first", ["CareTeam.status"]))
    people = candidates(teams, ctx.roles_of, ctx.moment)
    author = _author(ctx, args.get("practitioner"), people)
    versioned = protocol + (f"|{plan['version']}" if plan.get("url") and plan.get("version") else "")
    careplan, tasks, goals = _careplan(plan, versioned, subject, author, args, teams, people, ctx.moment)
    if args.get("store") not in ("true", True):
        careplan["contained"] = goals + tasks
        return FhirResponse(200, careplan)
    return _store(ctx, careplan, tasks, goals, args.get("mode") != "new")


def _arguments(req: FhirRequest) -> dict[str, Any]:
    args: dict[str, Any] = {k: v for k, v in req.params if k in PARAMETERS}
    body = req.body
    if isinstance(body, dict) and body.get("resourceType") == "Parameters":
        for p in body.get("parameter") or ():
            value = next((v for k, v in p.items() if k.startswith("value")), None)
            if isinstance(value, dict):  # valueReference
                value = value.get("reference")
            if p.get("name") in PARAMETERS:
                args[p["name"]] = value
    return args


def _subject(ctx: Context, args: dict[str, Any]) -> str:
    subject = args.get("subject")
    if not subject:
        raise bad_request("$apply needs subject=Patient/[id]", code="required")
    local = local_type(subject) if isinstance(subject, str) else None
    if local is None or local[0] != "Patient":
        raise bad_request(f"subject {subject!r} is not Patient/[id]", code="value")
    if ctx.read(subject, ("Patient",)) is None:
        raise FhirError(404, Issue("error", "not-found", f"{subject} does not exist"))
    return subject


# -- the author ----------------------------------------------------------------------------------

def _author(ctx: Context, named: Any, people: list[Candidate]) -> str:
    """The PractitionerRole that authors the plan: `practitioner`, else the caller."""
    user = ctx.req.identity.fhir_user if ctx.req.identity else None
    if named is None and not (user and user.split("/", 1)[0] in ("Practitioner", "PractitionerRole")):
        raise bad_request("$apply needs practitioner=PractitionerRole/[id] (or Practitioner/[id]): the author of the "
                          "care plan and requester of its tasks, when the request names no user", code="required")
    reference = named if named is not None else user
    if not isinstance(reference, str) or local_type(reference) is None or \
            reference.split("/", 1)[0] not in ("Practitioner", "PractitionerRole"):
        raise bad_request(f"practitioner {reference!r} is not PractitionerRole/[id] or Practitioner/[id]", code="value")
    role = _role_for(ctx, reference, people)
    if user and named is not None and user not in (f"PractitionerRole/{role['id']}",
                                                   (role.get("practitioner") or {}).get("reference")):
        raise FhirError(403, Issue("error", "forbidden", f"practitioner {named} is not you ({user}): a plan is "
                                   f"authored by the user who applies it", ["practitioner"]))
    return f"PractitionerRole/{role['id']}"


def _role_for(ctx: Context, reference: str, people: list[Candidate]) -> dict[str, Any]:
    """The current PractitionerRole `reference` stands for (itself, or a Practitioner's one role,
    or their role in the patient's team)."""
    roles = ctx.roles_of(reference)
    if reference.startswith("PractitionerRole/"):
        if not roles:
            raise FhirError(422, Issue("error", "not-found", f"practitioner {reference} does not exist or is not in "
                                       f"force now (active, within its period)", ["practitioner"]))
        return roles[0]
    in_team = {c.owner for c in people}
    chosen = [r for r in roles if f"PractitionerRole/{r['id']}" in in_team] or roles
    if len(chosen) != 1:
        listed = ", ".join(f"PractitionerRole/{r['id']}" for r in chosen) or "none"
        raise FhirError(422, Issue("error", "business-rule", f"{reference} has {len(chosen)} current roles "
                                   f"({listed}): name the one that authors the plan with "
                                   f"practitioner=PractitionerRole/[id]", ["practitioner"]))
    return chosen[0]


# -- the plan ------------------------------------------------------------------------------------

def _careplan(plan: dict[str, Any], canonical: str, subject: str, author: str, args: dict[str, Any],
              teams: list[dict[str, Any]], people: list[Candidate], started: datetime):
    goals = [_goal(goal, subject, i) for i, goal in enumerate(plan.get("goal") or ())]
    tasks = [_task(action, subject, author, people, started, n)
             for n, action in enumerate(_actions(plan.get("action") or ()))]
    careplan: dict[str, Any] = {
        "resourceType": "CarePlan", "meta": {"profile": [CAREPLAN_PROFILE]},
        "status": "active", "intent": "plan", "category": [CATEGORY], "instantiatesCanonical": [canonical],
        "title": plan.get("title") or plan.get("name"), "subject": {"reference": subject},
        "period": {"start": format_instant(started)}, "created": format_instant(started),
        "author": {"reference": author}, "careTeam": [{"reference": f"CareTeam/{t['id']}"} for t in teams]}
    if not careplan["title"]:
        del careplan["title"]
    if args.get("organization"):
        careplan["extension"] = [{"url": STRUCTURE, "valueReference": {"reference": args["organization"]}}]
    if args.get("encounter"):
        careplan["encounter"] = {"reference": args["encounter"]}
    if goals:
        careplan["goal"] = [{"reference": f"#{g['id']}"} for g in goals]
    if tasks:
        careplan["activity"] = [{"reference": {"reference": f"#{t['id']}", "display": t.get("description")}}
                                for t in tasks]
    notes = [{"text": t["statusReason"]["text"]} for t in tasks if "owner" not in t]
    if notes:
        careplan["note"] = notes
    return careplan, tasks, goals


def _actions(actions, prefix: str = ""):
    """Every action of the protocol, nested ones after their parent."""
    for i, action in enumerate(actions):
        key = action.get("id") or f"{prefix}{i + 1}"
        yield {**action, "id": key}
        yield from _actions(action.get("action") or (), f"{key}.")


def _task(action: dict[str, Any], subject: str, author: str, people: list[Candidate], started: datetime,
          n: int) -> dict[str, Any]:
    description = action.get("title") or action.get("description") or f"Action {action['id']}"
    task: dict[str, Any] = {
        "resourceType": "Task", "id": f"task-{n + 1}", "meta": {"profile": [TASK_PROFILE]},
        "extension": [{"url": PROTOCOL_STEP, "valueString": action["id"]}],
        "status": "requested", "intent": "order", "for": {"reference": subject},
        "authoredOn": format_instant(started), "description": description, "requester": {"reference": author}}
    if action.get("code"):
        task["code"] = action["code"][0]
    taker = owner(action, people)
    if taker:
        task["owner"] = {"reference": taker}
    else:
        task["status"] = "draft"
        task["statusReason"] = {"text": f"Unassigned: no current member of the care team holds the role of "
                                        f"action {action['id']} ({description}: {wanted_role(action)}); "
                                        f"assign it to someone qualified"}
    due = _due(action, started)
    if due:
        task["restriction"] = {"period": {"start": format_instant(started), "end": format_instant(due)}}
    return task


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


# -- storing -------------------------------------------------------------------------------------

def _store(ctx: Context, careplan, tasks, goals, once: bool) -> FhirResponse:
    """One transaction: the CarePlan, its Tasks (basedOn it) and Goals, linked by urn:uuid; when
    `once`, checked inside it against a plan in force from the same protocol."""
    req = ctx.req
    transaction = FhirRequest("POST", req.base_url, shape="system", prefer_return="minimal", request_id=req.request_id,
                              identity=req.identity, operation=protocol_plans.OPERATION if once else None,
                              body={"resourceType": "Bundle", "type": "transaction",
                                    "entry": _entries(careplan, tasks, goals)})
    try:
        result = ctx.server.dispatch(transaction)
    except FhirError as exc:
        if exc.status == 409 and once:  # a concurrent apply won: name its plan plainly
            protocol = careplan["instantiatesCanonical"][0].split("|", 1)[0]
            protocol_plans.refuse_if_following(ctx.server, ctx.searchable, careplan["subject"]["reference"], protocol)
        raise
    location = result.body["entry"][0]["response"]["location"]
    stored = ctx.server.store.read("CarePlan", location.split("/")[1])
    response = versioned_response(req, stored, 201, location=True)
    if req.prefer_return == "OperationOutcome":
        response.body["issue"] += [Issue("warning", "incomplete", t["statusReason"]["text"], ["Task.owner"]).to_json()
                                   for t in tasks if "owner" not in t]
    return response


def _entries(careplan, tasks, goals) -> list[dict[str, Any]]:
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
    return entries
