"""Where an extension may be used: `StructureDefinition.context` checked against the place an
extension sits in a resource.

An extension's definition lists the elements it may extend (`type` `element`: `Patient`,
`Patient.address`, `Address`, `Element`…), the extensions it may go inside (`type` `extension`:
a URL), or a FHIRPath expression (`type` `fhirpath`, not evaluated here: accepted). The place
of an extension is found by walking the resource's JSON along the base definitions, so that it
has every name the reference validator accepts for it: its path from the resource
(`Patient.name.period`), the path in the datatype that holds it (`HumanName.period`), the
choice form (`Observation.value[x]`), its type (`Period`) and that type's ancestors
(`Element`, `Quantity` for an `Age`). Nested resources (contained, bundle entries) start their
own path.

Severity: an error, except for the extensions of the FHIR specification itself
(`http://hl7.org/fhir/StructureDefinition/…`), a warning: the R4 publication uses several of them
outside their declared context in its own content (`structuredefinition-normative-version` on
130 of its ValueSets, CodeSystems and OperationDefinitions, `structuredefinition-fhir-type` on
`ElementDefinition.type` in every snapshot), and a server that refused them would refuse the
specification. A guide's extensions (FR Core, ANS, ours) are held to their context.
"""

from __future__ import annotations

import re
import threading
from typing import Any

from fhir_server.definitions.model import COMPLEX, PRIMITIVE, Models, models_for
from fhir_server.definitions.registry import Definitions

_SEGMENT = re.compile(r"\.([A-Za-z_][A-Za-z0-9_]*)(?:\[(\d+)\])?")
_ANYWHERE = "Element"
_CACHE_LIMIT = 20_000
_CORE_EXTENSIONS = "http://hl7.org/fhir/StructureDefinition/"


class Place:
    """The element an extension sits on: the names it answers to, its type, and for an
    extension inside an extension, the outer one's URL."""

    __slots__ = ("names", "outer_url", "type")

    def __init__(self, names: frozenset[str], type_: str, outer_url: str | None):
        self.names = names
        self.type = type_
        self.outer_url = outer_url

    def describe(self) -> str:
        return min(self.names, key=lambda n: (-n.count("."), "[x]" in n, len(n)))


def severity(url: str) -> str:
    """How serious using the extension at `url` out of its context is (see the module doc)."""
    return "warning" if url.startswith(_CORE_EXTENSIONS) else "error"


class ExtensionContexts:
    """Checks extension contexts (thread-safe; places cached by their path without indexes)."""

    def __init__(self, definitions: Definitions):
        self.definitions = definitions
        self.models: Models = models_for(definitions)
        self._places: dict[tuple, Place | None] = {}
        self._lock = threading.Lock()

    def problem(self, sd: dict[str, Any], resource: dict[str, Any], prefix: str, expr: str) -> str | None:
        """Why the extension defined by `sd`, at `expr` in `resource` (which starts at `prefix`),
        is out of its context; None when it is allowed there or the place cannot be told."""
        contexts = [c for c in sd.get("context") or () if isinstance(c, dict)]
        if not contexts or not expr.startswith(prefix):
            return None
        place = self.place(resource, expr[len(prefix):])
        if place is None:
            return None
        allowed = []
        for context in contexts:
            kind, expression = context.get("type"), context.get("expression")
            if not isinstance(expression, str) or kind not in ("element", "extension"):
                return None  # fhirpath (or unknown) contexts are not evaluated: accepted
            if kind == "extension" and expression == place.outer_url:
                return None
            if kind == "element" and self._matches(expression, place):
                return None
            allowed.append(expression)
        return (f"extension {sd.get('url')} is not allowed on {place.describe()}: its definition allows it on "
                f"{', '.join(allowed)}")

    def _matches(self, expression: str, place: Place) -> bool:
        if expression == _ANYWHERE or expression in place.names:
            return True
        return "." not in expression and self.definitions.is_a(place.type, expression)

    def place(self, resource: dict[str, Any], relative: str) -> Place | None:
        """The place of the extension at `relative` (`.name[0].extension[1]`) in `resource`."""
        steps = _SEGMENT.findall(relative)
        if not steps or "".join(f".{n}" + (f"[{i}]" if i else "") for n, i in steps) != relative \
                or steps[-1][0] not in ("extension", "modifierExtension"):
            return None
        steps = steps[:-1]
        outer_url = None
        if steps and steps[-1][0] in ("extension", "modifierExtension"):
            outer = _follow(resource, steps)
            outer_url = outer.get("url") if isinstance(outer, dict) else None
        rt = resource.get("resourceType")
        key = (rt, tuple(name for name, _ in steps), outer_url)
        with self._lock:
            if key in self._places:
                return self._places[key]
        found = self._walk(rt, [name for name, _ in steps], outer_url)
        with self._lock:
            if len(self._places) >= _CACHE_LIMIT:
                self._places.clear()
            self._places[key] = found
        return found

    def _walk(self, rt: Any, names: list[str], outer_url: str | None) -> Place | None:
        model = self.models.resource(rt) if isinstance(rt, str) else None
        if model is None:
            return None
        paths = {rt}
        structure = model.structure
        type_ = rt
        for name in names:
            slot = structure.slots.get(name) if structure is not None else None
            if slot is None:
                return None
            element = slot.element
            paths = {f"{p}.{name}" for p in paths} | {f"{p}.{element.name}" for p in paths} | {element.path}
            if element.content_reference:
                paths.add(element.content_reference.split("#", 1)[-1])
            type_ = slot.type.code
            if element.inline is not None:
                structure = element.inline
            elif slot.type.kind == COMPLEX:
                structure = slot.type.model.structure  # type: ignore[union-attr]
                paths.add(type_)
            else:  # a primitive: its `_name` companion holds the extensions
                structure = slot.type.model.element_structure if slot.type.kind == PRIMITIVE else None  # type: ignore[union-attr]
                paths.add(type_)
        return Place(frozenset(paths), type_, outer_url)


def _follow(value: Any, steps: list[tuple[str, str]]) -> Any:
    """The JSON value at `steps`; a primitive's extensions are in its `_name` companion."""
    for name, index in steps:
        if not isinstance(value, dict):
            return None
        inner = value.get(name)
        if not isinstance(inner, (dict, list)) and isinstance(value.get("_" + name), (dict, list)):
            inner = value.get("_" + name)
        if index:
            inner = inner[int(index)] if isinstance(inner, list) and int(index) < len(inner) else None
        value = inner
    return value
