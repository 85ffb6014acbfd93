"""`$lookup` and `$subsumes`: what a code system says about one code, and about two.

`lookup` returns the concept's display, designations and properties (its own, plus
`definition`, `parent`/`child` from the hierarchy and `inactive`), or None for a code the
(complete) system does not have. A system not held here, or held without its codes, is a
TerminologyError: the answer is not known here, which is not the same as "no such code".
"""

from __future__ import annotations

from typing import Any

from fhir_server.terminology.codesystems import CodeSystemIndex
from fhir_server.terminology.errors import TerminologyError
from fhir_server.terminology.expand import Resolver


def held(scope: Resolver, system: str, version: str | None = None) -> CodeSystemIndex:
    cs = scope.codesystem(f"{system}|{version}" if version else system)
    if cs is None:
        raise TerminologyError(f"the code system {system} is not held here: no CodeSystem with this URL in the "
                               f"loaded packages or stored on this server", "not-found")
    if version and cs.version and cs.version != version:
        raise TerminologyError(f"version {version} of {system} is not held here (version {cs.version} is)",
                               "not-found")
    if not cs.holds_codes:
        raise TerminologyError(f"the codes of {system} ({cs.name}) are not held here: its CodeSystem has content "
                               f"'{cs.content}'")
    return cs


def lookup(scope: Resolver, system: str, code: str, version: str | None = None,
           properties: list[str] | None = None) -> dict[str, Any] | None:
    cs = held(scope, system, version)
    concept = cs.get(code)
    if concept is None:
        if cs.complete:
            return None
        raise TerminologyError(f"{code!r} is not among the codes of {system} held here (content '{cs.content}': "
                               f"only part of them)")
    wanted = set(properties) if properties else None

    def asked(name: str) -> bool:
        return wanted is None or name in wanted

    out: dict[str, Any] = {"name": cs.name, "display": concept.display or concept.code}
    if cs.version:
        out["version"] = cs.version
    if concept.abstract:
        out["abstract"] = True
    if asked("designation"):
        out["designation"] = list(concept.designations)
    props: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()

    def add(prop: dict[str, Any]) -> None:
        key = (prop.get("code"), repr(sorted((k, str(v)) for k, v in prop.items() if k != "code")))
        if key not in seen:
            seen.add(key)
            props.append(prop)

    if concept.definition and asked("definition"):
        add({"code": "definition", "valueString": concept.definition})
    for prop in concept.properties:
        if prop.get("code") and asked(prop["code"]):
            add(dict(prop))
    if asked("parent"):
        for parent in cs.parents_of(concept.code):
            add({"code": "parent", "valueCode": parent})
    if asked("child"):
        for child in cs.children_of(concept.code):
            add({"code": "child", "valueCode": child})
    if asked("inactive") and not any(p["code"] == "inactive" for p in props):
        add({"code": "inactive", "valueBoolean": concept.inactive})
    out["property"] = props
    return out


def subsumes(scope: Resolver, system: str, code_a: str, code_b: str, version: str | None = None) -> str | None:
    """equivalent | subsumes | subsumed-by | not-subsumed; None when the system is not held here."""
    try:
        cs = held(scope, system, version)
    except TerminologyError:
        return None
    for code in (code_a, code_b):
        if cs.get(code) is None:
            if not cs.complete:
                return None
            raise TerminologyError(f"{code!r} is not a code of {system}", "not-found")
    a, b = cs.key(code_a), cs.key(code_b)
    if a == b:
        return "equivalent"
    if a in cs.ancestors(code_b):
        return "subsumes"
    if b in cs.ancestors(code_a):
        return "subsumed-by"
    return "not-subsumed"
