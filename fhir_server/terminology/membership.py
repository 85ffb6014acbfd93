"""ValueSet membership: "is this code in this ValueSet", answered without expanding.

`compose` is evaluated for the one code asked about: True, False, or None with the reason when
the answer depends on something not held here (a code system not held or held only in part, an
unknown imported ValueSet, a filter not understood; for UCUM, which is not held, a malformed
unit is certainly not in).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fhir_server.terminology import ucum
from fhir_server.terminology.errors import TerminologyError
from fhir_server.terminology.expand import (
    Entry,
    Resolver,
    complete_expansion,
    complete_system,
    enter,
    entry_of,
    enumerated,
    from_expansion,
    name_of,
)


@dataclass
class Verdict:
    state: bool | None  # in the ValueSet, not in it, cannot tell here
    entry: Entry | None = None
    reason: str | None = None


NO = Verdict(False)


def member(scope: Resolver, valueset: dict[str, Any], system: str | None, code: str,
           seen: frozenset[str] = frozenset()) -> Verdict:
    """Whether `system|code` is in the ValueSet, evaluating compose for this one code."""
    name, seen = enter(valueset, seen)
    compose = valueset.get("compose")
    if not compose:
        if valueset.get("expansion") is not None:
            entry = from_expansion(valueset).find(system, code)
            return Verdict(True, entry) if entry else NO
        raise TerminologyError(f"ValueSet {name} has neither compose nor expansion", "invalid")
    hit, unknown, denied = None, None, None
    for include in compose.get("include") or ():
        verdict = _include_member(scope, valueset, include, system, code, seen)
        if verdict.state:
            hit = verdict
            break
        if verdict.state is None and unknown is None:
            unknown = verdict
        if verdict.state is False and verdict.reason and denied is None:
            denied = verdict  # a "no" that says why
    if hit is None:
        if unknown is not None and complete_expansion(valueset):
            entry = from_expansion(valueset).find(system, code)
            return Verdict(True, entry) if entry else NO
        return unknown or denied or NO
    for exclude in compose.get("exclude") or ():
        if exclude.get("system") and exclude["system"] != hit.entry.system:
            continue
        verdict = _include_member(scope, valueset, exclude, hit.entry.system, hit.entry.code, seen)
        if verdict.state:
            return Verdict(False, hit.entry, f"{hit.entry.system}#{hit.entry.code} is excluded from {name}")
        if verdict.state is None:
            return verdict
    if compose.get("inactive") is False and hit.entry.inactive:
        return Verdict(False, hit.entry, f"{hit.entry.system}#{hit.entry.code} is inactive, and {name} "
                                         f"leaves inactive codes out")
    return hit


def _include_member(scope: Resolver, valueset: dict[str, Any], include: dict[str, Any], system: str | None,
                    code: str, seen: frozenset[str]) -> Verdict:
    inc_system = include.get("system")
    entry: Entry | None = None
    if inc_system:
        if system is not None and system != inc_system:
            return NO
        cs = scope.codesystem(inc_system)
        if include.get("concept"):
            fold = cs is not None and not cs.case_sensitive
            wanted = code.casefold() if fold else code
            item = next((c for c in include["concept"] if c.get("code")
                         and (c["code"].casefold() if fold else c["code"]) == wanted), None)
            if item is None:
                return NO
            concept = cs.get(item["code"]) if cs is not None else None
            entry = enumerated(inc_system, include.get("version"), cs, item, concept)
        else:
            if cs is None and inc_system == ucum.SYSTEM:
                return _ucum_verdict(valueset, code)
            try:
                cs = complete_system(cs, inc_system, include, valueset) if cs is None or not cs.holds_codes else cs
            except TerminologyError as exc:
                return Verdict(None, reason=str(exc))
            concept = cs.get(code)
            if concept is None:
                if cs.complete:
                    return NO
                return Verdict(None, reason=f"{code!r} is not among the codes of {inc_system} held here "
                                            f"(content '{cs.content}': only part of them)")
            try:
                if not all(cs.predicate(f)(concept) for f in include.get("filter") or ()):
                    return NO
            except TerminologyError as exc:
                return Verdict(None, reason=str(exc))
            entry = entry_of(cs, concept)
    unknown = None
    for vs_url in include.get("valueSet") or ():
        other = scope.valueset(vs_url)
        if other is None:
            unknown = unknown or Verdict(None, reason=f"ValueSet {vs_url} (imported by {name_of(valueset)}) is "
                                                      f"not known here")
            continue
        verdict = member(scope, other, system or inc_system, code, seen)
        if verdict.state is False:
            return NO
        if verdict.state is None:
            unknown = unknown or verdict
        entry = entry or verdict.entry
    if unknown is not None:
        return unknown
    return Verdict(True, entry) if entry is not None else NO


def _ucum_verdict(valueset: dict[str, Any], code: str) -> Verdict:
    """UCUM is not held, but its grammar is known: a malformed unit is certainly not in."""
    error = ucum.syntax_error(code)
    if error:
        return Verdict(False, reason=f"{code!r} is not a UCUM code ({error}), so not in {name_of(valueset)}")
    return Verdict(None, reason=f"{code!r} is a well-formed UCUM code, but the UCUM units are not held here to "
                                f"tell whether it is one, and in {name_of(valueset)}")
