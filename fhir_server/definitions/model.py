"""Element models compiled from StructureDefinition snapshots.

A `TypeModel` is one StructureDefinition (a resource, a complex datatype, a primitive, or a
core constraint such as SimpleQuantity) turned into a tree of `ElementModel`s. The tree only
describes what the JSON of an instance may look like: element names as they appear in JSON
(choice elements expanded: `value[x]` → `valueString`, `valueQuantity`, …), cardinality, the
allowed types, summary and modifier flags. Everything comes from the loaded packages.

What sits where:

* `ElementModel`: one element of a snapshot (`Patient.name`, `Observation.value[x]`).
* `Structure`: the elements a JSON object at one place may hold, keyed by JSON property name
  (`Slot`s). A resource, a complex datatype and every backbone element have one. A complex
  element that is not a backbone shares the `Structure` of its type's model (`HumanName`), a
  `contentReference` (`#Questionnaire.item`) shares the one of the element it points to.
* `TypeRef`: one allowed type of an element (`code`, the StructureDefinition `url` that shapes
  it: the type's own, or the profile given on the type such as SimpleQuantity).
* `Models`: the lazy, thread-safe cache of compiled models of one `Definitions`; a type is
  compiled the first time it is needed, never all at once. `models_for(definitions)` shares
  one `Models` per `Definitions` (validation and search use the same cache).

Compilation is cheap (about a millisecond for a large resource) and happens once per
StructureDefinition URL for the life of the process.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from functools import cached_property
from typing import TYPE_CHECKING, Any

from fhir_server.definitions.registry import FHIR_BASE, Definitions

if TYPE_CHECKING:
    from fhir_server.definitions.primitives import PrimitiveType

SYSTEM_PREFIX = "http://hl7.org/fhirpath/System."
EXT_FHIR_TYPE = "http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type"

# Slot kinds: how the JSON value of an element is shaped.
PRIMITIVE = "primitive"  # a JSON scalar, with an optional `_name` companion (FHIR primitive types)
SYSTEM = "system"  # a JSON scalar without companion (System types: Element.id, Extension.url, Resource.id)
COMPLEX = "complex"  # a JSON object described by a Structure
RESOURCE = "resource"  # a JSON object carrying its own `resourceType` (contained, Bundle.entry.resource…)


class ModelError(Exception):
    """A definition needed to build a model is missing or unusable."""


def _max(value: str | None) -> int | None:
    """`"*"` → None (unbounded), `"3"` → 3."""
    if value is None or value == "*":
        return None
    return int(value)


def _choice_name(base: str, code: str) -> str:
    return base + code[0].upper() + code[1:]


class TypeRef:
    """One allowed type of an element.

    `code` is the FHIR type (`string`, `HumanName`, `Resource`); for the FHIRPath System types
    used by `Element.id`, `Extension.url`, `Resource.id` and the `.value` of primitives, it is
    the FHIR type named by the `structuredefinition-fhir-type` extension, and `system` holds
    the System type URL. `url` is the StructureDefinition that shapes the value: the profile
    named on the type when there is one (SimpleQuantity), else the type's own.
    """

    __slots__ = ("__dict__", "_models", "code", "system", "target_profiles", "url")

    def __init__(self, models: Models, code: str, url: str | None, system: str | None = None,
                 target_profiles: tuple[str, ...] = ()):
        self._models = models
        self.code = code
        self.url = url
        self.system = system
        self.target_profiles = target_profiles

    def __repr__(self) -> str:
        profile = f", {self.url}" if self.url and self.url != FHIR_BASE + self.code else ""
        return f"TypeRef({self.code!r}{profile})"

    @cached_property
    def model(self) -> TypeModel | None:
        """The compiled StructureDefinition of this type (None for bare System types)."""
        if self.url is None:
            return None
        model = self._models.type_model(self.url)
        if model is None and self.url != FHIR_BASE + self.code:
            model = self._models.type_model(FHIR_BASE + self.code)  # profile not loaded: its base type
        return model

    @cached_property
    def kind(self) -> str:
        if self.system is not None:
            return SYSTEM
        model = self.model
        if model is None:
            raise ModelError(f"no StructureDefinition for type {self.code!r} ({self.url})")
        if model.kind == "primitive-type":
            return PRIMITIVE
        if model.kind == "resource":
            return RESOURCE
        return COMPLEX

    @cached_property
    def primitive(self) -> PrimitiveType | None:
        """The value checker of a primitive or System type; None for complex types."""
        if self.kind in (PRIMITIVE, SYSTEM):
            return self._models.primitive(self.url, self.system)
        return None


class Slot:
    """A JSON property name allowed in an object: the element it belongs to and its type."""

    __slots__ = ("__dict__", "companion_key", "element", "json_name", "type")

    def __init__(self, json_name: str, element: ElementModel, type_: TypeRef):
        self.json_name = json_name
        self.companion_key = "_" + json_name  # the JSON property holding a primitive's id/extension
        self.element = element
        self.type = type_

    def __repr__(self) -> str:
        return f"Slot({self.json_name!r} → {self.element.path} : {self.type.code})"

    @cached_property
    def kind(self) -> str:
        if self.element.inline is not None:
            return COMPLEX
        return self.type.kind

    @cached_property
    def special(self) -> bool:
        """A choice variant or a prohibited (0..0) element: needs more than the common checks."""
        return self.element.is_choice or self.element.max == 0

    @cached_property
    def scalar_check(self) -> Callable[[Any], str | None] | None:
        """For a non-repeating primitive element, its value check; None otherwise."""
        if self.element.is_array or self.kind not in (PRIMITIVE, SYSTEM):
            return None
        return self.primitive.check  # type: ignore[union-attr]

    @cached_property
    def structure(self) -> Structure | None:
        """What the JSON object of this slot may hold (None for primitives and resources)."""
        if self.element.inline is not None:
            return self.element.inline
        if self.kind == COMPLEX:
            return self.type.model.structure  # type: ignore[union-attr]
        return None

    @cached_property
    def primitive(self) -> PrimitiveType | None:
        return None if self.element.inline is not None else self.type.primitive


class Structure:
    """The elements a JSON object at one place may hold, keyed by JSON property name."""

    __slots__ = ("by_name", "elements", "owner", "required", "required_names", "slots")

    def __init__(self, owner: ElementModel, elements: list[ElementModel]):
        self.owner = owner
        self.elements: tuple[ElementModel, ...] = tuple(elements)
        self.by_name: dict[str, ElementModel] = {e.name: e for e in elements}
        self.slots: dict[str, Slot] = {}
        for element in elements:
            for json_name, type_ in element.type_by_json_name.items():
                self.slots[json_name] = Slot(json_name, element, type_)
        self.required: tuple[ElementModel, ...] = tuple(e for e in elements if e.min > 0)
        # each required element with the JSON names that satisfy it (`_name` companions count)
        self.required_names: tuple[tuple[ElementModel, tuple[str, ...]], ...] = tuple(
            (e, e.json_names + tuple("_" + n for n in e.json_names)) for e in self.required)

    def __repr__(self) -> str:
        return f"Structure({self.owner.path}: {', '.join(self.by_name)})"

    def json_names(self) -> list[str]:
        return list(self.slots)


class ElementModel:
    """One element of a snapshot.

    `name` is the last path segment as defined (`value[x]`), `json_names` what may appear in
    JSON (`valueString`, …). `max` is None when unbounded. `is_array` tells the JSON shape,
    which follows the base definition's cardinality (a profile that narrows `0..*` to `0..1`
    still has a JSON array). `inline` is the Structure of a backbone element's own children
    (also for `contentReference`), None when the children come from the type.
    `definition` is the raw ElementDefinition (binding, constraints…) for later checks.
    """

    __slots__ = (
        "children",
        "content_reference",
        "definition",
        "id",
        "inline",
        "is_array",
        "is_choice",
        "is_modifier",
        "is_summary",
        "json_names",
        "max",
        "min",
        "model",
        "name",
        "parent",
        "path",
        "type_by_json_name",
        "types",
    )

    def __init__(self, model: TypeModel, raw: dict[str, Any], parent: ElementModel | None):
        self.model = model
        self.definition = raw
        self.parent = parent
        self.path: str = raw["path"]
        self.id: str = raw.get("id") or self.path
        self.name: str = self.path.rsplit(".", 1)[-1]
        self.min: int = int(raw.get("min") or 0)
        self.max: int | None = _max(raw.get("max"))
        base_max = (raw.get("base") or {}).get("max", raw.get("max"))
        self.is_array: bool = base_max != "1" and base_max != "0"
        self.is_choice: bool = self.name.endswith("[x]")
        self.is_summary: bool = bool(raw.get("isSummary"))
        self.is_modifier: bool = bool(raw.get("isModifier"))
        self.content_reference: str | None = raw.get("contentReference")
        self.children: dict[str, ElementModel] = {}
        self.inline: Structure | None = None
        self.types: tuple[TypeRef, ...] = tuple(model.models.type_ref(t) for t in raw.get("type") or ())
        self.type_by_json_name: dict[str, TypeRef] = {}
        self.json_names: tuple[str, ...] = ()
        self._name_types()

    def _name_types(self) -> None:
        if self.is_choice:
            base = self.name[:-3]
            self.type_by_json_name = {_choice_name(base, t.code): t for t in self.types}
        elif self.types:
            self.type_by_json_name = {self.name: self.types[0]}
        self.json_names = tuple(self.type_by_json_name)

    def __repr__(self) -> str:
        return f"ElementModel({self.path} {self.min}..{'*' if self.max is None else self.max})"

    @property
    def type_codes(self) -> tuple[str, ...]:
        return tuple(t.code for t in self.types)

    def child_elements(self, type_code: str | None = None) -> dict[str, ElementModel]:
        """The children by element name: a backbone's own, else those of its (chosen) type."""
        structure = self.structure(type_code)
        return structure.by_name if structure is not None else {}

    def structure(self, type_code: str | None = None) -> Structure | None:
        """The Structure of this element's JSON object (for one type of a choice)."""
        if self.inline is not None:
            return self.inline
        for type_ in self.types:
            if type_code is None or type_.code == type_code:
                return type_.model.structure if type_.kind == COMPLEX else None  # type: ignore[union-attr]
        return None


