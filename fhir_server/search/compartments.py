"""Compartments (`Patient/123/*`), as the CompartmentDefinitions of the packages define them."""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING

from fhir_server.errors import FhirError, Issue
from fhir_server.search.terms import EXACT, KEYS, Term, values

if TYPE_CHECKING:
    from fhir_server.server import FhirServer


def compartment_params(server: FhirServer, compartment: str) -> dict[str, tuple[str, ...]]:
    """Per resource type of the compartment, the parameters that put a resource in it
    (`CarePlan`: `patient`, `performer`)."""
    definition = server.definitions.resource(f"http://hl7.org/fhir/CompartmentDefinition/{compartment.lower()}")
    if definition is None or definition.get("code") != compartment:
        raise FhirError(404, Issue("error", "not-found", f"{compartment} defines no compartment"))
    out = {}
    for entry in definition.get("resource") or ():
        codes = tuple(c for c in entry.get("param") or () if c != "{def}")
        if codes:
            out[entry["code"]] = codes
    return out


def compartment_terms(server: FhirServer, compartment: str, id_: str) -> dict[str, Term]:
    """Per resource type of the compartment, a term: any of its compartment parameters refers to
    `compartment/id_` (`CarePlan`: `patient` or `performer` = `Patient/123`)."""
    target = f"{compartment}/{id_}"
    out = {}
    for type_, codes in compartment_params(server, compartment).items():

        def match(doc, codes=codes) -> bool:
            return any(target in values(doc, c) for c in codes)

        out[type_] = Term(KEYS, [f"{c}={target}" for c in codes], match, EXACT)
    return out


def only_in(codes: tuple[str, ...], compartment: str, ids: set[str]) -> Term:
    """Resources in the compartments of `ids` and in no other compartment of that kind: every
    `compartment/…` their compartment parameters name is one of `ids` (a resource naming two
    patients tells about both, so it is for whoever may see both)."""
    targets = {f"{compartment}/{i}" for i in ids}
    prefix = f"{compartment}/"

    def match(doc) -> bool:
        named = {v for c in codes for v in values(doc, c) if isinstance(v, str) and v.startswith(prefix)}
        return bool(named) and named <= targets

    return Term(KEYS, [f"{c}={t}" for c in codes for t in sorted(targets)], match, EXACT)


# A reference parameter whose targets are this many types or more refers to any resource
# (`Task.focus`, `MessageHeader.focus`): it does not make a resource about its target.
_ANY_TARGET = 20


def linking_params(server: FhirServer, compartment: str) -> dict[str, tuple[str, ...]]:
    """Per resource type, the parameters that tie a resource to a `compartment` resource: the
    CompartmentDefinition's, and for types it leaves out, the reference parameters aimed at
    that type (R4 leaves `Task` out of the Patient and Practitioner compartments, yet
    `Task.for` names a patient and `Task.owner` a professional). Kept until the registry of
    search parameters changes: every access check asks for it."""
    params = server.search_parameters
    kept = _LINKS.setdefault(params, {})
    generation, found = kept.get(compartment, (None, None))
    if generation != params.generation or found is None:
        found = _linking_params(server, compartment)
        kept[compartment] = (params.generation, found)
    return found


_LINKS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # registry → compartment → (generation, params)


def _linking_params(server: FhirServer, compartment: str) -> dict[str, tuple[str, ...]]:
    targets = {compartment, "PractitionerRole"} if compartment == "Practitioner" else {compartment}
    out = dict(compartment_params(server, compartment))
    for type_ in server.definitions.resource_types:
        if type_ in out:
            continue
        codes = tuple(sorted(code for code, param in server.search_parameters.for_type(type_).items()
                             if param.type == "reference" and len(param.targets) < _ANY_TARGET
                             and targets & set(param.targets)))
        if codes:
            out[type_] = codes
    return out


def named(doc, codes: tuple[str, ...], compartment: str) -> set[str]:
    """The ids of the `compartment` resources a resource names in these parameters."""
    prefix = f"{compartment}/"
    return {v[len(prefix):] for c in codes for v in values(doc, c) if isinstance(v, str) and v.startswith(prefix)}
