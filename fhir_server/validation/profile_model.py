"""StructureDefinitions compiled for profile validation: one `Profile` per URL, a tree of
`Node`s (one per ElementDefinition of the snapshot, slices included).

Unlike `model.py` (the JSON shape of the base types, shared with search), a node keeps what a
profile says about an element: cardinality, allowed types with their profiles and target
profiles, `fixed[x]`/`pattern[x]`, the binding, the invariants, primitive limits, slicing and
its slices. Everything that can be worked out once per element is worked out here, so that
validating a resource is a walk that only looks things up.

A base definition (`Patient`, `HumanName`: `is_base`) describes exactly what the structural
validator already enforces, plus bindings, invariants and reference targets; the walk only does
those extra checks for base trees. A constraint (a profile, an extension, SimpleQuantity) is
checked in full.

Snapshots come from `snapshot.snapshots_for(definitions)`, generated when a package ships none.
Profiles are compiled on first use and cached per URL (thread-safe).
"""

from __future__ import annotations

import re
import threading
import weakref
from typing import Any

from fhir_server.definitions.registry import FHIR_BASE, Definitions
from fhir_server.definitions.snapshot import SnapshotError, snapshots_for, split_id

SYSTEM_PREFIX = "http://hl7.org/fhirpath/System."
EXT_REGEX = "http://hl7.org/fhir/StructureDefinition/regex"
CHECKED_STRENGTHS = ("required", "extensible")
# Abstract parents that type an element whose children sit in the snapshot itself.
_INLINE_TYPES = frozenset({"BackboneElement", "Element"})
_ANY_RESOURCE = frozenset({"Resource", "DomainResource"})


def canonical(url: str) -> str:
    """`url|version` → `url`."""
    return url.split("|", 1)[0]


class TypeSpec:
    """One entry of `ElementDefinition.type`."""

    __slots__ = ("code", "json_suffix", "profiles", "target_profiles", "target_types")

    def __init__(self, raw: dict[str, Any], definitions: Definitions):
        code: str = raw.get("code") or ""
        if code.startswith(SYSTEM_PREFIX):
            fhir_type = next((x.get("valueUrl") or x.get("valueUri") for x in raw.get("extension") or ()
                              if x.get("url", "").endswith("structuredefinition-fhir-type")), None)
            code = fhir_type or code[len(SYSTEM_PREFIX):].lower()
        self.code = code
        self.json_suffix = code[:1].upper() + code[1:]
        self.profiles: tuple[str, ...] = tuple(canonical(p) for p in raw.get("profile") or ())
        self.target_profiles: tuple[str, ...] = tuple(canonical(p) for p in raw.get("targetProfile") or ())
        # Resource types a Reference/canonical may point to (None: any).
        types: set[str] | None = set()
        for url in self.target_profiles:
            target = url[len(FHIR_BASE):] if url.startswith(FHIR_BASE) else None
            if target is None or "/" in target or not definitions.is_resource_type(target):  # a profile (vitalsigns)
                sd = definitions.structure_definition(url)
                target = sd.get("type") if sd else None
            if target is None or target in _ANY_RESOURCE:
                types = None
                break
            types.add(target)
        self.target_types: frozenset[str] | None = frozenset(types) if types else None

    def __repr__(self) -> str:
        return f"TypeSpec({self.code}{' ' + ','.join(self.profiles) if self.profiles else ''})"


class Slicing:
    __slots__ = ("discriminators", "ordered", "rules")

    def __init__(self, raw: dict[str, Any]):
        self.discriminators: tuple[tuple[str, str], ...] = tuple(
            (d.get("type") or "value", d.get("path") or "$this") for d in raw.get("discriminator") or ())
        self.ordered: bool = bool(raw.get("ordered"))
        self.rules: str = raw.get("rules") or "open"

    def describe(self) -> str:
        return ", ".join(f"{kind} of {path}" for kind, path in self.discriminators) or "no discriminator"