class TypeModel:
    """One StructureDefinition compiled: its root element and a tree of ElementModels."""

    def __init__(self, models: Models, sd: dict[str, Any]):
        self.models = models
        self.url: str = sd["url"]
        self.name: str = sd.get("type") or sd.get("id") or self.url.rsplit("/", 1)[-1]
        self.id: str = sd.get("id") or self.name
        self.kind: str = sd.get("kind") or ""
        self.abstract: bool = bool(sd.get("abstract"))
        self.derivation: str | None = sd.get("derivation")
        self.base_url: str | None = sd.get("baseDefinition")
        self.definition = sd
        raw_elements = (sd.get("snapshot") or {}).get("element") or []
        if not raw_elements:
            raise ModelError(f"StructureDefinition {self.url} has no snapshot")
        self.by_path: dict[str, ElementModel] = {}
        root: ElementModel | None = None
        for raw in raw_elements:
            if ":" in (raw.get("id") or ""):
                continue  # slices: profile territory, not the JSON shape
            path = raw["path"]
            if root is None:
                root = ElementModel(self, raw, None)
                self.by_path[path] = root
                continue
            parent = self.by_path.get(path.rsplit(".", 1)[0])
            if parent is None:
                raise ModelError(f"{self.url}: element {path} has no parent in the snapshot")
            element = ElementModel(self, raw, parent)
            parent.children[element.name] = element
            self.by_path[path] = element
        assert root is not None
        self.root = root
        referring = [e for e in self.by_path.values() if e.content_reference]
        for element in referring:  # `#Questionnaire.item`: same types and children as the target
            target = self.by_path.get(element.content_reference.split("#", 1)[-1])  # type: ignore[union-attr]
            if target is None or target.content_reference:
                raise ModelError(f"{self.url}: {element.path} refers to unusable {element.content_reference}")
            element.types = target.types
            element.children = target.children
            element._name_types()
        for element in self.by_path.values():
            if element.children and not element.content_reference and not (
                    element.types and all(t.code[:1].islower() for t in element.types)):
                # (a profile may list a primitive's id/extension/value: its JSON stays a primitive)
                element.inline = Structure(element, list(element.children.values()))
        for element in referring:
            element.inline = self.by_path[element.content_reference.split("#", 1)[-1]].inline  # type: ignore[union-attr]
        if root.inline is None:
            root.inline = Structure(root, [])
        # The root's JSON object: a resource, or a datatype's value wherever it is used.
        self.structure: Structure = root.inline

    def __repr__(self) -> str:
        return f"TypeModel({self.url})"

    @cached_property
    def element_structure(self) -> Structure:
        """For a primitive type: what its `_name` JSON companion may hold (`id`, `extension`)."""
        return Structure(self.root, [e for e in self.root.children.values() if e.name != "value"])

    @property
    def elements(self) -> dict[str, ElementModel]:
        """The root's children by element name (`name`, `value[x]`)."""
        return self.root.children

    def element(self, path: str) -> ElementModel | None:
        """An element by snapshot path (`Patient.contact.name`)."""
        return self.by_path.get(path)


