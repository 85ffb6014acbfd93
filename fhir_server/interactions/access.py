"""What the request's scopes allow, in two steps.

- Per type, where the interaction knows its types: the router checks the type of a typed
  interaction (403); searches and histories over several types keep the types allowed and say
  which were left out.
- Per resource, the request's *reach* (`search/reach.py`): `patient/` scopes see only the
  record of the token's patient, granular scopes (`?category=…`) only what their query
  matches, a professional's `user/` scopes the records of the patients whose care team they
  are in (the équipe de soins rule, `care_team.py`). Every read, search, include, chain,
  history and condition of the request runs within it, so a resource out of reach is absent
  (404, never in a Bundle); a write whose resource is or would be out of reach is refused (403).
"""

from __future__ import annotations

import functools
import hashlib
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from fhir_server import jsonio
from fhir_server.errors import FhirError, Issue
from fhir_server.interactions.care_team import BREAK_THE_GLASS, is_care_team_user, security_context_term
from fhir_server.interactions.request import FhirRequest
from fhir_server.search.compartments import linking_params, only_in
from fhir_server.search.execute import find
from fhir_server.search.index import index_values
from fhir_server.search.params.token import keys_term
from fhir_server.search.query import Context, build_terms
from fhir_server.search.reach import EVERYTHING, NOTHING, Reach, any_of
from fhir_server.search.terms import Term, Values, ids_term
from fhir_server.security.identity import Identity
from fhir_server.security.scopes import Scope
from fhir_server.storage.store import Version, Write

if TYPE_CHECKING:
    from fhir_server.server import FhirServer

log = logging.getLogger(__name__)

_DOING = {"c": "create", "r": "read", "u": "update", "d": "delete", "s": "search"}
# Types whose resources, once written, no one may change or delete through the API, whatever
# the scopes: the audit trail.
IMMUTABLE = frozenset({"AuditEvent"})


def authorize(req: FhirRequest, type_: str | None, letter: str) -> None:
    """403 unless the request's scopes allow `letter` on `type_` (None: on every type)."""
    scopes = req.identity.scopes
    target = "*" if type_ is None else type_
    if not scopes.allows(target, letter):
        what = "every resource type" if type_ is None else type_
        text = f"the access token's scopes ({scopes.text or 'none'}) do not allow {_DOING[letter]} ({letter}) on {what}"
        if any(s.covers(target, letter) for s in scopes.unusable):
            text += "; its patient/ scopes grant nothing: the token has no patient claim saying which patient"
        raise FhirError(403, Issue("error", "forbidden", text))


def check_mutable(type_: str | None, letter: str, *, upsert: bool = False) -> None:
    """405 for an update, patch or delete of a resource that is never changed (AuditEvent).
    An `upsert` (PUT of an id) may still create one: the update refuses it if it exists."""
    if type_ in IMMUTABLE and (letter == "d" or (letter == "u" and not upsert)):
        raise immutable(type_)


def immutable(type_: str) -> FhirError:
    return FhirError(405, Issue("error", "not-supported", f"{type_} resources are a record of what happened: "
                                f"they can be created and read, never changed or deleted"),
                     headers={"Allow": "GET, HEAD, POST, PUT"})


def allowed_types(req: FhirRequest, types: list[str], letter: str) -> tuple[list[str], list[str]]:
    """(the types the scopes allow `letter` on, those left out)."""
    if req.identity is None:
        return types, []
    scopes = req.identity.scopes
    kept = [t for t in types if scopes.allows(t, letter)]
    return kept, [t for t in types if not scopes.allows(t, letter)]


def left_out(types: list[str], letter: str) -> Issue:
    """The warning a searchset carries for the types its scopes do not cover."""
    shown = ", ".join(types[:20]) + (f" and {len(types) - 20} more" if len(types) > 20 else "")
    return Issue("warning", "forbidden", f"not searched, the access token's scopes do not allow "
                 f"{_DOING[letter]} ({letter}) on: {shown}")


# -- reach: which resources of a type ------------------------------------------------------------