class Node:
    """One ElementDefinition of a compiled profile."""

    __slots__ = (
        "binding", "by_code", "children", "choice_prefix", "constraints", "content_reference", "ed",
        "fhirpath_type", "fixed", "id", "is_array", "json_children", "matcher", "max", "max_length",
        "max_value", "min", "min_value", "name", "path", "pattern", "primitive", "profile", "regex", "slice_name",
        "slices", "slicing", "trivial", "types", "__weakref__",
    )

    def __init__(self, profile: Profile, ed: dict[str, Any]):
        definitions = profile.definitions
        self.profile = profile
        self.ed = ed
        self.path: str = ed["path"]
        self.id: str = ed.get("id") or self.path
        self.name: str = self.path.rsplit(".", 1)[-1]
        self.slice_name: str | None = ed.get("sliceName")
        self.min: int = int(ed.get("min") or 0)
        self.max: int | None = None if ed.get("max") in (None, "*") else int(ed["max"])
        base_max = (ed.get("base") or {}).get("max", ed.get("max"))
        self.is_array: bool = base_max not in ("1", "0")
        self.types: tuple[TypeSpec, ...] = tuple(TypeSpec(t, definitions) for t in ed.get("type") or ())
        self.by_code: dict[str, TypeSpec] = {t.code: t for t in self.types}
        self.choice_prefix: str | None = self.name[:-3] if self.name.endswith("[x]") else None
        self.primitive: bool = bool(self.types) and all(
            t.code[:1].islower() for t in self.types)  # FHIR primitives are the lower-case types
        self.fixed: tuple[str, Any] | None = None
        self.pattern: tuple[str, Any] | None = None
        self.min_value: tuple[str, Any] | None = None
        self.max_value: tuple[str, Any] | None = None
        for key, value in ed.items():
            if key.startswith("fixed"):
                self.fixed = (key[5:], value)
            elif key.startswith("pattern"):
                self.pattern = (key[7:], value)
            elif key.startswith("minValue"):
                self.min_value = (key[8:], value)
            elif key.startswith("maxValue"):
                self.max_value = (key[8:], value)
        self.max_length: int | None = ed.get("maxLength")
        regexes = [x.get("valueString") for x in ed.get("extension") or () if x.get("url") == EXT_REGEX]
        if not profile.is_base:
            regexes += [x.get("valueString") for t in ed.get("type") or () for x in t.get("extension") or ()
                        if x.get("url") == EXT_REGEX]
        self.regex: re.Pattern[str] | None = _compile_regex(next((r for r in regexes if r), None))
        binding = ed.get("binding") or {}
        self.binding: tuple[str, str] | None = None
        if binding.get("strength") in CHECKED_STRENGTHS and binding.get("valueSet"):
            self.binding = (binding["strength"], binding["valueSet"])
        self.constraints: tuple[dict[str, Any], ...] = tuple(
            c for c in ed.get("constraint") or () if c.get("expression"))
        self.slicing: Slicing | None = Slicing(ed["slicing"]) if ed.get("slicing") else None
        self.slices: list[Node] = []
        self.children: dict[str, Node] = {}
        self.json_children: dict[str, Node] = {}
        self.content_reference: str | None = ed.get("contentReference")
        codes = [t.code for t in self.types]
        if len(codes) == 1 and codes[0] not in _INLINE_TYPES and codes[0][:1].isupper():
            self.fhirpath_type = codes[0]
        else:
            self.fhirpath_type = (ed.get("base") or {}).get("path") or self.path
        self.trivial = False
        self.matcher: Any = None  # the slice matcher of a sliced element (slicing.py), built on first use

    def __repr__(self) -> str:
        return f"Node({self.id} {self.min}..{'*' if self.max is None else self.max})"

    @property
    def cardinality(self) -> str:
        return f"{self.min}..{'*' if self.max is None else self.max}"

    def child(self, name: str) -> Node | None:
        return self.children.get(name)

    def slice(self, name: str) -> Node | None:
        for s in self.slices:
            if s.slice_name == name:
                return s
        return None

    def type_urls(self, code: str | None = None) -> list[str]:
        """The StructureDefinitions an item of this element conforms to, for its type `code`: the
        profiles on the type, else the type's base definition."""
        spec = self.by_code.get(code) if code else (self.types[0] if len(self.types) == 1 else None)
        if spec is not None and spec.profiles:
            return list(spec.profiles)
        if code is None:
            code = spec.code if spec else None
        return [FHIR_BASE + code] if code else []


