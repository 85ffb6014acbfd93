"""Profile validation: a resource checked against StructureDefinitions, as the reference
validator does, after the structural validator has accepted it.

    validator = ProfileValidator(definitions, terminology)
    issues = validator.validate(resource, ["https://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-patient"])

`validate(resource, profiles=(), *, base=True)` returns `Issue`s (an empty list: nothing to
say). With `base=True`, the resource is checked against its base definition — what the
structural validator does not see: `required`/`extensible` bindings, invariants (with their
severity), reference target types, extensions against their own definitions. Each URL of
`profiles` (`url` or `url|version`) is then checked in full: cardinality (narrowed, and per
slice), allowed types, `fixed[x]`/`pattern[x]`, slicing, bindings, invariants, reference
targets, type profiles (datatype and extension profiles, profiles on contained/entry
resources), primitive limits. An unknown profile gives one `warning` (`not-found`) that the
caller may escalate.

How the walk works: a compiled StructureDefinition (`profile_model.Profile`) is a tree of nodes;
the JSON is walked along it. An element whose children are not in the snapshot is checked
against its type's definition (the profile on the type when there is one, else the base
datatype), recursively, so datatype invariants and bindings (Period, Quantity, HumanName.use…)
apply everywhere. Nested resources (`contained`, `Bundle.entry.resource`…) are checked against
their own base definition, the profiles their element names and those they declare. Each (definition,
location) pair and each invariant or binding at a location is checked once per call, so
validating against a profile after the base costs only what the profile adds.

Expressions name the element as the structural validator does (`Patient.identifier[1].value`,
`Observation.valueQuantity`, `Bundle.entry[2].resource.name[0]`).

Extensions are also checked against their definition's `context` (`contexts.py`), and every Coding
against its code system when it is held here (`bindings.check_coding`).

A reference whose target is in the same resource or Bundle is checked against the target
profiles of a profile (`references.local_target`).

Not checked (yet): `fhirpath` extension contexts and `contextInvariant`; that a target stored
elsewhere conforms to a target *profile* (only its type is checked, from the reference
itself); `resolve()` in discriminators (information) and invariants (skipped);
`maxValueSet`/additional bindings; a modifier
extension that is not understood is a warning, not an error (R4 examples use made-up ones);
the INS-NIR key, checked by `ins.InsCheck` in the structural validator, is not checked again.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from fhir_server.definitions.registry import FHIR_BASE, Definitions
from fhir_server.errors import Issue
from fhir_server.validation import bindings, contexts, invariant_scan, slicing
from fhir_server.validation import values as values_mod
from fhir_server.validation.contexts import ExtensionContexts
from fhir_server.validation.invariants import Invariants
from fhir_server.validation.profile_model import NATIVE_KEYS, Node, Profile, Profiles, profiles_for
from fhir_server.validation.references import local_target, target_type

log = logging.getLogger(__name__)

_ANY_RESOURCE = ("Resource", "DomainResource")
_EXTENSION_ELEMENTS = ("extension", "modifierExtension")


class Item:
    """One value of an element in the instance: the JSON value, the `_name` companion of a
    primitive, where it is (expression), and its type."""

    __slots__ = ("code", "expr", "extra", "value")

    def __init__(self, value: Any, extra: Any, expr: str, code: str | None):
        self.value = value
        self.extra = extra
        self.expr = expr
        self.code = code

    def __repr__(self) -> str:
        return f"Item({self.expr}: {self.code})"


class _Context:
    """The resource being walked: for `%resource`, `%rootResource`, local references, and the
    place of an extension (`prefix`: the expression the resource starts at; None when the walk
    is not at the value's real place, as in a conformance test for a discriminator)."""

    __slots__ = ("_bundle_entries", "bundle", "prefix", "resource", "root")

    def __init__(self, resource: dict[str, Any], root: dict[str, Any], bundle: dict[str, Any] | None,
                 prefix: str | None):
        self.resource = resource
        self.root = root
        self.bundle = bundle
        self.prefix = prefix
        self._bundle_entries: dict[str, dict[str, Any]] | None = None

    def contained(self) -> list[Any]:
        contained = self.root.get("contained")
        return contained if isinstance(contained, list) else []

    def bundle_resource(self, full_url: str) -> dict[str, Any] | None:
        """The entry resource with this fullUrl (a relative `Type/id` also matches a fullUrl
        that ends with it, as the Bundle resolution rules allow)."""
        if self.bundle is None:
            return None
        if self._bundle_entries is None:
            self._bundle_entries = {}
            for entry in self.bundle.get("entry") or ():
                if isinstance(entry, dict) and isinstance(entry.get("fullUrl"), str) \
                        and isinstance(entry.get("resource"), dict):
                    self._bundle_entries[entry["fullUrl"]] = entry["resource"]
        found = self._bundle_entries.get(full_url)
        if found is None and "://" not in full_url and not full_url.startswith("urn:"):
            found = next((r for url, r in self._bundle_entries.items() if url.endswith("/" + full_url)), None)
        return found

    def bundle_type(self, full_url: str) -> str | None:
        found = self.bundle_resource(full_url)
        return found.get("resourceType") if found is not None else None


class _Run:
    """State of one `validate` call."""

    __slots__ = ("checked", "conformance", "issues", "trees")

    def __init__(self) -> None:
        self.issues: list[Issue] = []
        self.trees: set[tuple[str, str]] = set()  # (definition URL, expression) already walked
        self.checked: set[tuple] = set()  # invariants and bindings already evaluated at a place
        self.conformance: dict[tuple[int, str], bool] = {}  # (id(value), url) → conforms (slicing)


class ProfileValidator:
    """Validates resources against their base definitions and against profiles (thread-safe;
    compiled definitions and expressions are cached for the life of the `Definitions`)."""

    def __init__(self, definitions: Definitions, terminology: Any = None):
        self.definitions = definitions
        self.terminology = terminology
        self.profiles: Profiles = profiles_for(definitions)
        self.invariants = Invariants()
        self.contexts = ExtensionContexts(definitions)
        self._is_resource_type = definitions.is_resource_type

    # -- entry point ---------------------------------------------------------------------------
    def validate(self, resource: dict[str, Any], profiles: Iterable[str] = (), *, base: bool = True) -> list[Issue]:
        try:
            return self._validate(resource, profiles, base)
        except Exception as exc:  # noqa: BLE001 — a validator bug must not turn a write into a 500
            log.exception("profile validation failed on a %s", resource.get("resourceType")
                          if isinstance(resource, dict) else type(resource).__name__)
            return [Issue("warning", "exception", f"Profile validation could not be completed ({type(exc).__name__}: "
                                                  f"{str(exc)[:200]}); the resource was only partly validated", [])]

    def _validate(self, resource: dict[str, Any], profiles: Iterable[str], base: bool) -> list[Issue]:
        run = _Run()
        rt = resource.get("resourceType") if isinstance(resource, dict) else None
        if not isinstance(rt, str) or not self._is_resource_type(rt):
            return [Issue("error", "invalid", f"Not a resource of a known type ({rt!r}): validate it structurally "
                                              "first", [])]
        ctx = _Context(resource, resource, resource if rt == "Bundle" else None, rt)
        invariant_scan.scan(resource, rt, run.issues)
        if base:
            base_profile = self.profiles.base(rt)
            if base_profile is not None:
                self._resource(base_profile, resource, rt, ctx, run)
        for url in profiles:
            self._against(url, resource, rt, ctx, run)
        return _dedupe(run.issues)

    def declared_profiles(self, resource: dict[str, Any]) -> list[str]:
        """The profiles a resource claims in `meta.profile` (for callers that honour them)."""
        meta = resource.get("meta") if isinstance(resource, dict) else None
        found = meta.get("profile") if isinstance(meta, dict) else None
        return [p for p in found or () if isinstance(p, str)]

    def _against(self, url: str, resource: dict[str, Any], rt: str, ctx: _Context, run: _Run,
                 expr: str | None = None) -> None:
        """A profile the resource (at `expr`, the root by default) is to be checked against."""
        expr = expr or rt
        profile = self.profiles.get(url)
        if profile is None:
            reason = self.profiles.error(url) or "not loaded"
            run.issues.append(Issue("warning", "not-found",
                                    f"Profile {url} is unknown to this server ({reason}): the resource was not "
                                    "validated against it; load the package that defines it (FHIR_PACKAGES)", [expr]))
            return
        if profile.kind != "resource" or profile.type not in (rt, *_ANY_RESOURCE):
            run.issues.append(Issue("error", "invalid",
                                    f"Profile {url} describes a {profile.type or profile.kind}, not a {rt}: it "
                                    "cannot apply to this resource", [expr]))
            return
        _, _, version = url.partition("|")
        if version and profile.version and version != profile.version:
            run.issues.append(Issue("information", "informational",
                                    f"Profile {url}: version {profile.version} is the one loaded here and was used",
                                    [expr]))
        self._resource(profile, resource, expr, ctx, run)

    # -- walking -------------------------------------------------------------------------------
    def _resource(self, profile: Profile, resource: dict[str, Any], expr: str, ctx: _Context, run: _Run) -> None:
        key = (profile.url, expr)
        if key in run.trees:
            return
        run.trees.add(key)
        self._item(profile.root, Item(resource, None, expr, resource.get("resourceType")), ctx, run)

    def _conform(self, url: str, item: Item, ctx: _Context, run: _Run, node: Node) -> None:
        """Check an item against the definition of its type (or a profile on it)."""
        key = (url, item.expr)
        if key in run.trees:
            return
        run.trees.add(key)
        profile = self.profiles.get(url)
        if profile is None:
            if not url.startswith(FHIR_BASE):
                run.issues.append(Issue("warning", "not-found",
                                        f"Profile {url} (for {node.path} in {node.profile.label()}) is unknown to "
                                        f"this server ({self.profiles.error(url) or 'not loaded'}): this element was "
                                        "not validated against it", [item.expr]))
            return
        self._item(profile.root, item, ctx, run)

    def _element(self, node: Node, items: list[Item], parent_expr: str, ctx: _Context, run: _Run) -> None:
        """All the items of one element in one parent object."""
        profile = node.profile
        if not profile.is_base:
            count = len(items)
            if count < node.min or (node.max is not None and count > node.max):
                self._cardinality(node, items, parent_expr, run)
            if node.slices and node.slicing is not None and items:
                self._slices(node, items, parent_expr, ctx, run)
            elif node.slices and node.slicing is not None:
                for slice_node in node.slices:
                    if slice_node.min > 0:
                        self._cardinality(slice_node, [], parent_expr, run)
        for item in items:
            self._item(node, item, ctx, run)

    def _cardinality(self, node: Node, items: list[Item], parent_expr: str, run: _Run) -> None:
        count = len(items)
        name = node.choice_prefix or node.name
        where = f"{parent_expr}.{name}"
        label = node.profile.label()
        if node.slice_name is not None:
            what = f"Slice {node.slice_name!r} of {node.path}"
        else:
            what = node.path
        if count < node.min:
            run.issues.append(Issue("error", "required",
                                    f"{what}: at least {node.min} required by {label} ({node.cardinality}), "
                                    f"{count} found" + (": add it" if count == 0 else ""), [where]))
        else:
            run.issues.append(Issue("error", "structure",
                                    f"{what}: at most {node.max} allowed by {label} ({node.cardinality}), "
                                    f"{count} found", [items[node.max].expr if node.max is not None
                                                       and node.max < count else where]))

    def _slices(self, node: Node, items: list[Item], parent_expr: str, ctx: _Context, run: _Run) -> None:
        m = slicing.matcher(node, self.profiles)
        label = node.profile.label()
        if m.unsupported:
            key = ("slicing-unsupported", node.profile.url, node.id, parent_expr)
            if key not in run.checked:
                run.checked.add(key)
                run.issues.append(Issue("information", "informational",
                                        f"Slicing of {node.path} in {label}: discriminator "
                                        f"{', '.join(m.unsupported)} needs resolve() (the referenced resource), "
                                        "which is not followed here; the other discriminators decide",
                                        [f"{parent_expr}.{node.choice_prefix or node.name}"]))
        for slice_node in m.unmatchable:
            key = ("slice-unmatchable", node.profile.url, slice_node.id, parent_expr)
            if key not in run.checked:
                run.checked.add(key)
                run.issues.append(Issue("information", "informational",
                                        f"Slice {slice_node.slice_name!r} of {node.path} in {label} cannot be "
                                        f"recognised (discriminator {node.slicing.describe()} has no usable value in "  # type: ignore[union-attr]
                                        "the slice): its items and cardinality are not checked",
                                        [f"{parent_expr}.{node.choice_prefix or node.name}"]))

        def conforms(value: Any, code: str, url: str) -> bool:
            return self._conforms(value, code, url, ctx, run)

        chosen = slicing.assign(m, items, self.terminology, conforms)
        slicing.check_rules(m, items, chosen, parent_expr, label, run.issues)
        for index, slice_node in enumerate(node.slices):
            if slice_node in m.unmatchable:
                continue
            mine = [item for item, c in zip(items, chosen, strict=True) if c == index]
            self._element(slice_node, mine, parent_expr, ctx, run)

    def _conforms(self, value: Any, code: str, url: str, ctx: _Context, run: _Run) -> bool:
        """Does a value conform to a profile (no error)? For `profile` discriminators."""
        key = (id(value), url)
        known = run.conformance.get(key)
        if known is not None:
            return known
        run.conformance[key] = True  # assumed while it is worked out: references may go round in a cycle
        profile = self.profiles.get(url)
        if profile is None:
            result = False
        else:
            sub = _Run()
            if isinstance(value, dict) and "resourceType" in value:
                nested = _Context(value, value, ctx.bundle, None)
                if value.get("resourceType") != profile.type and profile.type not in _ANY_RESOURCE:
                    result = False
                    run.conformance[key] = result
                    return result
                invariant_scan.scan(value, "x", sub.issues)
                self._resource(profile, value, value["resourceType"], nested, sub)
            else:
                outside = _Context(ctx.resource, ctx.root, ctx.bundle, None)
                self._item(profile.root, Item(value, None, "x", code), outside, sub)
            result = not any(i.severity in ("error", "fatal") for i in sub.issues)
        run.conformance[key] = result
        return result

    def _item(self, node: Node, item: Item, ctx: _Context, run: _Run) -> None:
        """One value against one element definition."""
        profile = node.profile
        code = item.code
        value = item.value
        spec = None
        if node.types:
            spec = node.by_code.get(code) if code is not None else None
            if spec is None and code is not None and self._is_resource_type(code):
                spec = node.by_code.get("Resource") or node.by_code.get("DomainResource")
            if spec is None and not profile.is_base:
                allowed = ", ".join(t.code for t in node.types)
                run.issues.append(Issue("error", "structure",
                                        f"{node.path}: type {code} is not allowed by {profile.label()} (allowed: "
                                        f"{allowed})", [item.expr]))
                return
        if not profile.is_base and value is not None:
            self._values(node, item, run)
        if node.binding is not None and value is not None:
            key = ("binding", item.expr, node.binding)
            if key not in run.checked:
                run.checked.add(key)
                bindings.check(self.terminology, node.binding[0], node.binding[1], code or "", value, item.expr,
                               run.issues)
        if node.constraints:
            self._invariants(node, item, ctx, run)
        if code == "Reference" and spec is not None and isinstance(value, dict):
            if spec.target_types is not None:
                self._reference(node, spec.target_types, item, ctx, run)
            if spec.target_profiles and not profile.is_base:
                self._reference_profiles(node, spec.target_profiles, item, ctx, run)
        if node.primitive or (code is not None and code[:1].islower()):
            if isinstance(item.extra, dict) and item.extra.get("extension"):
                self._primitive_extensions(node, item, ctx, run)
            return
        if not isinstance(value, dict):
            return
        if code == "Extension" and ctx.prefix is not None:
            self._extension_context(item, ctx, run)
        elif code == "Coding" and ("coding", item.expr) not in run.checked:
            run.checked.add(("coding", item.expr))
            bindings.check_coding(self.terminology, value, item.expr, run.issues)
        if code is not None and node.types and "resourceType" in value:
            self._nested(node, spec, item, ctx, run)
            return
        if node.children:
            self._object(node, value, item.expr, ctx, run)
        if node.types and code is not None:
            urls = list(spec.profiles) if spec is not None and spec.profiles else [FHIR_BASE + code]
            if len(urls) == 1:
                self._conform(urls[0], item, ctx, run, node)
            else:
                self._any_of(urls, item, ctx, run, node)
            if code == "Extension" and not (spec is not None and spec.profiles):
                self._extension(node, item, ctx, run)

    def _any_of(self, urls: list[str], item: Item, ctx: _Context, run: _Run, node: Node) -> None:
        """An element typed with several profiles must conform to one of them."""
        attempts = []
        for url in urls:
            sub = _Run()
            sub.trees, sub.checked = set(run.trees), set(run.checked)
            self._conform(url, item, ctx, sub, node)
            errors = [i for i in sub.issues if i.severity in ("error", "fatal")]
            attempts.append((sub, errors))
            if not errors:
                run.issues.extend(sub.issues)
                run.trees |= sub.trees
                run.checked |= sub.checked
                return
        run.issues.append(Issue("error", "structure",
                                f"{node.path}: the value conforms to none of the profiles allowed by "
                                f"{node.profile.label()}: {', '.join(urls)}", [item.expr]))
        run.issues.extend(attempts[0][0].issues)

    def _values(self, node: Node, item: Item, run: _Run) -> None:
        value = item.value
        label = node.profile.label()
        if node.fixed is not None and not values_mod.equals(node.fixed[1], value):
            run.issues.append(Issue("error", "value",
                                    f"{node.path}: the value must be exactly {values_mod.show(node.fixed[1])} "
                                    f"(fixed by {label}), not {values_mod.show(value)}", [item.expr]))
        if node.pattern is not None and not values_mod.contains(node.pattern[1], value):
            verb = "contain" if isinstance(node.pattern[1], (dict, list)) else "be"
            run.issues.append(Issue("error", "value",
                                    f"{node.path}: the value must {verb} {values_mod.show(node.pattern[1])} "
                                    f"(pattern of {label}), not {values_mod.show(value)}", [item.expr]))
        if node.primitive and not isinstance(value, (dict, list)) and (
                node.max_length is not None or node.regex is not None or node.min_value is not None
                or node.max_value is not None):
            for problem in values_mod.primitive_problems(node, value):
                run.issues.append(Issue("error", "value", f"{node.path}: {problem} ({label})", [item.expr]))
        elif not node.primitive and isinstance(value, dict) and (node.min_value or node.max_value):
            for problem in values_mod.primitive_problems(node, value):
                run.issues.append(Issue("error", "value", f"{node.path}: {problem} ({label})", [item.expr]))

    def _invariants(self, node: Node, item: Item, ctx: _Context, run: _Run) -> None:
        code = item.code
        if code and code[:1].isupper() and code not in ("BackboneElement", "Element") \
                and not self._is_resource_type(code):
            type_path = code
        elif code and code[:1].islower():
            type_path = code
        else:
            type_path = node.fhirpath_type
        for constraint in node.constraints:
            key_name = constraint.get("key")
            if key_name in NATIVE_KEYS:
                continue
            key = ("invariant", item.expr, key_name, constraint["expression"])
            if key in run.checked:
                continue
            run.checked.add(key)
            self.invariants.check(constraint, item.value, item.extra, type_path, ctx.resource, ctx.root,
                                  item.expr, run.issues)

    def _reference(self, node: Node, allowed: frozenset[str], item: Item, ctx: _Context, run: _Run) -> None:
        found = target_type(item.value, ctx, self._is_resource_type)
        if found is None or found in allowed:
            return
        if any(self.definitions.is_a(found, a) for a in allowed):
            return
        key = ("reference", item.expr)
        if key in run.checked:
            return
        run.checked.add(key)
        run.issues.append(Issue("error", "structure",
                                f"{node.path}: a reference to {_a(found)} is not allowed here; it must point to "
                                f"{' or '.join(_a(t) for t in sorted(allowed))}", [item.expr]))

    def _reference_profiles(self, node: Node, urls: tuple[str, ...], item: Item, ctx: _Context, run: _Run) -> None:
        """A target in the same resource or Bundle conforms to one of the target profiles."""
        target = local_target(item.value, ctx)
        rt = target.get("resourceType") if isinstance(target, dict) else None
        if not isinstance(rt, str):
            return
        candidates = []
        for url in urls:
            if url == FHIR_BASE + rt:
                return  # the base type is allowed: any resource of that type conforms
            profile = self.profiles.get(url)
            if profile is not None and profile.type in (rt, *_ANY_RESOURCE):
                candidates.append(url)
        if not candidates:
            return  # unknown profiles, or a type the type check reports
        if any(self._conforms(target, rt, url, ctx, run) for url in candidates):
            return
        run.issues.append(Issue("error", "structure",
                                f"{node.path}: the {rt} it points to ({item.value['reference']}) does not conform to "
                                f"{' or '.join(candidates)}, as {node.profile.label()} requires: validate that "
                                f"{rt} against {'that profile' if len(candidates) == 1 else 'them'}", [item.expr]))

    def _primitive_extensions(self, node: Node, item: Item, ctx: _Context, run: _Run) -> None:
        """The extensions in a primitive's `_name` companion."""
        holder = node.children.get("extension")
        if holder is None:
            base = self.profiles.base(item.code) if item.code else None
            holder = base.root.children.get("extension") if base is not None else None
        if holder is None:
            return
        extensions = item.extra["extension"]
        if not isinstance(extensions, list):
            return
        items = [Item(e, None, f"{item.expr}.extension[{i}]", "Extension") for i, e in enumerate(extensions)
                 if isinstance(e, dict)]
        self._element(holder, items, item.expr, ctx, run)

    def _extension(self, node: Node, item: Item, ctx: _Context, run: _Run) -> None:
        """An extension not typed by a profile here: checked against its own definition, by url."""
        url = item.value.get("url")
        if not isinstance(url, str) or ":" not in url:
            return  # a relative url names a part of a complex extension: its parent's definition covers it
        profile = self.profiles.get(url)
        if profile is None:
            key = ("unknown-extension", item.expr)
            if key not in run.checked:
                run.checked.add(key)
                modifier = node.name == "modifierExtension"
                run.issues.append(Issue("warning", "not-found",
                                        f"Unknown {'modifier ' if modifier else ''}extension {url}: no loaded "
                                        "package defines it, so its content was not checked"
                                        + (" (a modifier extension changes the meaning of the element: check it is "
                                           "understood)" if modifier else ""), [item.expr]))
            return
        if profile.type != "Extension":
            run.issues.append(Issue("error", "structure",
                                    f"{url} is a StructureDefinition of a {profile.type}, not an extension",
                                    [item.expr + ".url"]))
            return
        self._conform(profile.url, item, ctx, run, node)

    def _extension_context(self, item: Item, ctx: _Context, run: _Run) -> None:
        """An extension is only used where its definition's `context` allows it."""
        url = item.value.get("url")
        key = ("context", item.expr)
        if not isinstance(url, str) or ":" not in url or key in run.checked:
            return
        run.checked.add(key)
        profile = self.profiles.get(url)
        if profile is None or profile.type != "Extension":
            return  # unknown or not an extension: _extension says so
        problem = self.contexts.problem(profile.sd, ctx.resource, ctx.prefix or "", item.expr)
        if problem is not None:
            run.issues.append(Issue(contexts.severity(url), "structure", problem[:1].upper() + problem[1:],
                                    [item.expr]))

    def _nested(self, node: Node, spec: Any, item: Item, ctx: _Context, run: _Run) -> None:
        resource = item.value
        rt = resource.get("resourceType")
        if not isinstance(rt, str):
            return
        contained = node.name == "contained"
        bundle = ctx.resource if ctx.resource.get("resourceType") == "Bundle" else ctx.bundle
        nested = _Context(resource, ctx.root if contained else resource, bundle, item.expr)
        base = self.profiles.base(rt)
        if base is not None:
            self._resource(base, resource, item.expr, nested, run)
        for url in self.declared_profiles(resource):  # as the reference validator does for entries
            self._against(url, resource, rt, nested, run, item.expr)
        if spec is not None and spec.profiles:
            urls = [u for u in spec.profiles if u != FHIR_BASE + rt]
            for url in urls:
                profile = self.profiles.get(url)
                if profile is None:
                    self._conform(url, item, nested, run, node)  # reports it unknown
                elif profile.type in (rt, *_ANY_RESOURCE):
                    self._resource(profile, resource, item.expr, nested, run)
                else:
                    run.issues.append(Issue("error", "structure",
                                            f"{node.path}: a {rt} cannot be used here, {node.profile.label()} "
                                            f"requires a {profile.type} conforming to {url}", [item.expr]))

    def _object(self, node: Node, obj: dict[str, Any], expr: str, ctx: _Context, run: _Run) -> None:
        """The children of a complex value."""
        if node.profile.is_base:
            json_children = node.json_children
            for key, value in obj.items():
                if key[:1] == "_":
                    name = key[1:]
                    if name in obj:
                        continue  # taken with its value
                    child = json_children.get(name)
                    if child is None:
                        continue
                    self._element(child, self._items(child, name, None, value, expr), expr, ctx, run)
                    continue
                child = json_children.get(key)
                if child is None:
                    continue
                extra = obj.get("_" + key) if child.primitive else None
                if child.trivial and extra is None:
                    continue
                self._element(child, self._items(child, key, value, extra, expr), expr, ctx, run)
            return
        for child in node.children.values():
            prefix = child.choice_prefix
            if prefix is None:
                name = child.name
                value = obj.get(name)
                extra = obj.get("_" + name)
                items = self._items(child, name, value, extra, expr) if value is not None or extra is not None else []
            else:
                items = []
                for key in obj:
                    bare = key[1:] if key[:1] == "_" else key
                    if key[:1] == "_" and bare in obj:
                        continue
                    if bare.startswith(prefix) and len(bare) > len(prefix) and bare[len(prefix)].isupper() \
                            and self.profiles.type_of_suffix(bare[len(prefix):]) is not None:
                        items.extend(self._items(child, bare, obj.get(bare), obj.get("_" + bare), expr))
            self._element(child, items, expr, ctx, run)

    def _items(self, node: Node, key: str, value: Any, extra: Any, expr: str) -> list[Item]:
        """The JSON of one property (and its `_` companion) as items."""
        prefix = node.choice_prefix
        if prefix is not None:
            code: str | None = self.profiles.type_of_suffix(key[len(prefix):])
        elif len(node.types) == 1:
            code = node.types[0].code
        else:
            code = None
        path = f"{expr}.{key}"
        resource_typed = code is None or code in _ANY_RESOURCE or (code[:1].isupper() and self._is_resource_type(code))
        if not node.is_array:
            if value is None and extra is None:
                return []
            if resource_typed and isinstance(value, dict):
                code = value.get("resourceType") or code
            return [Item(value, extra, path, code)]
        values = value if isinstance(value, list) else ([] if value is None else [value])
        extras = extra if isinstance(extra, list) else []
        out = []
        for i in range(max(len(values), len(extras))):
            v = values[i] if i < len(values) else None
            x = extras[i] if i < len(extras) else None
            if v is None and x is None:
                continue
            item_code = v.get("resourceType") or code if resource_typed and isinstance(v, dict) else code
            out.append(Item(v, x, f"{path}[{i}]", item_code))
        return out


def _a(word: str) -> str:
    return ("an " if word[:1] in "AEIOU" else "a ") + word


def _dedupe(issues: list[Issue]) -> list[Issue]:
    seen = set()
    out = []
    for issue in issues:
        key = (issue.severity, issue.code, issue.diagnostics, tuple(issue.expression))
        if key not in seen:
            seen.add(key)
            out.append(issue)
    return out
