"""Compartments (`Patient/123/*`), as the CompartmentDefinitions of the packages define them."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fhir_server.errors import FhirError, Issue
from fhir_server.search.terms import EXACT, KEYS, Term, values

if TYPE_CHECKING:
    from fhir_server.server import FhirServer


def compartment_terms(server: FhirServer, compartment: str, id_: str) -> dict[str, Term]:
    """Per resource type of the compartment, a term: any of its compartment parameters refers to
    `compartment/id_` (`CarePlan`: `patient` or `performer` = `Patient/123`)."""
    definition = server.definitions.resource(f"http://hl7.org/fhir/CompartmentDefinition/{compartment.lower()}")
    if definition is None or definition.get("code") != compartment:
        raise FhirError(404, Issue("error", "not-found", f"{compartment} defines no compartment"))
    target = f"{compartment}/{id_}"
    out = {}
    for entry in definition.get("resource") or ():
        codes = tuple(c for c in entry.get("param") or () if c != "{def}")
        if not codes:
            continue

        def match(doc, codes=codes) -> bool:
            return any(target in values(doc, c) for c in codes)

        out[entry["code"]] = Term(KEYS, [f"{c}={target}" for c in codes], match, EXACT)
    return out
