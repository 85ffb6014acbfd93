"""Whom a professional cares for, read from the resources that say it, at one instant.

The équipe de soins rule (docs/SECURITY.md) in pure functions over parsed JSON: who the user
acts as (their PractitionerRoles and the Organizations those roles are in, coordinator roles
apart), which patients their active CareTeam memberships and their médecin traitant roles give
them, and which patients' active Consents deny them. Nothing here reads the database:
`interactions/care_team.py` fetches the resources, caches the circle and turns it into search
terms. Every result also says until when it holds (the next period start or end), so that a
cached circle is dropped when a membership, a role or a consent begins or ends.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fhir_server.search.dates import DateError
from fhir_server.search.dates import period as date_range

ROLE_SYSTEM = "https://fhir-server.dev/ig/coordination/CodeSystem/coord-cs-participant-role"
COORDINATOR = "coordinator"
CONSENT_SCOPE = ("http://terminology.hl7.org/CodeSystem/consentscope", "patient-privacy")


@dataclass(frozen=True)
class Acting:
    """Who the user is on this server: references through which they take part in care."""

    practitioner: str | None  # `Practitioner/x`
    clinical: frozenset[str]  # the practitioner, their non-coordinator roles and those roles' organizations
    coordinating: frozenset[str]  # their coordinator roles and those roles' organizations
    named: frozenset[str]  # what a resource names when it names the user: the practitioner and every role

    @property
    def everyone(self) -> frozenset[str]:
        return self.clinical | self.coordinating


@dataclass(frozen=True)
class Circle:
    """What the rule gives one user at one instant."""

    acting: Acting
    patients: frozenset[str]  # ids: their whole record (care team, médecin traitant)
    coordinated: frozenset[str]  # ids: the coordination resources only (through a coordinator role)
    denied: frozenset[str]  # ids: an active Consent of the patient denies this user
    until: datetime | None  # when a period boundary passes and the circle must be read again

    @property
    def structures(self) -> frozenset[str]:
        """The organizations the user coordinates for (`Organization/o`)."""
        return frozenset(r for r in self.acting.coordinating if r.startswith("Organization/"))


# -- periods ------------------------------------------------------------------------------------

_NEVER = datetime.fromisoformat("9999-12-31T23:59:59+00:00")  # a start that cannot be read: not begun

def _bounds(period: Any) -> tuple[datetime | None, datetime | None]:
    """[start, end) of a FHIR Period; a partial date covers its whole extent (end 2025 = all of
    2025). A start or end that cannot be read is treated as absent only for an end: a
    membership whose start is unreadable has not begun."""
    if not isinstance(period, dict):
        return None, None
    start = end = None
    if isinstance(period.get("start"), str):
        try:
            start = date_range(period["start"])[0]
        except DateError:
            start = _NEVER
    if isinstance(period.get("end"), str):
        try:
            end = date_range(period["end"])[1]
        except DateError:
            end = None
    return start, end


def covers(period: Any, now: datetime) -> bool:
    """Whether a Period (or its absence: always) includes `now`."""
    start, end = _bounds(period)
    return (start is None or start <= now) and (end is None or now < end)


def next_boundary(periods: Iterable[Any], now: datetime) -> datetime | None:
    """The earliest start or end after `now` among the periods (None: none comes)."""
    found = [b for p in periods for b in _bounds(p) if b is not None and now < b < _NEVER]
    return min(found) if found else None


def _earliest(*moments: datetime | None) -> datetime | None:
    found = [m for m in moments if m is not None]
    return min(found) if found else None


# -- who the user is ------------------------------------------------------------------------------

def _reference(value: Any) -> str | None:
    ref = value.get("reference") if isinstance(value, dict) else None
    return ref if isinstance(ref, str) and ref.count("/") == 1 else None


def is_coordinator(role: dict[str, Any]) -> bool:
    return any(c.get("system") == ROLE_SYSTEM and c.get("code") == COORDINATOR
               for cc in role.get("code") or () if isinstance(cc, dict)
               for c in cc.get("coding") or () if isinstance(c, dict))


def acting(practitioner: str | None, roles: list[dict[str, Any]], now: datetime) -> tuple[Acting, list[Any]]:
    """Who a user is through their roles (active, and within their period now), and the periods
    of all their roles (for the circle's `until`)."""
    clinical: set[str] = {practitioner} if practitioner else set()
    coordinating: set[str] = set()
    named: set[str] = set(clinical)
    periods = []
    for role in roles:
        periods.append(role.get("period"))
        if role.get("active") is False or not covers(role.get("period"), now):
            continue
        ref = f"PractitionerRole/{role.get('id')}"
        named.add(ref)
        side = coordinating if is_coordinator(role) else clinical
        side.add(ref)
        organization = _reference(role.get("organization"))
        if organization and organization.startswith("Organization/"):
            side.add(organization)
    coordinating -= clinical  # an organization reached by a clinical role is reached clinically
    return Acting(practitioner, frozenset(clinical), frozenset(coordinating), frozenset(named)), periods


# -- what the user is given ------------------------------------------------------------------------

def team_patients(teams: Iterable[dict[str, Any]], who: Acting, now: datetime
                  ) -> tuple[set[str], set[str], datetime | None]:
    """(patients through clinical memberships, through coordinator memberships or the teams of a
    structure the user coordinates, next boundary) of the CareTeams: active, their own period
    and the member's `participant.period` covering now."""
    clinical: set[str] = set()
    coordinated: set[str] = set()
    periods: list[Any] = []
    structures = {r for r in who.coordinating if r.startswith("Organization/")}
    for team in teams:
        patient = _reference(team.get("subject"))
        if team.get("status") != "active" or not patient or not patient.startswith("Patient/"):
            continue
        patient_id = patient.split("/", 1)[1]
        periods.append(team.get("period"))
        if not covers(team.get("period"), now):
            continue
        if structures & _team_structures(team):
            coordinated.add(patient_id)
        for participant in team.get("participant") or ():
            if not isinstance(participant, dict):
                continue
            member = _reference(participant.get("member"))
            if member not in who.everyone:
                continue
            periods.append(participant.get("period"))
            if not covers(participant.get("period"), now):
                continue
            if member in who.clinical and not _coordinator_membership(participant):
                clinical.add(patient_id)
            else:
                coordinated.add(patient_id)
    return clinical, coordinated - clinical, next_boundary(periods, now)


def current_members(team: dict[str, Any], now: datetime) -> set[str]:
    """The members of an active CareTeam whose membership covers now (a message to the team is
    for each of them)."""
    if team.get("status") != "active" or not covers(team.get("period"), now):
        return set()
    return {member for p in team.get("participant") or () if isinstance(p, dict)
            and (member := _reference(p.get("member"))) and covers(p.get("period"), now)}


def _team_structures(team: dict[str, Any]) -> set[str]:
    """The structures that run a team: `managingOrganization` and the coordination guide's
    structure extension."""
    found = {_reference(o) for o in team.get("managingOrganization") or ()}
    for extension in team.get("extension") or ():
        if isinstance(extension, dict) and str(extension.get("url", "")).endswith("/coord-ext-structure"):
            found.add(_reference(extension.get("valueReference")))
    return {r for r in found if r}


def _coordinator_membership(participant: dict[str, Any]) -> bool:
    """A participant whose team role is coordinator takes part as a coordinator, whoever it is."""
    return is_coordinator({"code": participant.get("role") or ()})


def gp_patients(patients: Iterable[dict[str, Any]], who: Acting) -> set[str]:
    """The patients whose `generalPractitioner` is the user or one of their clinical roles."""
    mine = {r for r in who.clinical if not r.startswith("Organization/")}
    return {p["id"] for p in patients
            if isinstance(p.get("id"), str) and any(_reference(g) in mine for g in p.get("generalPractitioner") or ())}


@dataclass(frozen=True)
class Denial:
    """One deny provision of an active patient-privacy Consent."""

    patient: str  # id
    actors: frozenset[str] | None  # references it names (None: no actor, all sharing)
    period: Any  # the provision's period (None: always)


def denials(consent: dict[str, Any]) -> list[Denial]:
    """The deny provisions of a Consent (root and nested) if it is an active patient-privacy
    consent of a patient. A provision narrowed by data class, code, purpose or action is applied
    to the whole record: this server does not label data that finely, and refusing too much is
    the safe side of a patient's objection."""
    patient = _reference(consent.get("patient"))
    if consent.get("status") != "active" or not patient or not patient.startswith("Patient/"):
        return []
    if not _has_coding(consent.get("scope"), CONSENT_SCOPE):
        return []
    found: list[Denial] = []

    def walk(provision: Any, inherited: str | None) -> None:
        if not isinstance(provision, dict):
            return
        kind = provision.get("type") or inherited
        if kind == "deny":
            actors = [_reference(a.get("reference")) for a in provision.get("actor") or () if isinstance(a, dict)]
            named = frozenset(a for a in actors if a)
            found.append(Denial(patient.split("/", 1)[1], named if actors else None, provision.get("period")))
        for inner in provision.get("provision") or ():
            walk(inner, None)

    walk(consent.get("provision"), None)
    return found


def _has_coding(concept: Any, wanted: tuple[str, str]) -> bool:
    return isinstance(concept, dict) and any(
        isinstance(c, dict) and (c.get("system"), c.get("code")) == wanted for c in concept.get("coding") or ())


def denied(all_denials: Iterable[Denial], who: Acting, now: datetime) -> tuple[set[str], datetime | None]:
    """(patients whose consent denies the user now, next boundary of a denial naming them)."""
    out: set[str] = set()
    periods = []
    for denial in all_denials:
        if denial.actors is not None and not denial.actors & who.everyone:
            continue
        periods.append(denial.period)
        if covers(denial.period, now):
            out.add(denial.patient)
    return out, next_boundary(periods, now)


def circle(who: Acting, role_periods: list[Any], teams: Iterable[dict[str, Any]],
           patients: Iterable[dict[str, Any]], all_denials: Iterable[Denial], now: datetime) -> Circle:
    """The circle of a user from their roles, the CareTeams naming them (or run by a structure
    they coordinate), the Patients naming them as médecin traitant and every Consent denial."""
    clinical, coordinated, team_until = team_patients(teams, who, now)
    clinical |= gp_patients(patients, who)
    refused, consent_until = denied(all_denials, who, now)
    until = _earliest(team_until, consent_until, next_boundary(role_periods, now))
    return Circle(who, frozenset(clinical), frozenset(coordinated - clinical), frozenset(refused), until)
