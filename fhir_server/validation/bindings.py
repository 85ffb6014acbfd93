"""Bindings: a coded value checked against the ValueSet its element is bound to.

Only `required` and `extensible` bindings are checked (`preferred` and `example` say nothing an
instance can break). The codes of an element are read according to its type: a `code` (any
system of the ValueSet), a `Coding`, each coding of a `CodeableConcept`, a `Quantity`'s
`system`/`code`, a `string`/`uri` value.

* required: a code outside the ValueSet → error `code-invalid`; a CodeableConcept passes when
  one of its codings is in the ValueSet; a CodeableConcept or Coding without any code → error.
* extensible: a code outside the ValueSet → warning `code-invalid` (a CodeableConcept with only
  text is accepted, as the binding allows).
* the ValueSet cannot be expanded here (unknown ValueSet, SNOMED CT, UCUM, BCP-13 mime types…:
  `Terminology.contains` answers None) → `information` for a required binding, nothing for an
  extensible one. Never an error.

Every Coding is also checked against its code system when this server holds all of it
(`check_coding`): unknown code → error, wrong display → warning.
"""

from __future__ import annotations

from typing import Any

from fhir_server.errors import Issue
from fhir_server.terminology.errors import TerminologyError

CODED_TYPES = frozenset({"code", "Coding", "CodeableConcept", "Quantity", "string", "uri", "canonical", "url"})


def _codes(type_code: str, value: Any) -> list[tuple[str | None, str]] | None:
    """(system, code) pairs of a value; None when the type carries no code."""
    if type_code in ("code", "string", "uri", "canonical", "url"):
        return [(None, value)] if isinstance(value, str) else []
    if not isinstance(value, dict):
        return []
    if type_code in ("Coding", "Quantity"):
        code = value.get("code")
        return [(value.get("system"), code)] if isinstance(code, str) else []
    if type_code == "CodeableConcept":
        return [(c.get("system"), c["code"]) for c in value.get("coding") or ()
                if isinstance(c, dict) and isinstance(c.get("code"), str)]
    return None


def _show(pairs: list[tuple[str | None, str]]) -> str:
    return ", ".join(f"{s}#{c}" if s else repr(c) for s, c in pairs)


def check(terminology: Any, strength: str, valueset: str, type_code: str, value: Any, expression: str,
          issues: list[Issue]) -> None:
    """Check one value of a bound element; appends at most one issue."""
    if type_code not in CODED_TYPES:
        return
    pairs = _codes(type_code, value)
    if pairs is None:
        return
    name = valueset.split("|", 1)[0]
    if not pairs:
        if strength == "required" and type_code in ("Coding", "CodeableConcept"):
            issues.append(Issue("error", "code-invalid",
                                f"No code given, but a code from the value set {name} is required here "
                                f"(required binding): add a coding with a system and a code from it", [expression]))
        return
    unknown = False
    for system, code in pairs:
        answer = terminology.contains(valueset, system, code) if terminology is not None else None
        if answer:
            return
        if answer is None:
            unknown = True
    if unknown:
        if strength == "required":
            issues.append(Issue("information", "informational",
                                f"Could not check {_show(pairs)} against the value set {name} (required binding): "
                                "it cannot be expanded on this server", [expression]))
        return
    what = "is not" if len(pairs) == 1 else "none of them is"
    if strength == "required":
        issues.append(Issue("error", "code-invalid",
                            f"{_show(pairs)}: {what} in the value set {name}, which this element is bound to "
                            f"(required binding): use a code from that value set", [expression]))
    else:
        issues.append(Issue("warning", "code-invalid",
                            f"{_show(pairs)}: {what} in the value set {name} (extensible binding): use a code from "
                            "it when one fits", [expression]))


def _plain(text: str) -> str:
    return " ".join(text.split()).casefold()


def check_coding(terminology: Any, coding: dict[str, Any], expression: str, issues: list[Issue]) -> None:
    """A Coding against its code system, when this server holds all of it: a code the system does
    not have is an error; a display that is none of the code's (display or designations,
    compared without case and spacing) is a warning, as the reference validator says."""
    system, code, display = coding.get("system"), coding.get("code"), coding.get("display")
    if terminology is None or not isinstance(system, str) or not isinstance(code, str):
        return
    version = coding.get("version") if isinstance(coding.get("version"), str) else None
    try:
        found = terminology.lookup(system, code, version, ["designation"])
    except TerminologyError:
        return  # not held, or not all of it: nothing can be said
    if found is None:
        issues.append(Issue("error", "code-invalid",
                            f"{system}#{code}: the code system {system} has no code {code!r}", [expression + ".code"]))
        return
    if not isinstance(display, str):
        return
    names = [found.get("display") or code] + [d.get("value") for d in found.get("designation") or ()
                                               if isinstance(d, dict) and isinstance(d.get("value"), str)]
    if _plain(display) not in {_plain(n) for n in names}:
        issues.append(Issue("warning", "invalid",
                            f"{system}#{code}: the display {display!r} is not the code system's "
                            f"({found.get('display')!r})", [expression + ".display"]))
