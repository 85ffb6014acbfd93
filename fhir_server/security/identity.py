"""The identity a request carries: the token's subject, client, user, patient context and scopes.

Built once per request from verified claims (or, in open mode, the anonymous identity that may
do everything), and handed down with the request to every check.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any

from fhir_server.security.scopes import Scopes

_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
_USER_TYPES = ("Practitioner", "PractitionerRole", "Patient", "RelatedPerson", "Person")


@dataclass(frozen=True)
class Identity:
    subject: str | None  # `sub`
    client_id: str | None
    scopes: Scopes
    fhir_user: str | None = None  # `Practitioner/123`: who the user is, relative to this server
    patient: str | None = None  # launch context: the id of the patient `patient/` scopes are about
    purpose_of_use: str | None = None  # e.g. BTG (break-the-glass)
    address: str | None = None  # the client's network address
    open: bool = False  # no authentication configured (loopback only)

    @classmethod
    def anonymous(cls, address: str | None = None) -> Identity:
        return cls(None, None, Scopes.all(), address=address, open=True)

    @classmethod
    def nobody(cls, address: str | None = None) -> Identity:
        """Who asks for what needs no token (metadata, SMART discovery): no rights at all."""
        return cls(None, None, Scopes(), address=address)

    @classmethod
    def from_claims(cls, claims: dict[str, Any], base_url: str | None, address: str | None) -> Identity:
        scope = claims.get("scope")
        if isinstance(scope, list):  # some providers send an array (`scp` style)
            scope = " ".join(str(s) for s in scope)
        purpose = claims.get("purpose_of_use")
        if isinstance(purpose, list):
            purpose = purpose[0] if purpose else None
        patient = _id(claims.get("patient"))
        return cls(subject=_text(claims.get("sub")), client_id=_text(claims.get("client_id") or claims.get("azp")),
                   scopes=Scopes.parse(scope if isinstance(scope, str) else "", patient=patient is not None),
                   fhir_user=local_reference(_text(claims.get("fhirUser")), base_url),
                   patient=patient, purpose_of_use=_text(purpose), address=address)

    @property
    def user_subject(self) -> str | None:
        """`sub` when it names a user: a client acting for itself (client credentials) has its
        own id as `sub`, and no user."""
        return self.subject if self.subject and self.subject != self.client_id else None

    def with_user(self, fhir_user: str) -> Identity:
        return replace(self, fhir_user=fhir_user)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _id(value: Any) -> str | None:
    """The `patient` claim: a resource id (`123`), or the reference some providers send
    (`Patient/123`); anything else names no patient."""
    text = _text(value)
    if text is not None and text.startswith("Patient/"):
        text = text[len("Patient/"):]
    return text if text is not None and _ID.fullmatch(text) else None


def local_reference(value: str | None, base_url: str | None) -> str | None:
    """`https://host/fhir/Practitioner/1` or `Practitioner/1` → `Practitioner/1` (None if it is
    not a user resource, or an absolute URL on another server)."""
    if not value:
        return None
    parts = value.rstrip("/").split("/")
    if len(parts) < 2 or parts[-2] not in _USER_TYPES:
        return None
    if "://" in value and base_url and not value.startswith(base_url.rstrip("/") + "/"):
        return None
    return f"{parts[-2]}/{parts[-1]}"
