"""What an invariant's expression is screened for and rewritten with before it is evaluated.

Screened out (the invariant is then not evaluated, with the reason): functions fhirpathpy does
not implement (`functions_called`), and tests of FHIR values against an unqualified System
type (`answer is Boolean`, que-7: fhirpathpy answers false for a FHIR boolean where the
reference engine answers true).

Rewritten, as the reference engine reads R4 definitions: the function form `as(T)` applied to
a collection is read as `ofType(T)` (dom-3).
"""

from __future__ import annotations

from typing import Any

_SYSTEM_PRIMITIVES = frozenset({"Boolean", "String", "Integer", "Decimal", "Date", "DateTime", "Time"})


def as_to_of_type(node: Any) -> None:
    """The function form `X.as(T)` on a collection is read as `X.ofType(T)`, as the reference
    FHIRPath engine does for the R4 definitions (dom-3 applies it to `descendants()`, which
    fhirpathpy refuses: it wants a single item)."""
    if isinstance(node, dict):
        if node.get("type") == "Functn":
            first = (node.get("children") or [{}])[0]
            if first.get("type") == "Identifier" and first.get("text") == "as":
                first["text"] = "ofType"
        for child in node.get("children") or ():
            as_to_of_type(child)


def system_type_tests(node: Any, out: set[str]) -> None:
    """Unqualified System type names in `is`/`as`/`ofType` (`answer is Boolean`)."""
    if isinstance(node, dict):
        if node.get("type") == "TypeSpecifier" and (node.get("text") or "") in _SYSTEM_PRIMITIVES:
            out.add(node["text"])
        for child in node.get("children") or ():
            system_type_tests(child, out)


def functions_called(node: Any, out: set[str]) -> None:
    if isinstance(node, dict):
        if node.get("type") == "Functn":
            children = node.get("children") or ()
            if children and children[0].get("type") == "Identifier":
                out.add((children[0].get("text") or "").strip("`"))
        for child in node.get("children") or ():
            functions_called(child, out)