def reach(server: FhirServer, req: FhirRequest, letters: str, *, created: frozenset[str] = frozenset()) -> Reach:
    """What the request may see or change with any of `letters` (`s` for searches, `r` for
    reads, `rs` for includes, `c`/`u`/`d` for writes), cached on the request. `created`: the
    patients the request creates, whose records it may start (a new patient has no care team
    yet)."""
    identity = req.identity
    if identity is None or identity.scopes.everything:
        return EVERYTHING
    key = letters if not created else f"{letters}+{','.join(sorted(created))}"
    cached = req.reaches.get(key)
    if cached is None:
        cached = req.reaches[key] = _scope_reach(server, identity, letters, created)
    return cached


def _scope_reach(server: FhirServer, identity: Identity, letters: str, created: frozenset[str]) -> Reach:
    scopes = identity.scopes
    made: list[Reach] = []
    generation = functools.cache(server.circles.current)  # the care teams' change counter, read once

    def visible(reference: str) -> bool:
        """Whether this reach sees the resource a reference names (a Binary's security context)."""
        type_, _, id_ = reference.partition("/")
        if type_ == "Binary" or not server.definitions.is_resource_type(type_):
            return False
        limit = made[0]
        restricted = limit.term(type_) is not None
        version = server.store.read(type_, id_, values=restricted)
        return version is not None and not version.deleted and sees(server, limit, version)

    def build(type_: str) -> Term | None:
        covering = scopes.covering(type_, letters)
        if not covering:
            return NOTHING
        return any_of([_scope_terms(server, identity, scope, type_, letters, visible, created, generation)
                       for scope in covering])

    made.append(Reach(build))
    return made[0]


def _scope_terms(server: FhirServer, identity: Identity, scope: Scope, type_: str, letters: str,
                 visible: Callable[[str], bool], created: frozenset[str], generation: Callable[[], int]) -> list[Term]:
    """What one scope lets the request see of a type, as ANDed terms ([]: all of it)."""
    terms: list[Term] = []
    if scope.context == "patient":
        terms += _patient_terms(server, identity.patient or "", type_, visible)
    elif scope.context == "user" and server.settings.access_rule == "care-team":
        terms += _user_terms(server, identity, type_, letters, visible, created, generation)
    if scope.criteria:
        ctx = Context(server, server.settings.base_url or "", strict=True, reach=EVERYTHING,
                      strict_because="a granular scope's query must use known search parameters")
        try:
            terms += build_terms(ctx, type_, list(scope.criteria))[0]
        except FhirError as exc:  # a scope this server cannot hold to its limits grants nothing
            log.warning("the granular scope %s?%s grants nothing here: %s", scope.type,
                        "&".join(f"{k}={v}" for k, v in scope.criteria), exc)
            return [NOTHING]
    return terms


def _patient_terms(server: FhirServer, patient: str, type_: str, visible: Callable[[str], bool]) -> list[Term]:
    """The token patient's record, for one type: the patient and the Patient records linked to
    it; the resources naming it and no other patient (the compartment's, and Task, Device…);
    a Binary with its security context; no limit for the types that never name a patient
    (directory, terminology, protocols)."""
    if type_ == "Binary":
        return [security_context_term(visible)]
    ids = _same_patient(server, patient)
    if type_ == "Patient":
        return [ids_term(ids)]
    codes = linking_params(server, "Patient").get(type_)
    return [only_in(codes, "Patient", ids)] if codes else []


def _user_terms(server: FhirServer, identity: Identity, type_: str, letters: str, visible: Callable[[str], bool],
                created: frozenset[str], generation: Callable[[], int]) -> list[Term]:
    """The équipe de soins rule for a `user/` scope (interactions/care_team.py): a professional
    reaches their patients' records; a patient user their own; a token naming neither no
    patient's data."""
    user = identity.fhir_user or ""
    if is_care_team_user(identity):
        term = server.circles.term(user, type_, btg=identity.purpose_of_use == BREAK_THE_GLASS,
                                   writing=any(letter in "cud" for letter in letters), visible=visible,
                                   generation=generation, created=created)
        return [] if term is None else [term]
    if user.startswith("Patient/"):
        return _patient_terms(server, user.split("/", 1)[1], type_, visible)
    holds_patient_data = type_ in ("Patient", "Binary") or type_ in linking_params(server, "Patient")
    return [NOTHING] if holds_patient_data else []


