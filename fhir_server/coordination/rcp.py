"""The RCP (réunion de concertation pluriprofessionnelle) from planning to decision, as one unit
rule registered by `coordination/rules.py`, so that what follows a write commits with it:

- An RCP Appointment (serviceType `coord-cs-meeting-type#rcp`) lists the patients to discuss as
  participants whose actor is a Patient. Once it is `fulfilled` (held), the unit also creates the
  meeting's Encounter (no subject, `appointment` the RCP) and one Encounter per patient
  discussed, `partOf` the meeting (both `coord-rcp-encounter`). Each exists once: Encounters the
  unit writes itself or already stored for that meeting count, so holding it again or updating a
  held RCP creates nothing twice, and a patient added to a held RCP gets theirs.
- A decision (DocumentReference typed `coord-cs-document-type#rcp-report`, the compte rendu)
  names in `context.encounter` the RCP Encounter of its patient. Once written (`current`, not a
  `preliminary` draft), the unit tells
  the patient's active CareTeams: a `coord-message` Communication about the decision (once per
  decision).
- A follow-up Task names its decision in `reasonReference`: the decision is written and about the
  Task's patient, and `basedOn` names a CarePlan of that patient, to whose activities the unit
  adds the Task.

Whatever is read for a check is read within the caller's reach (a hidden resource is an absent
one); what the unit adds is checked against that reach by the server like any other write.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from fhir_server import jsonio
from fhir_server.errors import Issue
from fhir_server.interactions.access import reach
from fhir_server.interactions.rules import WriteRefused
from fhir_server.interactions.unit_of_work import UnitOfWork
from fhir_server.search.execute import find
from fhir_server.search.params.token import keys_term
from fhir_server.search.reach import EVERYTHING
from fhir_server.search.terms import Values
from fhir_server.storage.store import Write, format_instant, now

if TYPE_CHECKING:
    from fhir_server.interactions.request import FhirRequest
    from fhir_server.server import FhirServer

IG = "https://fhir-server.dev/ig/coordination"
MEETING_TYPE = (f"{IG}/CodeSystem/coord-cs-meeting-type", "rcp")
DECISION_TYPE = (f"{IG}/CodeSystem/coord-cs-document-type", "rcp-report")
MESSAGE_TOPIC = (f"{IG}/CodeSystem/coord-cs-message-topic", "rcp")
ENCOUNTER_PROFILE = f"{IG}/StructureDefinition/coord-rcp-encounter"
MESSAGE_PROFILE = f"{IG}/StructureDefinition/coord-message"
STRUCTURE_EXTENSION = f"{IG}/StructureDefinition/coord-ext-structure"
# The patient is not there: the professionals discuss their care, as in any outpatient meeting.
ENCOUNTER_CLASS = {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB",
                   "display": "ambulatory"}
TYPES = frozenset({"Appointment", "DocumentReference", "Task"})
_PROFESSIONALS = ("Practitioner", "PractitionerRole", "RelatedPerson")  # Encounter.participant.individual
_SENDERS = ("PractitionerRole", "Organization", "Patient", "RelatedPerson")  # coord-message sender
_CLOSED_PLANS = frozenset({"completed", "revoked", "entered-in-error"})


def register(rules) -> None:
    rules.register_unit(TYPES, check)


def check(server: FhirServer, req: FhirRequest, writes: list[Write], session: Any) -> list[Write]:
    unit = UnitOfWork(server, req, session, writes)
    added: list[Write] = []
    for write, appointment in unit.written("Appointment"):
        if _coded(appointment.get("serviceType"), MEETING_TYPE) and appointment.get("status") == "fulfilled":
            added += _hold(unit, write.id, appointment)
    for write, doc in unit.written("DocumentReference"):
        if _coded([doc.get("type")], DECISION_TYPE):
            added += _decision(unit, write, doc)
    return added + _follow_ups(unit)


# -- what these rules read of the unit of work ----------------------------------------------------

def _visible(unit: UnitOfWork, key: str | None, type_: str) -> dict[str, Any] | None:
    """The resource `key` names if it is a `type_` the caller may read, as it will be once the
    unit commits (None: absent, hidden or another type)."""
    return unit.visible(key) if key is not None and key.startswith(f"{type_}/") else None


def _naming(unit: UnitOfWork, type_: str, code: str, value: str) -> dict[str, dict[str, Any]]:
    """Stored resources whose reference parameter `code` is `value`, whoever may see them
    (the server's own bookkeeping: nothing of them reaches the caller), then those staged."""
    term = keys_term(code, {value})
    found = find(unit.server, type_, [term], reach=EVERYTHING, session=unit.session, json=True)
    out = {f"{type_}/{r.id}": jsonio.loads(r.json) for r in found if r.json}
    for key, write in unit.by_key.items():
        if write.type != type_:
            continue
        if write.index is not None and term.match(Values(write.id, write.index.values)):
            out[key] = unit.staged(key) or {}
        else:
            out.pop(key, None)  # deleted, or no longer naming `value`, by this unit
    return out


def _coded(concepts: Any, code: tuple[str, str]) -> bool:
    """Whether one of the CodeableConcepts holds the coding `code` (system, code)."""
    return any(isinstance(cc, dict) and any(isinstance(c, dict) and (c.get("system"), c.get("code")) == code
                                            for c in cc.get("coding") or ())
               for cc in concepts or ())


def _refused(source: str, where: str, text: str, code: str = "business-rule") -> WriteRefused:
    return WriteRefused(source, 422, Issue("error", code, text, [where]))


# -- holding the meeting ------------------------------------------------------------------------

def _hold(unit: UnitOfWork, id_: str, appointment: dict[str, Any]) -> list[Write]:
    """The Encounters a held RCP still lacks: the meeting's, and one per patient discussed."""
    source = f"Appointment/{id_}"
    actors = list(dict.fromkeys(k for p in appointment.get("participant") or () if isinstance(p, dict)
                                for k in [unit.key(p.get("actor"))] if k))
    if not any(a.startswith(("Practitioner/", "PractitionerRole/")) for a in actors):
        raise _refused(source, "Appointment.participant", (
            f"{source} is held (fulfilled) but names no professional among its participants: an RCP is held by "
            f"professionals; add them (actor Practitioner or PractitionerRole)"))
    shared = meeting_encounter(appointment, source, actors)
    known = _naming(unit, "Encounter", "appointment", source)
    meeting = next((k for k, e in known.items() if not e.get("subject") and not e.get("partOf")), None)
    added: list[Write] = []
    if meeting is None:
        write = unit.create({"resourceType": "Encounter", **shared})
        meeting = f"Encounter/{write.id}"
        added.append(write)
    known.update(_naming(unit, "Encounter", "part-of", meeting))
    discussed = {unit.key(e.get("subject")) for e in known.values()}
    for patient in (a for a in actors if a.startswith("Patient/") and a not in discussed):
        added.append(unit.create(patient_encounter(shared, patient, meeting)))
    return added


def meeting_encounter(appointment: dict[str, Any], source: str, actors: list[str]) -> dict[str, Any]:
    """The meeting's Encounter of the RCP `source` whose participants' actors are `actors`
    (`Type/id`), without its resourceType: what each patient's shares (public: the demo data
    writes the Encounters the server would)."""
    out: dict[str, Any] = {
        "meta": {"profile": [ENCOUNTER_PROFILE]},
        "status": "finished",
        "class": ENCOUNTER_CLASS,
        "type": [{"coding": [{"system": MEETING_TYPE[0], "code": MEETING_TYPE[1]}]}],
        "participant": [{"individual": {"reference": a}} for a in actors if a.split("/")[0] in _PROFESSIONALS],
        "appointment": [{"reference": source}],
    }
    period = {k: appointment[k] for k in ("start", "end") if isinstance(appointment.get(k), str)}
    if period:
        out["period"] = period
    locations = [{"location": {"reference": a}} for a in actors if a.startswith("Location/")]
    if locations:
        out["location"] = locations
    structure = next((e.get("valueReference") for e in appointment.get("extension") or ()
                      if isinstance(e, dict) and e.get("url") == STRUCTURE_EXTENSION), None)
    if isinstance(structure, dict) and structure.get("reference"):
        out["serviceProvider"] = {"reference": structure["reference"]}
    return out


def patient_encounter(shared: dict[str, Any], patient: str, meeting: str) -> dict[str, Any]:
    """The Encounter of one patient discussed, `partOf` the meeting's."""
    out: dict[str, Any] = {"resourceType": "Encounter"}
    for name, value in shared.items():
        out[name] = value
        if name == "type":
            out["subject"] = {"reference": patient}
    out["partOf"] = {"reference": meeting}
    return out


# -- the decision -----------------------------------------------------------------------------------

def _decision(unit: UnitOfWork, write: Write, doc: dict[str, Any]) -> list[Write]:
    """Check the decision's link to its patient's RCP Encounter; once current, tell the team."""
    source = f"DocumentReference/{write.id}"
    previous = unit.previous(write)
    linked = _linked_encounter(unit, source, doc, previous)
    if not _taken(doc) or (previous is not None and _taken(previous)):
        return []
    return _tell_team(unit, source, doc, linked)


def _taken(doc: dict[str, Any]) -> bool:
    """Whether the decision is written: the document current, and not a draft (docStatus)."""
    return doc.get("status") == "current" and doc.get("docStatus") not in ("preliminary", "entered-in-error")


def _linked_encounter(unit: UnitOfWork, source: str, doc: dict[str, Any], previous: dict[str, Any] | None) -> str:
    """The patient's RCP Encounter the decision names (checked when the link or patient change)."""
    where = "DocumentReference.context.encounter"
    named = (doc.get("context") or {}).get("encounter") or []
    if len(named) != 1:
        raise _refused(source, where, (
            f"an RCP decision (type rcp-report) names the RCP encounter of its patient, once, in {where}; it names "
            f"{len(named)}"), "required" if not named else "business-rule")
    key = unit.key(named[0])
    if previous is not None and (previous.get("context"), previous.get("subject")) == (doc.get("context"),
                                                                                       doc.get("subject")):
        return key or ""
    encounter = _visible(unit, key, "Encounter")
    if encounter is None:
        raise _refused(source, where, f"{where} names {named[0].get('reference')!r}, which is not a stored "
                                      f"Encounter", "not-found")
    if not _coded(encounter.get("type"), MEETING_TYPE):
        raise _refused(source, where, (
            f"{where} names {key}, which is not an RCP encounter (type coord-cs-meeting-type#rcp): a decision is "
            f"written for a patient discussed at a held RCP"))
    patient = unit.key(encounter.get("subject"))
    if patient is None:
        raise _refused(source, where, (
            f"{where} names {key}, the RCP meeting itself: name the encounter of the patient discussed (the one "
            f"partOf {key} whose subject is the patient)"))
    if unit.key(doc.get("subject")) != patient:
        raise _refused(source, "DocumentReference.subject", (
            f"the decision is about {unit.key(doc.get('subject')) or 'no patient'}, the RCP encounter {key} it "
            f"names about {patient}: a decision is about the patient discussed"))
    return key or ""


def _tell_team(unit: UnitOfWork, source: str, doc: dict[str, Any], encounter: str) -> list[Write]:
    """A message to the patient's active CareTeams the caller sees, unless one about this
    decision exists already (from this unit or stored)."""
    patient = unit.key(doc.get("subject")) or ""
    sent = _naming(unit, "Communication", "encounter", encounter)
    if any(any(unit.key(a) == source for a in message.get("about") or ()) for message in sent.values()):
        return []
    teams = find(unit.server, "CareTeam", [keys_term("subject", {patient}), keys_term("status", {"active"})],
                 reach=reach(unit.server, unit.req, "s"), session=unit.session)
    if not teams:
        return []
    recipients = [f"CareTeam/{t.id}" for t in sorted(teams, key=lambda t: t.id)]
    sender = _sender(unit, source, doc, encounter)
    return [unit.create(notice(doc, source, encounter, recipients, sender, format_instant(now())))]


def notice(decision: dict[str, Any], source: str, encounter: str, recipients: list[str], sender: str,
           sent: str) -> dict[str, Any]:
    """The message telling a patient's care teams of the decision `source` (public: the demo
    data writes the messages the server would)."""
    what = decision.get("description") or "voir le compte rendu"
    return {
        "resourceType": "Communication",
        "meta": {"profile": [MESSAGE_PROFILE]},
        "status": "completed",
        "category": [{"coding": [{"system": MESSAGE_TOPIC[0], "code": MESSAGE_TOPIC[1]}]}],
        "subject": decision.get("subject"),
        "about": [{"reference": source}],
        "encounter": {"reference": encounter},
        "sent": sent,
        "recipient": [{"reference": r} for r in recipients],
        "sender": {"reference": sender},
        "payload": [{"contentString": f"Décision de RCP : {what}"}, {"contentReference": {"reference": source}}],
    }


def _sender(unit: UnitOfWork, source: str, doc: dict[str, Any], encounter: str) -> str:
    """Who tells the team: the decision's author (a role, a structure), else the RCP's structure."""
    authors = [unit.key(a) or "" for a in doc.get("author") or ()]
    held_by = unit.key((_visible(unit, encounter, "Encounter") or {}).get("serviceProvider"))
    found = next((a for a in [*authors, held_by or ""] if a.split("/")[0] in _SENDERS), None)
    if found is None:
        raise _refused(source, "DocumentReference.author", (
            "the patient's care team is told of the decision by its author: name the author as a PractitionerRole "
            "(or an Organization) in DocumentReference.author, or hold the RCP in a structure (coord-ext-structure)"))
    return found


# -- follow-up tasks ---------------------------------------------------------------------------------

def _follow_ups(unit: UnitOfWork) -> list[Write]:
    """Check each new link of a Task to a decision, and add the Task to its CarePlan."""
    adding: dict[str, list[str]] = {}  # CarePlan key → the Tasks to add to its activities
    for write, task in unit.written("Task"):
        source = f"Task/{write.id}"
        decision_key = unit.key(task.get("reasonReference"))
        decision = _visible(unit, decision_key, "DocumentReference")
        if decision is None or not _coded([decision.get("type")], DECISION_TYPE):
            continue  # not a decision's follow-up (a reference to nothing is integrity's to refuse)
        previous = unit.previous(write) or {}
        if all(previous.get(k) == task.get(k) for k in ("reasonReference", "for", "basedOn")):
            continue  # checked when it was written
        patient = _follow_up_patient(unit, source, task, decision_key or "", decision)
        for plan in _plans(unit, source, task, patient):
            adding.setdefault(plan, []).append(source)
    return [w for plan, tasks in adding.items() for w in _link(unit, plan, tasks)]


def _follow_up_patient(unit: UnitOfWork, source: str, task: dict[str, Any], key: str, decision: dict[str, Any]) -> str:
    if not _taken(decision):
        state = decision.get("status") if decision.get("status") != "current" else decision.get("docStatus")
        raise _refused(source, "Task.reasonReference", (
            f"Task.reasonReference names {key}, an RCP decision that is {state}: follow-up tasks carry out a "
            f"written decision (status current, docStatus final)"))
    patient = unit.key(decision.get("subject")) or ""
    if unit.key(task.get("for")) != patient:
        raise _refused(source, "Task.for", (
            f"the task is for {unit.key(task.get('for')) or 'no patient'}, the decision {key} it follows up is "
            f"about {patient}: a follow-up task is for the patient of its decision"))
    return patient


def _plans(unit: UnitOfWork, source: str, task: dict[str, Any], patient: str) -> Iterable[str]:
    """The CarePlans of the patient the Task is based on (at least one)."""
    found = []
    for i, ref in enumerate(task.get("basedOn") or ()):
        key = unit.key(ref)
        if key is None or not key.startswith("CarePlan/"):
            continue
        where = f"Task.basedOn[{i}]"
        plan = _visible(unit, key, "CarePlan")
        if plan is None:
            raise _refused(source, where, f"{where} names {key}, which is not a stored CarePlan", "not-found")
        if unit.key(plan.get("subject")) != patient:
            raise _refused(source, where, (
                f"{where} names {key}, a care plan of {unit.key(plan.get('subject')) or 'no patient'}: a follow-up "
                f"task belongs to the care plan of {patient}"))
        if plan.get("status") in _CLOSED_PLANS:
            raise _refused(source, where, (
                f"{where} names {key}, which is {plan.get('status')}: follow-up tasks go to the patient's current "
                f"care plan"))
        found.append(key)
    if not found:
        raise _refused(source, "Task.basedOn", (
            f"a follow-up task of an RCP decision belongs to the care plan of {patient}: name it in Task.basedOn"),
            "required")
    return found


def _link(unit: UnitOfWork, plan_key: str, tasks: list[str]) -> list[Write]:
    """The CarePlan with the Tasks among its activities (nothing if they are already)."""
    plan = _visible(unit, plan_key, "CarePlan") or {}
    listed = {unit.key(a.get("reference")) for a in plan.get("activity") or () if isinstance(a, dict)}
    missing = [t for t in tasks if t not in listed]
    if not missing:
        return []
    if plan_key in unit.by_key:
        raise _refused(missing[0], "Task.basedOn", (
            f"this transaction also writes {plan_key} without {', '.join(missing)} among its activities: list "
            f"the follow-up tasks in CarePlan.activity.reference"))
    activity = [*(plan.get("activity") or ()), *({"reference": {"reference": t}} for t in missing)]
    return [unit.replace(plan_key, {**plan, "activity": activity})]
