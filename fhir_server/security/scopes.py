"""SMART on FHIR scopes, v1 (`patient/Observation.read`, `user/*.*`, `system/Patient.write`) and
v2 (`.cruds` letters, granular `patient/Observation.rs?category=laboratory`), parsed once per
token into what they allow.

Letters (v2): c create, r read (read, vread, instance history), u update (and patch), d delete,
s search (search, type and system history). v1 `read` is `rs`, `write` is `cud`, `*` all.
A granular scope (`?category=…`) allows only resources its query matches, a `patient/` scope
only the resources of the token's patient. Neither restriction is enforced on every path yet, so
both kinds are parsed but grant nothing (fail closed): `held_back` names them in the 403.
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

    def covers(self, resource_type: str, letter: str) -> bool:
        if letter not in self.letters:
            return False
        return self.type == resource_type or (self.type == "*" and resource_type not in EXPLICIT_ONLY)

    @property
    def enforced(self) -> bool:
        """Whether this server can hold the scope to its limits on every path (see above)."""
        return self.context != "patient" and not self.criteria


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

    @classmethod
    def parse(cls, text: str) -> Scopes:
        found = tuple(s for s in (parse_scope(part) for part in text.split()) if s is not None)
        return cls(found, text=text)

    @classmethod
    def all(cls) -> Scopes:
        return cls(everything=True, text="(open mode)")

    def allows(self, resource_type: str, letter: str) -> bool:
        """Whether a scope lets `letter` be done on every resource of `resource_type` ("*": of
        every type, those only explicit scopes reach included)."""
        if self.everything:
            return True
        if resource_type == "*" and not all(self.allows(t, letter) for t in EXPLICIT_ONLY):
            return False
        return any(s.enforced and s.covers(resource_type, letter) for s in self.granted)

    def held_back(self, resource_type: str, letter: str) -> list[Scope]:
        """Scopes that would cover `letter` on the type but are not enforced yet."""
        return [s for s in self.granted if not s.enforced and s.covers(resource_type, letter)]
