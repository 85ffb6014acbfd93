"""Who in a patient's care team takes which action of a protocol (`$apply`), read at one instant.

Only CareTeams that are active and within their period count, and in them only memberships
whose `participant.period` covers now — the équipe de soins as `interactions/care_circle.py`
reads it (same periods, partial dates covering their whole extent). A member is judged on its
qualifications: the team role of the membership, and the `code` and `specialty` of the
PractitionerRole behind it (a Practitioner member: their current roles; an Organization
member: the current roles in that organization, as the équipe de soins rule counts them).

An action's participant role is matched exactly: every code system the role names (the guide's
coordination roles, TRE_G15 professions, a TRE_R38 specialty…) must be held by the member with
one of the codes the action gives in that system. A cardiology opinion (`specialist`, G15 `10`,
R38 `SM04`) therefore never goes to the médecin traitant (`gp`, `10`, `SM54`). An action nobody
qualifies for has no owner: the caller is told, and nothing is given to another profession.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fhir_server.interactions.care_circle import covers

Codes = frozenset[tuple[str, str]]  # (system, code)
RolesOf = Callable[[str], list[dict[str, Any]]]  # a member reference → its current PractitionerRoles


@dataclass(frozen=True)
class Candidate:
    """One way a team member can take actions: who would own the task, and what they hold."""

    owner: str  # `PractitionerRole/r` (or the Organization member that has several qualified roles)
    qualifications: Codes
    member: str  # the team member it comes through


def active_teams(teams: Iterable[dict[str, Any]], now: datetime) -> list[dict[str, Any]]:
    """The CareTeams that hold now: status active and their period covering now."""
    return [t for t in teams if t.get("status") == "active" and covers(t.get("period"), now)]


def current_role(role: dict[str, Any], now: datetime) -> bool:
    """A PractitionerRole in force now (not inactive, its period covering now)."""
    return role.get("active") is not False and covers(role.get("period"), now)


def candidates(teams: list[dict[str, Any]], roles_of: RolesOf, now: datetime) -> list[Candidate]:
    """Every current membership of the teams, in team order, as the PractitionerRoles behind it."""
    found: list[Candidate] = []
    for team in teams:
        for participant in team.get("participant") or ():
            member = _reference(participant.get("member")) if isinstance(participant, dict) else None
            if member is None or not covers(participant.get("period"), now):
                continue
            team_role = _codes(participant.get("role") or ())
            for role in roles_of(member):
                found.append(Candidate(f"PractitionerRole/{role['id']}", team_role | _role_codes(role), member))
    return found


def owner(action: dict[str, Any], people: list[Candidate]) -> str | None:
    """Who takes `action`: the first member qualified for it, a member in person before a member
    organization; an organization with several qualified roles takes it as a whole. None when
    nobody is qualified, or the action names no role (nothing to match exactly)."""
    wanted = [_by_system(_codes([p.get("role")])) for p in action.get("participant") or () if isinstance(p, dict)]
    wanted = [w for w in wanted if w]
    if not wanted:
        return None
    able = [c for c in people if any(_qualified(c.qualifications, w) for w in wanted)]
    direct = [c for c in able if not c.member.startswith("Organization/")]
    if direct:
        return direct[0].owner
    if not able:
        return None
    first = able[0].member
    through = {c.owner for c in able if c.member == first}
    return next(iter(through)) if len(through) == 1 else first


def wanted_role(action: dict[str, Any]) -> str:
    """The roles an action asks for, for a message: `system|code` joined."""
    codes = _codes([p.get("role") for p in action.get("participant") or () if isinstance(p, dict)])
    return ", ".join(f"{s.rsplit('/', 1)[-1]}|{c}" for s, c in sorted(codes)) or "no role"


def _qualified(held: Codes, wanted: dict[str, set[str]]) -> bool:
    return all(any((system, code) in held for code in codes) for system, codes in wanted.items())


def _by_system(codes: Codes) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for system, code in codes:
        out.setdefault(system, set()).add(code)
    return out


def _role_codes(role: dict[str, Any]) -> Codes:
    return _codes([*(role.get("code") or ()), *(role.get("specialty") or ())])


def _codes(concepts: Iterable[Any]) -> Codes:
    return frozenset((c["system"], c["code"]) for cc in concepts if isinstance(cc, dict)
                     for c in cc.get("coding") or ()
                     if isinstance(c, dict) and isinstance(c.get("system"), str) and isinstance(c.get("code"), str))


def _reference(value: Any) -> str | None:
    ref = value.get("reference") if isinstance(value, dict) else None
    return ref if isinstance(ref, str) and ref.count("/") == 1 else None
