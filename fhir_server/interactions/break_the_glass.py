"""Break-the-glass: a professional's token with `purpose_of_use` BTG opens records outside their
care team; each patient's médecin traitant (or, without one, the patient's care team) is told
by a Communication, once per professional, patient and day. The access itself is in the
audit trail like any other, its AuditEvent's `purposeOfEvent` saying BTG.
"""

from __future__ import annotations

import hashlib
import logging
from typing import TYPE_CHECKING

from fhir_server import jsonio
from fhir_server.errors import FhirError
from fhir_server.interactions.care_team import BREAK_THE_GLASS, is_care_team_user
from fhir_server.interactions.request import FhirRequest, FhirResponse
from fhir_server.search.execute import find
from fhir_server.search.params.token import keys_term
from fhir_server.search.reach import EVERYTHING
from fhir_server.security.identity import Identity
from fhir_server.security.patients import patients_in, patients_in_url
from fhir_server.security.scopes import Scopes
from fhir_server.storage.store import now

if TYPE_CHECKING:
    from fhir_server.server import FhirServer

log = logging.getLogger(__name__)

NOTICE_SYSTEM = "urn:fhir-server:break-the-glass"
REASON = {"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": BREAK_THE_GLASS,
          "display": "break the glass"}
_MOST_PATIENTS = 100  # notices one request sends at most (a BTG search over many records is audited anyway)
# the server writing its own notices: every right, named as itself in their Provenance and AuditEvent
_SERVER = Identity("fhir-server", "fhir-server", Scopes.all())


def applies(server: FhirServer, req: FhirRequest) -> bool:
    identity = req.identity
    return (identity is not None and identity.purpose_of_use == BREAK_THE_GLASS and is_care_team_user(identity)
            and server.settings.access_rule == "care-team")


def notify(server: FhirServer, req: FhirRequest, response: FhirResponse) -> None:
    """Tell the patients' doctors about the records this break-the-glass request opened: the
    patients it read or wrote that the user's care teams do not give them."""
    identity = req.identity
    found = server.circles.of(identity.fhir_user)
    patients = patients_in(response.body) | patients_in(req.body) | patients_in_url(req.url)
    for body in response.touched:  # what it read besides the body: a Binary answered as its content
        patients |= patients_in(body)
    if req.type == "Patient" and req.id:
        patients.add(req.id)
    opened = sorted(patients - found.patients - found.denied)
    for patient in opened[:_MOST_PATIENTS]:
        try:
            _tell(server, req, patient)
        except FhirError as exc:  # the access stands and is audited; the notice is retried next time
            log.warning("break-the-glass notice for Patient/%s not written: %s", patient, exc)


def _tell(server: FhirServer, req: FhirRequest, patient: str) -> None:
    identity = req.identity
    day = now().date().isoformat()
    key = hashlib.sha256(f"{identity.fhir_user}|{patient}|{day}".encode()).hexdigest()[:32]
    recipients = _doctors(server, patient)
    if not recipients:
        log.warning("break-the-glass access to Patient/%s by %s: no médecin traitant or care team to tell",
                    patient, identity.fhir_user)
    notice = {
        "resourceType": "Communication",
        "identifier": [{"system": NOTICE_SYSTEM, "value": key}],
        "status": "completed",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/communication-category",
                                  "code": "alert"}]}],
        "priority": "urgent",
        "subject": {"reference": f"Patient/{patient}"},
        "sent": now().isoformat(timespec="seconds"),
        "sender": {"reference": identity.fhir_user},
        "reasonCode": [{"coding": [REASON]}],
        "payload": [{"contentString": f"Accès en urgence (bris de glace) au dossier de ce patient par "
                                      f"{identity.fhir_user} le {day}, hors de son équipe de soins. La trace "
                                      f"de l'accès est dans le journal d'audit du serveur."}],
    }
    if recipients:  # none: the notice still records the access (an empty array is not valid FHIR)
        notice["recipient"] = [{"reference": r} for r in recipients]
    server.dispatch(FhirRequest("POST", req.base_url, type="Communication", shape="type", body=notice,
                                if_none_exist=f"identifier={NOTICE_SYSTEM}|{key}", prefer_return="minimal",
                                identity=_SERVER, url="Communication", request_id=req.request_id))


def _doctors(server: FhirServer, patient: str) -> list[str]:
    """Whom to tell: the patient's médecin traitant, else their active care teams."""
    record = server.store.read("Patient", patient)
    if record is not None and record.json:
        doctors = [g.get("reference") for g in jsonio.loads(record.json).get("generalPractitioner") or ()
                   if isinstance(g, dict) and isinstance(g.get("reference"), str)]
        if doctors:
            return doctors
    teams = find(server, "CareTeam", [keys_term("patient", {f"Patient/{patient}"}), keys_term("status", {"active"})],
                 reach=EVERYTHING)
    return [f"CareTeam/{t.id}" for t in teams]
