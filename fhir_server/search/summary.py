"""`_summary` and `_elements`: the subset of each resource a client asked for.

Which elements are "summary" and which are mandatory comes from the StructureDefinitions
(the compiled validation model); a subsetted resource is tagged SUBSETTED as the spec asks.
"""

from __future__ import annotations

from fhir_server import jsonio
from fhir_server.definitions.model import models_for

SUBSETTED = {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "SUBSETTED"}
SUMMARY_VALUES = ("true", "text", "data", "count", "false")
_ALWAYS = ("resourceType", "id", "meta")


def _names(definitions, resource_type: str, wanted) -> set[str]:
    """JSON names (with their `_` companions) of the top-level elements `wanted(element)` keeps."""
    model = models_for(definitions).resource(resource_type)
    out: set[str] = set(_ALWAYS)
    if model is None:
        return out
    for element in model.elements.values():
        if wanted(element):
            for name in element.json_names:
                out.update((name, "_" + name))
    return out


def subset(definitions, json: bytes, summary: str | None, elements: list[str] | None) -> bytes:
    """The stored JSON reduced as `_summary`/`_elements` ask; unchanged if they ask nothing."""
    if (summary in (None, "false")) and not elements:
        return json
    resource = jsonio.loads(json)
    type_ = resource["resourceType"]
    if summary == "true":
        keep = _names(definitions, type_, lambda e: e.is_summary or e.min > 0)
    elif summary == "text":
        keep = _names(definitions, type_, lambda e: e.min > 0) | {"text"}
    elif summary == "data":
        keep = set(resource) - {"text"}
    else:
        asked = set(elements or ())
        keep = _names(definitions, type_, lambda e: e.min > 0 or e.name.removesuffix("[x]") in asked
                      or any(n in asked for n in e.json_names))
    reduced = {k: v for k, v in resource.items() if k in keep}
    if set(reduced) != set(resource):
        meta = dict(reduced.get("meta") or {})
        tags = [t for t in meta.get("tag") or () if t != SUBSETTED]
        meta["tag"] = tags + [SUBSETTED]
        reduced["meta"] = meta
        reduced = {"resourceType": reduced.pop("resourceType"), **reduced}
    return jsonio.dumps(reduced)
