"""SMART on FHIR scopes, v1 (`patient/Observation.read`, `user/*.*`, `system/Patient.write`) and
v2 (`.cruds` letters, granular `patient/Observation.rs?category=laboratory`), parsed once per
token into what they allow.

Letters (v2): c create, r read (read, vread, instance history), u update (and patch), d delete,
s search (search, type and system history). v1 `read` is `rs`, `write` is `cud`, `*` all.
A granular scope (`?category=…`) allows only resources its query matches, a `patient/` scope
only the resources of the token's patient (`interactions/access.py` turns both into the
request's reach). A `patient/` scope in a token without a `patient` claim grants nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import parse_qsl

LETTERS = "cruds"
# Types a wildcard scope (`user/*.cruds`) does not reach: only a scope naming them does. The
# audit trail is read by auditors, not by every client that may read clinical data.
EXPLICIT_ONLY = frozenset({"AuditEvent"})
_V1 = {"read": "rs", "write": "cud", "*": LETTERS}
_SCOPE = re.compile(r"^(?P<context>patient|user|system)/(?P<type>\*|[A-Z][A-Za-z]+)\."
                    r"(?P<perms>\*|read|write|[cruds]+)(?:\?(?P<query>.+))?$")


@dataclass(frozen=True)
class Scope:
    context: str  # patient | user | system
    type: str  # a resource type, or "*"
    letters: frozenset[str]
    criteria: tuple[tuple[str, str], ...] = ()  # granular scopes: the query resources must match

    def covers(self, resource_type: str, letters: str) -> bool:
        """Whether the scope allows any of `letters` on (some resources of) the type."""
        if not any(letter in self.letters for letter in letters):
            return False
        return self.type == resource_type or (self.type == "*" and resource_type not in EXPLICIT_ONLY)


def parse_scope(text: str) -> Scope | None:
    """One SMART resource scope; None for anything else (openid, fhirUser, launch…)."""
    match = _SCOPE.match(text)
    if not match:
        return None
    perms = match["perms"]
    if perms in _V1:
        letters = _V1[perms]
    elif list(perms) != sorted(perms, key=LETTERS.index) or len(set(perms)) != len(perms):
        return None  # v2 letters come once each, in the order c r u d s
    else:
        letters = perms
    criteria = tuple(parse_qsl(match["query"], keep_blank_values=True)) if match["query"] else ()
    return Scope(match["context"], match["type"], frozenset(letters), criteria)


@dataclass(frozen=True)
class Scopes:
    """The resource scopes a token grants."""

    granted: tuple[Scope, ...] = ()
    everything: bool = False  # open mode: no token, every interaction allowed
    text: str = field(default="", compare=False)
    unusable: tuple[Scope, ...] = ()  # patient/ scopes of a token that names no patient

    @classmethod
    def parse(cls, text: str, *, patient: bool = False) -> Scopes:
        """The resource scopes of a `scope` claim; `patient`: whether the token names the patient
        `patient/` scopes are about."""
        found = tuple(s for s in (parse_scope(part) for part in text.split()) if s is not None)
        usable = tuple(s for s in found if patient or s.context != "patient")
        return cls(usable, text=text, unusable=tuple(s for s in found if s not in usable))

    @classmethod
    def all(cls) -> Scopes:
        return cls(everything=True, text="(open mode)")

    def allows(self, resource_type: str, letter: str) -> bool:
        """Whether a scope lets `letter` be done on resources of `resource_type` ("*": of every
        type, those only explicit scopes reach included). Which resources of the type is the
        request's reach (`patient/` and granular scopes narrow it)."""
        if self.everything:
            return True
        if resource_type == "*" and not all(self.allows(t, letter) for t in EXPLICIT_ONLY):
            return False
        return any(s.covers(resource_type, letter) for s in self.granted)

    def covering(self, resource_type: str, letters: str) -> list[Scope]:
        """The scopes allowing any of `letters` on the type."""
        return [s for s in self.granted if s.covers(resource_type, letters)]
