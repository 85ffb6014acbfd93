"""SMART on FHIR scopes, v1 (`patient/Observation.read`, `user/*.*`, `system/Patient.write`) and
v2 (`.cruds` letters, granular `patient/Observation.rs?category=laboratory`), parsed once per
token into what they allow.

Letters (v2): c create, r read (read, vread, instance history), u update (and patch), d delete,
s search (search, type and system history). v1 `read` is `rs`, `write` is `cud`, `*` all.
A granular scope (`?category=…`) allows only resources its query matches; the search layer
applies the query, so here it is kept as criteria.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import parse_qsl

LETTERS = "cruds"
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
        return letter in self.letters and self.type in ("*", resource_type)


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
        """Whether any scope lets `letter` be done on `resource_type` (granular ones included:
        the search layer narrows those to what their criteria match)."""
        return self.everything or any(s.covers(resource_type, letter) for s in self.granted)

    def criteria(self, resource_type: str, letter: str) -> list[tuple[tuple[str, str], ...]] | None:
        """The granular queries limiting `letter` on a type (any one matching suffices), or None
        when a scope allows it without limit."""
        if self.everything:
            return None
        found = []
        for scope in self.granted:
            if scope.covers(resource_type, letter):
                if not scope.criteria:
                    return None
                found.append(scope.criteria)
        return found

    def contexts(self) -> set[str]:
        return {s.context for s in self.granted}