def _same_patient(server: FhirServer, patient: str) -> set[str]:
    """The patient and the Patient records that link to it (`Patient.link`: the same person)."""
    linked = find(server, "Patient", [keys_term("link", {f"Patient/{patient}"})], reach=EVERYTHING)
    return {patient} | {r.id for r in linked}


def sees(server: FhirServer, reach_: Reach, version: Version | None) -> bool:
    """Whether a stored version is within reach: matched on its search values (stored ones for
    a current version read with them, else computed from its JSON; a deletion is judged by the
    version it deleted). Versions of an unrestricted type cost nothing."""
    if version is None:
        return True
    term = reach_.term(version.type)
    if term is None:
        return True
    if term is NOTHING:
        return False
    values = version.values
    if values is None:
        json = version.json
        if json is None and version.version > 1:
            previous = server.store.vread(version.type, version.id, version.version - 1)
            json = previous.json if previous is not None else None
        if json is None:
            return False
        values = index_values(server.search_parameters, jsonio.loads(json), _base_urls(server)).values
    return term.match(Values(version.id, values))


def current_for_write(server: FhirServer, req: FhirRequest, session: Any, type_: str, id_: str,
                      letter: str) -> Version | None:
    """The current version a write replaces, as the request may see it: one out of its reach for
    `letter` is absent (a delete deletes nothing, a patch finds nothing)."""
    limit = reach(server, req, letter)
    restricted = limit.term(type_) is not None
    current = server.store.read_in(session, type_, id_, values=restricted)
    return current if current is None or not restricted or sees(server, limit, current) else None


def replaceable(server: FhirServer, req: FhirRequest, session: Any, type_: str, id_: str) -> Version | None:
    """The current version a PUT replaces; 403 if it is out of the request's reach (a PUT would
    otherwise overwrite what the caller may not see)."""
    limit = reach(server, req, "u")
    current = server.store.read_in(session, type_, id_, values=limit.term(type_) is not None)
    if current is not None and not current.deleted and not sees(server, limit, current):
        raise FhirError(403, Issue("error", "forbidden", f"{type_}/{id_} cannot be written with this access token"))
    return current


def check_writes(server: FhirServer, req: FhirRequest, writes: list[Write], session: Any) -> None:
    """403 unless every resource a request writes stays within its reach: what it creates, what
    it replaces (as it was) and what it puts in its place. Runs inside the unit of work, on the
    snapshot the writes commit on."""
    created = frozenset(w.id for w in writes if w.type == "Patient" and w.expected is None and w.json is not None)
    for write in writes:
        letter = {"POST": "c", "DELETE": "d"}.get(write.method, "u")
        limit = reach(server, req, letter)
        if limit.term(write.type) is None:
            continue
        if write.expected is not None:
            before = server.store.read_in(session, write.type, write.id, values=True)
            if before is not None and not before.deleted and not sees(server, limit, before):
                raise _out_of_reach(req, write, "is")
        after = reach(server, req, letter, created=created) if created else limit
        if write.index is not None and not after.sees(write.type, Values(write.id, write.index.values)):
            raise _out_of_reach(req, write, "would be")


def _out_of_reach(req: FhirRequest, write: Write, tense: str) -> FhirError:
    scopes = req.identity.scopes.text if req.identity is not None else ""
    return FhirError(403, Issue("error", "forbidden", f"{write.type}/{write.id} {tense} outside what the access "
                                f"token ({scopes}) reaches: patient/ scopes reach the token's patient, granular "
                                f"scopes the resources their query matches, a professional's user/ scopes the "
                                f"patients whose care team they are in or whose médecin traitant they are "
                                f"(docs/SECURITY.md)"))


def owner(req: FhirRequest) -> str:
    """Who a stored search belongs to: its later pages are for the same token holder only."""
    identity = req.identity
    if identity is None or identity.open:
        return ""
    parts = (identity.subject, identity.client_id, identity.fhir_user, identity.patient, identity.scopes.text)
    return hashlib.sha256("\x1f".join(p or "" for p in parts).encode()).hexdigest()[:32]


def _base_urls(server: FhirServer) -> tuple[str, ...]:
    return (server.settings.base_url.rstrip("/"),) if server.settings.base_url else ()
