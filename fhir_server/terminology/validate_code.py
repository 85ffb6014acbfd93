"""Is this code (Coding, CodeableConcept) valid in a ValueSet or a CodeSystem, and its display right?

The answer is `{"result": True | False | None, "message": …, "display": …}`:
- True: the code is in the ValueSet (or a code of the CodeSystem); `display` is the one to show;
  a `message` may still warn (inactive code, display not checkable, case corrected).
- False: it is not, or its display is not one of the code's (display, designations, the
  ValueSet's own display for it), or it is abstract (`notSelectable`) where `abstract` is not
  allowed; `message` says which.
- None: cannot tell here (a code system not held, or held only in part, an unknown filter);
  `message` says why. Callers warn rather than fail.

A CodeableConcept is valid when any of its codings is; displays compare ignoring case and
runs of spaces.
"""

from __future__ import annotations

from typing import Any

from fhir_server.terminology.codesystems import CodeSystemIndex
from fhir_server.terminology.errors import TerminologyError
from fhir_server.terminology.expand import Entry, Resolver, name_of
from fhir_server.terminology.membership import member


def codings_of(code: str | None, system: str | None, display: str | None, coding: dict[str, Any] | None,
               codeable_concept: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The codings to check; ValueError when the inputs are missing or contradict each other."""
    given = [x for x in (code is not None, coding is not None, codeable_concept is not None) if x]
    if len(given) > 1:
        raise ValueError("give one of code (with system), coding or codeableConcept, not several")
    if codeable_concept is not None:
        codings = [c for c in codeable_concept.get("coding") or () if isinstance(c, dict)]
        if not codings:
            raise ValueError("the codeableConcept has no coding to validate")
        return codings
    if coding is not None:
        if not coding.get("code"):
            raise ValueError("the coding has no code")
        return [coding]
    if not code:
        raise ValueError("a code (with its system), a coding or a codeableConcept is needed")
    return [{"system": system, "code": code, "display": display} if system else {"code": code, "display": display}]


def in_valueset(scope: Resolver, valueset: dict[str, Any], coding: dict[str, Any], abstract: bool) -> dict[str, Any]:
    system, code = coding.get("system"), coding["code"]
    label = f"{system}#{code}" if system else repr(code)
    try:
        verdict = member(scope, valueset, system, code)
    except TerminologyError as exc:
        return {"result": None, "message": f"cannot tell whether {label} is in {name_of(valueset)}: {exc}"}
    if verdict.state is None:
        return {"result": None, "message": f"cannot tell whether {label} is in {name_of(valueset)}: {verdict.reason}"}
    if not verdict.state:
        message = verdict.reason or f"{label} is not in the value set {name_of(valueset)}"
        cs = scope.codesystem(system) if system else None
        if cs is not None and cs.complete and cs.get(code) is None:
            message = f"{code!r} is not a code of {system}" + (f" (version {cs.version})" if cs.version else "") \
                      + f"; {message}"
        return {"result": False, "message": message}
    assert verdict.entry is not None
    cs = scope.codesystem(verdict.entry.system) if verdict.entry.system else None
    return _checked(verdict.entry, cs, coding, abstract)


def in_codesystem(cs: CodeSystemIndex, coding: dict[str, Any], abstract: bool) -> dict[str, Any]:
    system, code = coding.get("system"), coding["code"]
    if system and system != cs.url:
        return {"result": False, "message": f"the coding's system {system} is not the code system {cs.url}"}
    if not cs.holds_codes:
        return {"result": None, "message": f"cannot tell whether {code!r} is a code of {cs.url}: its CodeSystem "
                                           f"here has content '{cs.content}' (none of its codes)"}
    concept = cs.get(code)
    if concept is None:
        if cs.complete:
            return {"result": False, "message": f"{code!r} is not a code of {cs.url}"
                                                + (f" (version {cs.version})" if cs.version else "")}
        return {"result": None, "message": f"cannot tell whether {code!r} is a code of {cs.url}: only part of its "
                                           f"codes are held here (content '{cs.content}')"}
    entry = Entry(cs.url, concept.code, concept.display, cs.version, concept.abstract, concept.inactive,
                  list(concept.designations))
    return _checked(entry, cs, coding, abstract)


def _checked(entry: Entry, cs: CodeSystemIndex | None, coding: dict[str, Any], abstract: bool) -> dict[str, Any]:
    """A code found: now its abstractness, display and status."""
    label = f"{entry.system}#{entry.code}"
    concept = cs.get(entry.code) if cs is not None and cs.holds_codes else None
    shown = entry.display or (concept.display if concept else None)
    out: dict[str, Any] = {"result": True}
    if shown:
        out["display"] = shown
    notes: list[str] = []
    if concept is None and cs is not None and cs.complete:
        notes.append(f"{label} is listed by the value set but is not a code of {entry.system}"
                     + (f" version {cs.version}" if cs.version else ""))
    if coding["code"] != entry.code:
        notes.append(f"the code is {entry.code!r} in {entry.system} (codes there compare without case)")
    if entry.abstract and not abstract:
        return {**out, "result": False, "message": f"{label} is abstract (not selectable): it groups other codes and "
                                                   f"is not for use in data"}
    display = coding.get("display")
    if display:
        known = [entry.display] + [d.get("value") for d in entry.designations]
        if concept is not None:
            known += [concept.display] + [d.get("value") for d in concept.designations]
        known = [k for k in known if k]
        if not any(_same(display, k) for k in known):
            if concept is None:
                why = "its code system is not held here" if cs is None or not cs.holds_codes else \
                    "the code is not in the code system held here"
                notes.append(f"the display {display!r} of {label} is not checked: {why}"
                             + (f" (the value set shows {shown!r})" if shown else ""))
            else:
                choices = ", ".join(repr(k) for k in dict.fromkeys(known))
                return {**out, "result": False,
                        "message": f"wrong display {display!r} for {label}: valid displays are {choices}"}
    if entry.inactive:
        notes.append(f"{label} is inactive")
    elif concept is not None and concept.deprecated:
        notes.append(f"{label} is deprecated")
    if notes:
        out["message"] = "; ".join(notes)
    return out


def _same(a: str, b: str) -> bool:
    return " ".join(a.split()).casefold() == " ".join(b.split()).casefold()


def combine(results: list[dict[str, Any]]) -> dict[str, Any]:
    """A CodeableConcept's answer from those of its codings."""
    if len(results) == 1:
        return results[0]
    for wanted in (True, None, False):
        chosen = [r for r in results if r["result"] is wanted]
        if chosen:
            out = dict(chosen[0])
            considered = chosen if wanted else results  # a valid coding's answer is not muddied by the others
            messages = [r["message"] for r in considered if r.get("message")]
            if messages:
                out["message"] = "; ".join(dict.fromkeys(messages))
            return out
    raise AssertionError("no result")  # pragma: no cover
