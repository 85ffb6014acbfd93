"""The équipe de soins rule as search terms: what a professional's `user/` token reaches.

A user acting for a Practitioner (or one of their PractitionerRoles) sees a patient's record
when they are in the patient's care team or are the médecin traitant, sees a resource that
names them whatever its patient, and sees nothing of a patient whose Consent denies them
(docs/SECURITY.md has the table; `care_circle.py` evaluates it). Per resource type this module
turns the user's circle into one term that `access.reach` ANDs with every search, read and
write of the request, like the scopes' terms.

The circle takes a few indexed queries; it is cached per user until a CareTeam, Consent,
PractitionerRole or Patient is written or a period it depends on starts or ends. Every such
write bumps a counter in the database once committed, and each request reads that counter (one
read by id) before trusting its worker's cache: a change holds from the next request on, on
every worker.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from fhir_server import jsonio
from fhir_server.errors import FhirError
from fhir_server.interactions.care_circle import Acting, Circle, Denial, acting, circle, denials, is_coordinator
from fhir_server.search.compartments import linking_params, named
from fhir_server.search.execute import find
from fhir_server.search.params.token import keys_term
from fhir_server.search.reach import EVERYTHING, NOTHING
from fhir_server.search.terms import EXACT, KEYS, SCAN, Candidate, Term, ids_term, values
from fhir_server.storage.store import Version, now

if TYPE_CHECKING:
    from fhir_server.server import FhirServer

log = logging.getLogger(__name__)

# Writes to these change someone's circle: cached circles are dropped when one is committed.
CIRCLE_TYPES = ("CareTeam", "Consent", "PractitionerRole", "Patient")
# What a coordinator sees of the patients of the structures they coordinate: who the patient is,
# who cares for them, the plan, its tasks and appointments, and the consents collected — never
# clinical records (observations, documents, messages between professionals).
COORDINATION_TYPES = frozenset({"Patient", "CareTeam", "CarePlan", "Task", "Appointment", "Consent"})
# Writing these gives access: a user writes them only for patients they already reach (naming
# oneself in a patient's CareTeam must not open the patient's record).
GRANTING_TYPES = frozenset({"CareTeam", "Patient"})
# Types in the Patient compartment that are the structure's, not a record's, unless they name a
# patient: a professional's agenda (Schedule.actor a PractitionerRole, a Location…) is read by
# every member, so colleagues can book each other's slots; a Schedule of a patient stays theirs.
SHARED_UNLESS_PATIENT = frozenset({"Schedule"})
# The coordination guide's parameter naming the structure a coordination resource belongs to.
STRUCTURE_PARAM = "structure"
BREAK_THE_GLASS = "BTG"
_MAX_USERS = 10_000  # cached circles; past this the cache starts again
_MAX_AGE_S = 60.0  # a circle is read again after this long even if no write was counted
COUNTER = "circles"  # the database counter of writes that change circles (ResourceStore.bump)


def changes_circles(version: Version) -> bool:
    """Whether a committed version may change someone's circle: any CareTeam, Consent or
    PractitionerRole; a Patient unless it is new and names no médecin traitant (a bulk load of
    new patients leaves the cached circles alone)."""
    if version.type not in CIRCLE_TYPES:
        return False
    if version.type != "Patient":
        return True
    return version.version > 1 or version.json is None or b'"generalPractitioner"' in version.json


class Circles:
    """Per user, their circle while nothing it was read from has changed."""

    def __init__(self, server: FhirServer):
        self.server = server
        self._lock = threading.Lock()
        self._generation = -1  # the database counter the cached circles were read under
        self._circles: dict[str, tuple[float, Circle]] = {}  # user → (when read, circle)
        self._terms: dict[tuple, tuple[Circle, Term | None]] = {}  # built for that circle
        self._denials: list[Denial] | None = None

    # -- keeping in step with the data ----------------------------------------------------------
    def changed(self) -> None:
        """A write that changes circles was committed: count it, for every worker."""
        try:
            self.server.store.bump(COUNTER)
        except FhirError as exc:  # the write stands; this worker forgets, the others within _MAX_AGE_S
            log.warning("a change of care teams or consents could not be counted: %s", exc)
            self._forget(self._generation)

    def current(self) -> int:
        """The database counter (one read by id); a new value drops everything cached. A
        request reads it once (`access.reach`) and hands it to every `term` it asks for."""
        generation = self.server.store.counter(COUNTER)
        if generation != self._generation:
            self._forget(generation)
        return generation

    def _forget(self, generation: int) -> None:
        with self._lock:
            self._generation = generation
            self._circles.clear()
            self._terms.clear()
            self._denials = None

    # -- a user's circle -------------------------------------------------------------------------
    def of(self, user: str, generation: int | None = None) -> Circle:
        """The circle of `Practitioner/x` or `PractitionerRole/r` now (cached), under the
        database counter `generation` (read now when not given)."""
        generation = self.current() if generation is None else generation
        moment = now()
        hit = self._circles.get(user)
        if (hit is not None and time.monotonic() - hit[0] < _MAX_AGE_S
                and (hit[1].until is None or moment < hit[1].until)):
            return hit[1]
        found = self._read(user, moment)
        with self._lock:
            if self._generation == generation:
                if len(self._circles) >= _MAX_USERS:
                    self._circles.clear()
                    self._terms.clear()
                self._circles[user] = (time.monotonic(), found)
        return found

    def _read(self, user: str, moment) -> Circle:
        who, role_periods = self._acting(user, moment)
        teams = self._json("CareTeam", "participant", who.everyone)
        structures = {r for r in who.coordinating if r.startswith("Organization/")}
        if structures:
            teams += self._json("CareTeam", STRUCTURE_PARAM, structures)
        own = {r for r in who.clinical if not r.startswith("Organization/")}
        patients = self._json("Patient", "general-practitioner", own)
        return circle(who, role_periods, teams, patients, self._all_denials(), moment)

    def _acting(self, user: str, moment) -> tuple[Acting, list[Any]]:
        kind, _, id_ = user.partition("/")
        if kind == "Practitioner":
            return acting(user, self._json("PractitionerRole", "practitioner", {user}), moment)
        role = self.server.store.read("PractitionerRole", id_)
        if role is None or role.deleted or role.json is None:
            return Acting(None, frozenset(), frozenset(), frozenset()), []
        data = jsonio.loads(role.json)
        practitioner = (data.get("practitioner") or {}).get("reference")
        if not (isinstance(practitioner, str) and practitioner.startswith("Practitioner/")):
            practitioner = None
        who, periods = acting(None, [data], moment)
        if practitioner:  # acting through one role: the person counts on that role's side
            side = "coordinating" if is_coordinator(data) else "clinical"
            who = Acting(practitioner, who.clinical | ({practitioner} if side == "clinical" else set()),
                         who.coordinating | ({practitioner} if side == "coordinating" else set()),
                         who.named | {practitioner})
        return who, periods

    def _json(self, type_: str, code: str, refs: set[str] | frozenset[str]) -> list[dict[str, Any]]:
        if not refs:
            return []
        found = find(self.server, type_, [keys_term(code, set(refs))], reach=EVERYTHING, json=True)
        return [{**jsonio.loads(r.json), "id": r.id} for r in found if r.json]

    def _all_denials(self) -> list[Denial]:
        """Every deny provision of every active Consent, read once per change counted (consents
        are few next to the records they govern, and a denial without an actor concerns all)."""
        generation = self._generation
        cached = self._denials
        if cached is not None:
            return cached
        found = find(self.server, "Consent", [keys_term("status", {"active"})], reach=EVERYTHING, json=True)
        out = [d for r in found if r.json for d in denials(jsonio.loads(r.json))]
        with self._lock:
            if self._generation == generation:
                self._denials = out
        return out

    # -- terms -------------------------------------------------------------------------------------
    def term(self, user: str, type_: str, *, btg: bool, writing: bool, visible: Callable[[str], bool],
             generation: Callable[[], int], created: frozenset[str] = frozenset()) -> Term | None:
        """What `user` may see (or, `writing`, write) of a type, as a term (None: all of it).
        `visible(reference)`: whether the request sees a resource (Binary's security context);
        `generation()`: the database counter, read once per request; `created`: patients the
        request itself creates, whose records it may start."""
        if type_ == "Binary":
            return security_context_term(visible)
        links = linking_params(self.server, "Patient").get(type_)
        if not links and type_ != "Patient":
            return None
        found = self.of(user, generation())
        key = (user, type_, btg, writing)
        cached = self._terms.get(key)
        if cached is not None and cached[0] is found and not created:
            return cached[1]
        built = _term(self.server, found, type_, links or (), btg=btg, writing=writing, created=created)
        if not created:
            with self._lock:
                self._terms[key] = (found, built)
        return built


def _term(server: FhirServer, found: Circle, type_: str, links: tuple[str, ...], *, btg: bool,
          writing: bool, created: frozenset[str]) -> Term | None:
    denied = found.denied
    reached = found.patients | created | (found.coordinated if type_ in COORDINATION_TYPES else frozenset())
    allowed = reached - denied
    if type_ == "Patient" and btg:
        term = None if not denied else Term(None, [], lambda doc: doc.id not in denied, SCAN)
    elif type_ == "Patient":
        term = ids_term(set(allowed))
    else:
        term = _record_term(server, found, type_, links, allowed, btg=btg, writing=writing)
    if writing and type_ in GRANTING_TYPES:  # break-the-glass included: access it grants must not outlast it
        term = _no_self_promotion(server, found, type_, links, term or Term(None, [], lambda doc: True, SCAN),
                                  created)
    return term


def _record_term(server: FhirServer, found: Circle, type_: str, links: tuple[str, ...], allowed: frozenset[str],
                 *, btg: bool, writing: bool) -> Term | None:
    """The resources of the patients allowed, and those naming the user, of a type that names patients."""
    denied = found.denied
    naming = () if writing and type_ in GRANTING_TYPES else linking_params(server, "Practitioner").get(type_, ())
    me = found.acting.named
    structures = found.structures if type_ in COORDINATION_TYPES else frozenset()
    structure_param = STRUCTURE_PARAM if structures and server.search_parameters.get(type_, STRUCTURE_PARAM) else None

    def names_user(doc: Candidate) -> bool:
        if any(v in me for c in naming for v in values(doc, c)):
            return True
        return structure_param is not None and any(v in structures for v in values(doc, structure_param))

    def match(doc: Candidate) -> bool:
        patients = named(doc, links, "Patient")
        if patients & denied:
            return False
        if btg or (patients and patients <= allowed):
            return True
        return names_user(doc)

    if btg:
        return None if not denied else Term(None, [], match, SCAN)
    if type_ in SHARED_UNLESS_PATIENT and not writing:
        return Term(None, [], lambda doc: not named(doc, links, "Patient") or match(doc), SCAN)
    keys = [f"{c}=Patient/{p}" for c in links for p in sorted(allowed)]
    keys += [f"{c}={m}" for c in naming for m in sorted(me)]
    if structure_param:
        keys += [f"{structure_param}={s}" for s in sorted(structures)]
    return Term(KEYS, keys, match, EXACT) if keys else NOTHING


def _no_self_promotion(server: FhirServer, found: Circle, type_: str, links: tuple[str, ...], term: Term,
                       created: frozenset[str]) -> Term:
    """A coordinator manages the care teams of their structure's patients, but does not make
    themselves a clinical member or the médecin traitant of a patient whose record they do not
    reach: a CareTeam or Patient naming the user clinically is written only for patients they
    reach clinically already (or create in this request)."""
    clinical = found.acting.clinical
    codes = linking_params(server, "Practitioner").get(type_, ())
    whole = found.patients | created

    def match(doc: Candidate) -> bool:
        if not term.match(doc):
            return False
        patients = {doc.id} if type_ == "Patient" else named(doc, links, "Patient")
        promotes = any(v in clinical for c in codes for v in values(doc, c))
        return not promotes or patients <= whole

    return Term(term.field, term.conditions, match, term.rank)


def security_context_term(visible: Callable[[str], bool]) -> Term:
    """A Binary is seen with the resource its `securityContext` names (a DocumentReference, a
    Patient): not at all without one, since nothing then says whose data it holds."""

    def match(doc: Candidate) -> bool:
        contexts = [v for v in values(doc, "security-context") if isinstance(v, str)]
        return bool(contexts) and all(visible(ref) for ref in contexts)

    return Term(None, [], match, SCAN)


def is_care_team_user(identity) -> bool:
    """Whether the rule applies to a `user/` token: it acts for a Practitioner or a role."""
    user = identity.fhir_user or ""
    return user.startswith(("Practitioner/", "PractitionerRole/"))