class Profile:
    """One StructureDefinition compiled."""

    def __init__(self, profiles: Profiles, sd: dict[str, Any]):
        self.profiles = profiles
        self.definitions = profiles.definitions
        self.sd = sd
        self.url: str = sd["url"]
        self.version: str | None = sd.get("version")
        self.name: str = sd.get("name") or sd.get("id") or self.url.rsplit("/", 1)[-1]
        self.type: str = sd.get("type") or ""
        self.kind: str = sd.get("kind") or ""
        self.is_base: bool = sd.get("derivation") != "constraint"
        self.by_id: dict[str, Node] = {}
        root: Node | None = None
        for ed in sd["snapshot"]["element"]:
            node = Node(self, ed)
            if root is None:
                root = node
                self.by_id[node.id] = node
                continue
            segments = split_id(node.id, node.path)
            name, slice_name = segments[-1]
            cut = len(name) + (len(slice_name) + 1 if slice_name is not None else 0)
            parent_id = node.id[: len(node.id) - cut - 1]
            if slice_name is not None:
                sliced_id = parent_id + "." + name + (":" + slice_name.rsplit("/", 1)[0] if "/" in slice_name else "")
                sliced = self.by_id.get(sliced_id)
                if sliced is None:
                    raise SnapshotError(f"{self.url}: {node.id} comes before the element it slices")
                sliced.slices.append(node)
            else:
                parent = self.by_id.get(parent_id)
                if parent is None:
                    raise SnapshotError(f"{self.url}: {node.id} has no parent {parent_id}")
                parent.children[node.name] = node
            self.by_id[node.id] = node
        if root is None:
            raise SnapshotError(f"{self.url}: empty snapshot")
        self.root = root
        by_path = {n.path: n for n in self.by_id.values() if n.slice_name is None and ":" not in n.id}
        for node in self.by_id.values():
            if node.content_reference and not node.children:
                target = by_path.get(node.content_reference.split("#", 1)[-1])
                if target is not None:
                    node.children = target.children
                    if not node.types:
                        node.types, node.by_code = target.types, target.by_code
                    node.fhirpath_type = target.fhirpath_type
        for node in self.by_id.values():
            self._index_json(node)

    def __repr__(self) -> str:
        return f"Profile({self.url})"

    def label(self) -> str:
        return self.url if self.is_base else f"{self.name} ({self.url})"

    def _index_json(self, node: Node) -> None:
        """JSON property name → child (choices under each allowed typed name) for base trees."""
        for child in node.children.values():
            if child.choice_prefix:
                for spec in child.types:
                    node.json_children[child.choice_prefix + spec.json_suffix] = child
            else:
                node.json_children[child.name] = child
            # a base primitive without binding or invariant: nothing to check beyond the structure
            child.trivial = (self.is_base and child.primitive and child.binding is None
                             and not any(c.get("key") not in NATIVE_KEYS for c in child.constraints))


# Invariants that hold on every element and are checked by a JSON scan (see invariant_scan.py).
NATIVE_KEYS = frozenset({"ele-1", "ext-1"})


def _compile_regex(pattern: str | None) -> re.Pattern[str] | None:
    if not pattern:
        return None
    try:
        return re.compile(pattern, re.ASCII)
    except re.error:
        return None


class Profiles:
    """Compiled profiles of one `Definitions`, by canonical URL, built on first use."""

    def __init__(self, definitions: Definitions):
        self.definitions = definitions
        self.snapshots = snapshots_for(definitions)
        self._profiles: dict[str, Profile | None] = {}
        self._errors: dict[str, str] = {}
        self._lock = threading.RLock()
        self._suffixes: dict[str, str] = {}
        for code in definitions.data_types:
            self._suffixes[code[:1].upper() + code[1:]] = code

    def get(self, url: str) -> Profile | None:
        """The compiled StructureDefinition at `url` (`url|version` accepted); None if unknown
        or unusable (`error(url)` says why)."""
        url = canonical(url)
        try:
            return self._profiles[url]
        except KeyError:
            pass
        with self._lock:
            if url in self._profiles:
                return self._profiles[url]
            profile: Profile | None = None
            try:
                sd = self.snapshots.structure_definition(url)
                if sd is None:
                    error = self.snapshots.error(url)
                    self._errors[url] = error or "no StructureDefinition with this URL is loaded"
                else:
                    profile = Profile(self, sd)
            except Exception as exc:  # noqa: BLE001 — a broken definition is reported, never raised
                self._errors[url] = f"its snapshot is unusable: {type(exc).__name__}: {exc}"
            self._profiles[url] = profile
            return profile

    def error(self, url: str) -> str | None:
        return self._errors.get(canonical(url))

    def base(self, type_code: str) -> Profile | None:
        return self.get(FHIR_BASE + type_code)

    def type_of_suffix(self, suffix: str) -> str | None:
        """`Quantity` → `Quantity`, `DateTime` → `dateTime` (the type named by a choice's JSON name)."""
        return self._suffixes.get(suffix)


_shared: weakref.WeakKeyDictionary[Definitions, Profiles] = weakref.WeakKeyDictionary()
_shared_lock = threading.Lock()


def profiles_for(definitions: Definitions) -> Profiles:
    with _shared_lock:
        profiles = _shared.get(definitions)
        if profiles is None:
            profiles = _shared[definitions] = Profiles(definitions)
        return profiles
