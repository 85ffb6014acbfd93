"""Structural validation of FHIR R4 JSON, driven by the StructureDefinitions of the packages.

`StructuralValidator(definitions).validate(resource)` walks the JSON once against the compiled
element models (`fhir_server.definitions.model`) and returns every problem found as an
`Issue("error", code, diagnostics, [expression])`; an empty list means the resource is
structurally valid. What is checked:

* the root is a JSON object whose `resourceType` is a concrete resource type of the packages
  (and the expected one, when the caller says which); nested resources (`contained`,
  `Bundle.entry.resource`, `Parameters.parameter.resource`, … any element of type Resource)
  are dispatched on their own `resourceType`, which is allowed only at resource roots;
* element names: only those the definitions allow; choice elements (`value[x]`) only under
  their typed names (`valueQuantity`) and one variant at a time;
* cardinality and JSON shape: repeating elements are arrays, others are not; no arrays longer
  than `max`; every element with `min` ≥ 1 present (a `_name` companion counts); no empty
  arrays, empty objects or nulls (except nulls keeping `name`/`_name` arrays aligned);
* primitive values (`fhir_server.definitions.primitives`) and their `_name` companions (an
  object holding `id`/`extension`, or for repeating elements an array aligned with the values);
* a nesting limit (`max_depth` objects deep) reported once, instead of a RecursionError.

Not checked here (later layers, see the seams below): code bindings, invariants (FHIRPath
constraints), profiles and slicing, reference targets.

Issue codes: `structure` (unknown element, wrong JSON shape, cardinality, nulls, empties),
`required` (missing mandatory element or resourceType), `value` (a primitive value that is not
valid for its type), `invalid` (not a JSON object, resourceType not the expected one or not
allowed at that place), `not-supported` (unknown resourceType), `too-costly` (nesting limit).

Expressions are FHIRPath locations as used in `OperationOutcome.issue.expression`: the resource
type, then element names joined by dots, with `[n]` after every item of a repeating element
(`Patient.name[0].given[1]`); choice elements appear under their JSON name
(`Observation.valueQuantity.value`); nested resources continue the path of the element that
holds them (`Bundle.entry[2].resource.birthDate`, `Patient.contained[0].name[0]`); the `id` and
`extension` of a primitive (the `_name` JSON companion) appear as children of the primitive,
as FHIRPath sees them (`Patient.birthDate.extension[0].url`). A problem with an object as a
whole (a missing element, an unknown one) names the object that holds it plus the element.

Seams for the checks to come: `element_checks` (called for each element value that passed the
structural checks, for bindings/invariants per element) and `resource_checks` (called for each
resource root, the top one and nested ones, for invariants and profiles).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any, Protocol

from fhir_server.definitions.model import (
    COMPLEX,
    PRIMITIVE,
    RESOURCE,
    SYSTEM,
    ElementModel,
    Models,
    Slot,
    Structure,
    TypeModel,
    models_for,
)
from fhir_server.definitions.primitives import describe
from fhir_server.definitions.registry import FHIR_BASE, Definitions
from fhir_server.errors import Issue

MAX_DEPTH = 100
_MAX_NAME = 80  # longer unknown names are truncated in reports (and get no suggestions)
_MISSING = object()


class ElementCheck(Protocol):
    """A per-element check plugged into the walk (e.g. required bindings, invariants)."""

    def applies_to(self, element: ElementModel) -> bool:
        """Asked once per element model; the answer is cached."""

    def check(self, element: ElementModel, value: Any, expression: str, issues: list[Issue]) -> None:
        """Called with each JSON value of the element (one array item at a time)."""


class ResourceCheck(Protocol):
    """A check run on every resource root (top level, contained, bundle entries…)."""

    def check(self, resource: dict[str, Any], model: TypeModel, expression: str,
              issues: list[Issue]) -> None:
        """Called once per resource root, after its structural walk."""


class _Run:
    """State of one `validate` call: the issues found so far."""

    __slots__ = ("issues", "too_deep")

    def __init__(self) -> None:
        self.issues: list[Issue] = []
        self.too_deep = False

    def error(self, code: str, diagnostics: str, expression: str) -> None:
        self.issues.append(Issue("error", code, diagnostics, [expression] if expression else []))

    def structure(self, diagnostics: str, expression: str) -> None:
        self.issues.append(Issue("error", "structure", diagnostics, [expression]))

    def value(self, diagnostics: str, expression: str) -> None:
        self.issues.append(Issue("error", "value", diagnostics, [expression]))


def _cardinality(element: ElementModel) -> str:
    return f"{element.path} {element.min}..{'*' if element.max is None else element.max}"


class StructuralValidator:
    """Validates FHIR R4 JSON (as parsed by `fhir_server.jsonio.loads`) against the definitions.

    One instance serves any number of threads; models are compiled on first use of a type.
    """

    def __init__(self, definitions: Definitions, *, max_depth: int = MAX_DEPTH,
                 element_checks: Iterable[ElementCheck] = (),
                 resource_checks: Iterable[ResourceCheck] = ()):
        self.definitions = definitions
        self.models: Models = models_for(definitions)
        self.max_depth = max_depth
        self.element_checks = tuple(element_checks)
        self.resource_checks = tuple(resource_checks)
        self._checks_of: dict[int, tuple[ElementCheck, ...]] = {}

    # -- entry point ---------------------------------------------------------------------------
    def validate(self, resource: Any, resource_type: str | None = None, *,
                 definition: str | None = None) -> list[Issue]:
        """All structural problems of `resource` (empty list: valid).

        `resource_type`, when given (e.g. from the URL), is the type the resource must have.
        `definition` is the canonical URL of another StructureDefinition of that resource type
        whose snapshot shapes the root (a constraint narrowing cardinalities, for instance); only
        the structure it describes is enforced here, not its slices, bindings or invariants.
        Nested resources always follow their base definitions.
        """
        run = _Run()
        if not isinstance(resource, dict):
            run.error("invalid", f"A FHIR resource must be a JSON object, not {describe(resource)}",
                      resource_type or "")
            return run.issues
        actual = resource.get("resourceType")
        if resource_type is not None and isinstance(actual, str) and actual != resource_type:
            run.error("invalid", f"The resource is a {actual} but a {resource_type} is expected here: "
                                 f"send a {resource_type} or use the {actual} endpoint", actual)
        if isinstance(actual, str) and 0 < len(actual) <= _MAX_NAME:
            path = actual
        else:
            path = resource_type or "Resource"
        model = None
        if definition is not None:
            model = self.models.type_model(definition)
            if model is None or model.kind != "resource":
                raise ValueError(f"{definition} is not a known StructureDefinition of a resource")
            if isinstance(actual, str) and actual != model.name:
                run.error("invalid", f"The resource is a {actual} but {definition} describes a {model.name}",
                          path)
                return run.issues
        self._resource(resource, path, run, 1, None, top=True, model=model)
        return run.issues

    # -- resources -----------------------------------------------------------------------------
    def _resource(self, obj: dict[str, Any], path: str, run: _Run, depth: int, slot: Slot | None,
                  top: bool = False, model: TypeModel | None = None) -> None:
        rt = obj.get("resourceType", _MISSING)
        where = "" if top else f" in {path}"
        if rt is _MISSING:
            run.error("required", f"The resource{where} has no 'resourceType': add the resource type, "
                                  'e.g. "resourceType": "Patient"', path)
            return
        if not isinstance(rt, str):
            run.error("invalid", f"'resourceType'{where} must be a string naming a resource type, "
                                 f"not {describe(rt)}", path + ".resourceType" if top else path)
            return
        if model is None:
            model = self.models.resource(rt)
        if model is None:
            self._unknown_resource_type(rt, where, path, run)
            return
        if slot is not None:
            wanted = slot.type
            if wanted.url and wanted.url != FHIR_BASE + "Resource" \
                    and not self.models.derives_from(model, wanted.url):
                run.error("invalid", f"A {rt} cannot be used in {path}: {slot.element.path} must be a "
                                     f"{wanted.code}", path)
                return
        self._object(obj, model.structure, path, run, depth, True)
        if self.resource_checks:
            for check in self.resource_checks:
                check.check(obj, model, path, run.issues)

    def _unknown_resource_type(self, rt: str, where: str, path: str, run: _Run) -> None:
        if len(rt) > _MAX_NAME:
            run.error("not-supported", f"Unknown resourceType {rt[:_MAX_NAME] + '…'!r}{where}", path)
            return
        close = difflib.get_close_matches(rt, self.definitions.resource_types, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        sd = self.definitions.structure_definition(rt) if rt and "/" not in rt else None
        if sd is not None and sd.get("kind") == "resource":
            kind = "an abstract resource type: use a concrete one"
        elif sd is not None:
            kind = "a data type, not a resource type"
        else:
            kind = "not a FHIR R4 resource type"
        run.error("not-supported", f"Unknown resourceType {rt!r}{where}: it is {kind}{hint}", path)

    # -- objects -------------------------------------------------------------------------------
    def _object(self, obj: dict[str, Any], structure: Structure, path: str, run: _Run, depth: int,
                resource_root: bool = False) -> None:
        if depth > self.max_depth:
            if not run.too_deep:
                run.too_deep = True
                run.error("too-costly", f"The JSON is nested more than {self.max_depth} objects deep at "
                                        f"{path}; content below this level was not validated", path)
            return
        slots = structure.slots
        chosen: dict[ElementModel, str] = {}  # choice element → the JSON name used
        element_checks = self.element_checks
        for key, value in obj.items():
            slot = slots.get(key)
            if slot is None:
                if key[:1] == "_":
                    base = slots.get(key[1:])
                    if base is not None and base.kind is PRIMITIVE:
                        # handled with the value, unless there is no value
                        if key[1:] not in obj and self._choose(chosen, base.element, key, path, run):
                            self._primitive(base, _MISSING, value, path + "." + key[1:], run, depth)
                        continue
                    self._bad_companion(key, base, structure, path, run)
                    continue
                if key == "resourceType" and resource_root:
                    continue
                self._unknown(key, structure, path, run)
                continue
            if slot.special:  # a choice, or a prohibited element
                element = slot.element
                if element.is_choice and not self._choose(chosen, element, key, path, run):
                    continue
                if element.max == 0:
                    run.structure(f"{element.path} is not allowed (its cardinality is 0..0): remove {key!r}",
                                  path + "." + key)
                    continue
            check = slot.scalar_check
            if check is not None and value is not None and not isinstance(value, (dict, list)) \
                    and (slot.companion_key not in obj or slot.kind is SYSTEM):
                # fast path: a single primitive value without `_name` companion
                message = check(value)
                if message is not None:
                    run.value(message, path + "." + key)
                elif element_checks:
                    self._run_element_checks(slot.element, value, path + "." + key, run)
                continue
            kind = slot.kind
            if kind is COMPLEX or kind is RESOURCE:
                self._complex(slot, value, path + "." + key, run, depth)
            else:
                companion = obj.get(slot.companion_key, _MISSING) if kind is PRIMITIVE else _MISSING
                self._primitive(slot, value, companion, path + "." + key, run, depth)
        for element, names in structure.required_names:
            for name in names:
                if name in obj:
                    break
            else:
                wanted = " or ".join(repr(n) for n in element.json_names[:6])
                if len(element.json_names) > 6:
                    wanted += " or another choice"
                run.error("required", f"Missing required element {element.name!r} ({element.path}, "
                                      f"min {element.min}): add {wanted}",
                          f"{path}.{element.name.removesuffix('[x]')}")

    @staticmethod
    def _choose(chosen: dict[ElementModel, str], element: ElementModel, key: str, path: str,
                run: _Run) -> bool:
        """Record the variant used for a choice element; False (and an issue) for a second one."""
        if not element.is_choice:
            return True
        other = chosen.get(element)
        if other is not None:
            run.structure(f"Only one of the choices of {element.name} is allowed, but both {other!r} and "
                          f"{key!r} are present: keep one", path + "." + key)
            return False
        chosen[element] = key
        return True

    def _unknown(self, key: str, structure: Structure, path: str, run: _Run) -> None:
        if len(key) > _MAX_NAME:  # a name nobody could mean: keep the report small and cheap
            shown_key = key[:_MAX_NAME] + "…"
            run.structure(f"Unknown element {shown_key!r} ({len(key)} characters) in {path}",
                          path + "." + shown_key)
            return
        if key == "resourceType":
            run.structure(f"'resourceType' is not allowed in {path}: it belongs only at the root of a "
                          "resource (top level, contained, Bundle.entry.resource, …)", path + "." + key)
            return
        hint = ""
        for element in structure.elements:
            if not element.is_choice:
                continue
            base = element.name[:-3]
            rest = key[len(base):]
            if key.startswith(base) and (rest in ("", "[x]") or rest[0].isupper()):
                choices = ", ".join(element.json_names[:8]) + (", …" if len(element.json_names) > 8 else "")
                if rest in ("", "[x]"):
                    hint = f"; {element.name} needs a typed name: use one of {choices}"
                else:
                    hint = f"; {key!r} is not an allowed type for {element.name}: use one of {choices}"
                break
        else:
            close = difflib.get_close_matches(key, list(structure.slots), n=1, cutoff=0.75)
            if close:
                hint = f"; did you mean {close[0]!r}?"
        allowed = [e.name for e in structure.elements]
        shown = ", ".join(allowed[:25]) + (", …" if len(allowed) > 25 else "")
        run.structure(f"Unknown element {key!r} in {path}{hint} (elements allowed here: {shown})",
                      path + "." + key)

    def _bad_companion(self, key: str, base: Slot | None, structure: Structure, path: str, run: _Run) -> None:
        """A `_name` property that is not the companion of a primitive element."""
        name = key[1:]
        if base is None:
            self._unknown(key, structure, path, run)
        elif base.kind == SYSTEM:
            run.structure(f"{key!r} is not allowed: {name} is a plain JSON property that cannot carry an id "
                          "or extensions", path + "." + key)
        else:
            run.structure(f"{key!r} is not allowed: a '_' companion exists only for primitive elements, and "
                          f"{base.element.path} is a {base.type.code}; put extensions inside {name!r} itself",
                          path + "." + key)

    # -- complex elements and resources -------------------------------------------------------
    def _complex(self, slot: Slot, value: Any, path: str, run: _Run, depth: int) -> None:
        element = slot.element
        if element.is_array:
            if not isinstance(value, list):
                self._not_array(slot, value, path, run)
                return
            if not value:
                run.structure(f"Empty array for {element.name}: leave the element out instead", path)
                return
            if element.max is not None and len(value) > element.max:
                self._too_many(slot, len(value), path, run)
            for i, item in enumerate(value):
                self._complex_item(slot, item, f"{path}[{i}]", run, depth)
        elif isinstance(value, list):
            self._unexpected_array(slot, path, run)
        else:
            self._complex_item(slot, value, path, run, depth)

    def _complex_item(self, slot: Slot, item: Any, path: str, run: _Run, depth: int) -> None:
        if not isinstance(item, dict):
            if item is None:
                run.structure(f"null is not allowed for {slot.element.name}: leave the element out", path)
            else:
                what = "a resource" if slot.kind == RESOURCE else f"a {slot.type.code}"
                run.structure(f"{slot.element.path} must be a JSON object ({what}), not {describe(item)}",
                              path)
            return
        if not item:
            run.structure(f"Empty object for {slot.element.name}: leave the element out instead", path)
            return
        if slot.kind == RESOURCE:
            self._resource(item, path, run, depth + 1, slot)
        else:
            self._object(item, slot.structure, path, run, depth + 1)  # type: ignore[arg-type]
        if self.element_checks:
            self._run_element_checks(slot.element, item, path, run)

    # -- primitives ----------------------------------------------------------------------------
    def _primitive(self, slot: Slot, value: Any, companion: Any, path: str, run: _Run, depth: int) -> None:
        """A primitive element with its `_name` companion (either may be _MISSING)."""
        if slot.element.is_array:
            self._primitive_array(slot, value, companion, path, run, depth)
            return
        name = slot.json_name
        if value is not _MISSING:
            if isinstance(value, list):
                self._unexpected_array(slot, path, run)
            elif value is None:
                run.structure(f"null is not allowed for {name!r}: leave the element out", path)
            elif isinstance(value, dict):
                hint = f" (extensions of a primitive go in '_{name}')" if slot.kind == PRIMITIVE else ""
                run.value(f"{name!r} must be a {slot.type.code} value, not an object{hint}", path)
            else:
                message = slot.primitive.check(value)  # type: ignore[union-attr]
                if message is not None:
                    run.value(message, path)
                elif self.element_checks:
                    self._run_element_checks(slot.element, value, path, run)
        if companion is not _MISSING:
            structure = slot.type.model.element_structure  # type: ignore[union-attr]
            self._element_extra(name, companion, structure, path, run, depth)

    def _primitive_array(self, slot: Slot, value: Any, companion: Any, path: str, run: _Run,
                         depth: int) -> None:
        element = slot.element
        name = slot.json_name
        values = None
        if value is not _MISSING:
            if not isinstance(value, list):
                self._not_array(slot, value, path, run)
            elif not value:
                run.structure(f"Empty array for {name}: leave the element out instead", path)
            else:
                values = value
                if element.max is not None and len(value) > element.max:
                    self._too_many(slot, len(value), path, run)
        extras = None
        if companion is not _MISSING:
            if not isinstance(companion, list):
                run.structure(f"'_{name}' must be an array (aligned with {name!r}, null where an item has no "
                              f"id or extension), not {describe(companion)}", path)
            elif not companion:
                run.structure(f"Empty array for '_{name}': leave it out instead", path)
            else:
                extras = companion
                if values is not None and len(values) != len(extras):
                    run.structure(f"'{name}' has {len(values)} items but '_{name}' has {len(extras)}: both "
                                  "arrays must have the same length (use null as filler)", path)
                elif value is _MISSING and element.max is not None and len(extras) > element.max:
                    self._too_many(slot, len(extras), path, run)
        if values is not None:
            check = slot.primitive.check  # type: ignore[union-attr]
            for i, item in enumerate(values):
                if item is None:
                    if extras is None or i >= len(extras) or extras[i] is None:
                        run.structure(f"null is not allowed in {name!r} unless '_{name}' has an id or "
                                      "extension at the same position", f"{path}[{i}]")
                    continue
                if isinstance(item, (dict, list)):
                    run.value(f"The items of {name!r} must be {slot.type.code} values, not {describe(item)}",
                              f"{path}[{i}]")
                    continue
                message = check(item)
                if message is not None:
                    run.value(message, f"{path}[{i}]")
                elif self.element_checks:
                    self._run_element_checks(element, item, f"{path}[{i}]", run)
        if extras is not None:
            structure = slot.type.model.element_structure  # type: ignore[union-attr]
            for i, extra in enumerate(extras):
                if extra is None:
                    if values is None or i >= len(values):
                        run.structure(f"null in '_{name}' without a value in {name!r} at the same position",
                                      f"{path}[{i}]")
                    continue
                self._element_extra(name, extra, structure, f"{path}[{i}]", run, depth)

    def _element_extra(self, name: str, extra: Any, structure: Structure, path: str, run: _Run,
                       depth: int) -> None:
        """The `_name` companion of a primitive: an object with `id` and/or `extension`."""
        if not isinstance(extra, dict):
            run.structure(f"'_{name}' must hold JSON objects with id and/or extension, not {describe(extra)}",
                          path)
        elif not extra:
            run.structure(f"Empty object in '_{name}': leave it out (or use null in an array)", path)
        else:
            self._object(extra, structure, path, run, depth + 1)

    # -- shared messages -----------------------------------------------------------------------
    @staticmethod
    def _not_array(slot: Slot, value: Any, path: str, run: _Run) -> None:
        run.structure(f"{slot.json_name!r} repeats ({_cardinality(slot.element)}): it must be a JSON array, "
                      f"not {describe(value)}; wrap the value in [ ]", path)

    @staticmethod
    def _unexpected_array(slot: Slot, path: str, run: _Run) -> None:
        run.structure(f"{slot.json_name!r} does not repeat ({_cardinality(slot.element)}): give a single "
                      "value, not an array", path)

    @staticmethod
    def _too_many(slot: Slot, count: int, path: str, run: _Run) -> None:
        run.structure(f"{slot.json_name!r} has {count} items but at most {slot.element.max} are allowed "
                      f"({_cardinality(slot.element)})", path)

    def _run_element_checks(self, element: ElementModel, value: Any, path: str, run: _Run) -> None:
        checks = self._checks_of.get(id(element))
        if checks is None:
            checks = tuple(c for c in self.element_checks if c.applies_to(element))
            self._checks_of[id(element)] = checks
        for check in checks:
            check.check(element, value, path, run.issues)