class Models:
    """The compiled models of one `Definitions`, built lazily and cached per URL (thread-safe)."""

    def __init__(self, definitions: Definitions):
        self.definitions = definitions
        self._models: dict[str, TypeModel | None] = {}
        self._primitives: dict[tuple[str | None, str | None], PrimitiveType] = {}
        self._type_refs: dict[tuple, TypeRef] = {}
        self._lock = threading.RLock()

    def type_model(self, url_or_name: str) -> TypeModel | None:
        """The compiled model of a StructureDefinition, by canonical URL or base type name."""
        url = url_or_name if "/" in url_or_name else FHIR_BASE + url_or_name
        try:
            return self._models[url]
        except KeyError:
            pass
        with self._lock:
            if url in self._models:
                return self._models[url]
            sd = self.definitions.structure_definition(url)
            if sd is not None and not (sd.get("snapshot") or {}).get("element"):
                # a differential-only package (tddui): the snapshot is generated from its base
                from fhir_server.definitions.snapshot import snapshots_for
                sd = snapshots_for(self.definitions).structure_definition(url)
            model = TypeModel(self, sd) if sd is not None else None
            self._models[url] = model
            return model

    def resource(self, resource_type: str) -> TypeModel | None:
        """The model of a concrete resource type, None if the packages define no such resource."""
        if not self.definitions.is_resource_type(resource_type):
            return None
        return self.type_model(FHIR_BASE + resource_type)

    def derives_from(self, model: TypeModel, url: str) -> bool:
        """Is `model` the type at `url` or a specialization/constraint of it?"""
        current: TypeModel | None = model
        seen = set()
        while current is not None and current.url not in seen:
            if current.url == url:
                return True
            seen.add(current.url)
            current = self.type_model(current.base_url) if current.base_url else None
        return False

    def ancestors(self, model: TypeModel) -> list[TypeModel]:
        """`model` and its base definitions, most specific first."""
        out = []
        current: TypeModel | None = model
        while current is not None and current not in out:
            out.append(current)
            current = self.type_model(current.base_url) if current.base_url else None
        return out

    def type_ref(self, raw: dict[str, Any]) -> TypeRef:
        """A TypeRef for an ElementDefinition.type entry (shared between equal entries)."""
        code: str = raw["code"]
        system = None
        profiles = raw.get("profile") or ()
        targets = tuple(raw.get("targetProfile") or ())
        if code.startswith(SYSTEM_PREFIX):
            system = code
            fhir_type = next((x.get("valueUrl") or x.get("valueUri") for x in raw.get("extension") or ()
                              if x.get("url") == EXT_FHIR_TYPE), None)
            code = fhir_type or code
            url = FHIR_BASE + fhir_type if fhir_type else None
        elif len(profiles) == 1:
            url = profiles[0]  # e.g. Quantity constrained to SimpleQuantity
        else:
            url = FHIR_BASE + code
        key = (code, url, system, targets)
        ref = self._type_refs.get(key)
        if ref is None:
            ref = self._type_refs.setdefault(key, TypeRef(self, code, url, system, targets))
        return ref

    def primitive(self, url: str | None, system: str | None) -> PrimitiveType:
        """The value checker for a primitive type (by SD URL) or a bare System type."""
        key = (url, system if url is None else None)
        checker = self._primitives.get(key)
        if checker is not None:
            return checker
        from fhir_server.definitions.primitives import PrimitiveType
        with self._lock:
            checker = self._primitives.get(key)
            if checker is None:
                if url is None:
                    checker = PrimitiveType.for_system_type(system or SYSTEM_PREFIX + "String")
                else:
                    model = self.type_model(url)
                    if model is None or model.kind != "primitive-type":
                        raise ModelError(f"{url} is not a primitive type")
                    checker = PrimitiveType.from_models(self.ancestors(model))
                self._primitives[key] = checker
            return checker


_shared: weakref.WeakKeyDictionary[Definitions, Models] = weakref.WeakKeyDictionary()
_shared_lock = threading.Lock()


def models_for(definitions: Definitions) -> Models:
    """The one `Models` cache of a `Definitions` (created on first call)."""
    with _shared_lock:
        models = _shared.get(definitions)
        if models is None:
            models = _shared[definitions] = Models(definitions)
        return models
