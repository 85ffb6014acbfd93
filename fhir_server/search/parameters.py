"""The SearchParameter registry: every SearchParameter of the loaded packages (and those created
through the API), by resource type and code, with compiled extractors and index rules."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any

from fhir_server.search.extract import Extractor, compile_expression
from fhir_server.search.params import (
    composite,
    date,
    number,
    quantity,
    reference,
    special,
    string,
    token,
    uri,
)

log = logging.getLogger(__name__)

MODULES = {"token": token, "string": string, "date": date, "number": number, "quantity": quantity,
           "reference": reference, "uri": uri, "composite": composite, "special": special}
# Parameters answered from the stored document itself rather than from `ix`.
NOT_INDEXED = frozenset({"_id"})


@dataclass
class SearchParam:
    code: str
    type: str  # number | date | string | token | reference | composite | quantity | uri | special
    url: str
    expression: str | None
    base: tuple[str, ...]
    targets: tuple[str, ...] = ()
    component_defs: tuple[tuple[str, str], ...] = ()  # (definition url, relative expression)
    resource: dict[str, Any] | None = field(default=None, repr=False)
    extractor: Extractor | None = field(default=None, repr=False)
    compiled: bool = False
    components: list = field(default_factory=list, repr=False)  # [(SearchParam, Extractor)]


class SearchParameters:
    def __init__(self, definitions):
        self.definitions = definitions
        self._by_type: dict[str, dict[str, SearchParam]] = {}
        self._by_url: dict[str, SearchParam] = {}
        self._lock = threading.RLock()
        self.generation = 0  # bumped on every change, so caches keyed on it stay correct
        self._systems: dict[tuple[str, str], str | None] = {}
        bundle = self._core_bundle()
        for sp in bundle:  # the 1,375 of R4 core, as the spec publishes them
            self.add(sp)
        for package, entry in definitions.entries("SearchParameter"):
            if package is definitions.core and bundle:
                continue  # the core's loose files add examples (one redefines _id): not real parameters
            if entry.url not in self._by_url:
                self._add_from_package(definitions.load_entry(package, entry), package)
        # What the packages define: an API-written parameter may shadow one only by an explicit
        # switch (search/custom.py), and removing it brings the package's back.
        self._builtin_by_url: dict[str, SearchParam] = dict(self._by_url)
        self._builtin_by_type: dict[str, dict[str, SearchParam]] = {b: dict(c) for b, c in self._by_type.items()}

    def _core_bundle(self) -> list[dict[str, Any]]:
        """R4 publishes its parameters in `Bundle-searchParams.json`; the package's loose
        SearchParameter files add examples and extension parameters."""
        core = self.definitions.core
        for entry in core.entries("Bundle"):
            if entry.filename == "Bundle-searchParams.json":
                return [e["resource"] for e in core.load(entry.filename).get("entry", [])
                        if e.get("resource", {}).get("resourceType") == "SearchParameter"]
        return []

    # -- registry ------------------------------------------------------------------------------
    def _add_from_package(self, sp: dict[str, Any], package: Any) -> None:
        """A package's parameter takes the code of an earlier one on its bases, except where it
        only restates it: derived from it (`derivedFrom`), of the same type and expression on that
        base. The ANS PDSm guide restates List `patient` (without a target, so `patient=123` and
        `patient.identifier=` would find nothing or be ignored) and List `source` twice, once per
        target it expects: searches keep the parameter it derives from, and its url still names
        it. Any other redefinition replaces the earlier parameter, and the log says so."""
        if not isinstance(sp, dict) or sp.get("status") == "retired" or not sp.get("code") or not sp.get("type"):
            return
        bases = [b for b in sp.get("base") or () if isinstance(b, str)]
        held = {b: self._by_type.get(b, {}).get(sp["code"]) for b in bases}
        restated = [b for b, old in held.items() if old is not None and _restates(sp, old, b)]
        if restated and len(restated) == len(bases):
            param = self._param(sp)
            with self._lock:
                self._by_url[param.url] = param
                self.generation += 1
            log.info("%s: search parameter %s restates %s; searches on %r use the latter", package, param.url,
                     held[restated[0]].url, sp["code"])
            return
        for base, old in held.items():
            if old is not None and base not in restated:
                log.warning("%s: search parameter %s redefines %r of %s (%s) with another meaning; it replaces it",
                            package, sp.get("url"), sp["code"], base, old.url)
        self.add(sp)

    def _param(self, sp: dict[str, Any]) -> SearchParam:
        return SearchParam(
            code=sp["code"], type=sp["type"], url=sp.get("url") or f"urn:local:{sp.get('id')}",
            expression=sp.get("expression"), base=tuple(sp.get("base") or ()),
            targets=tuple(sp.get("target") or ()),
            component_defs=tuple((c.get("definition", ""), c.get("expression", ""))
                                 for c in sp.get("component") or ()), resource=sp)

    def add(self, sp: dict[str, Any]) -> SearchParam | None:
        """Register (or replace, by url) a SearchParameter resource."""
        if sp.get("status") == "retired" or not sp.get("code") or not sp.get("type"):
            return None
        param = self._param(sp)
        with self._lock:
            old = self._by_url.get(param.url)
            if old is not None:
                self._remove(old)
                self._restore(old)
            self._by_url[param.url] = param
            for base in param.base:
                self._by_type.setdefault(base, {})[param.code] = param
            self.generation += 1
        return param

    def remove(self, url: str) -> None:
        """Unregister a parameter; what it shadowed (another one written through the API, else the
        packages' definition of the same code and base, or of the same url) takes its place."""
        with self._lock:
            old = self._by_url.pop(url, None)
            if old is not None:
                self._remove(old)
                self._restore(old)
                self.generation += 1

    def _remove(self, param: SearchParam) -> None:
        for base in param.base:
            if self._by_type.get(base, {}).get(param.code) is param:
                del self._by_type[base][param.code]

    def _restore(self, gone: SearchParam) -> None:
        """After `gone` left: its url and every (base, code) it held go back to what remains."""
        builtin = self._builtin_by_url.get(gone.url)
        if builtin is not None and builtin is not gone and gone.url not in self._by_url:
            self._by_url[gone.url] = builtin
            for base in builtin.base:
                self._by_type.setdefault(base, {}).setdefault(builtin.code, builtin)
        for base in gone.base:
            codes = self._by_type.setdefault(base, {})
            if gone.code in codes:
                continue
            candidates = [p for p in self._by_url.values() if p.code == gone.code and base in p.base]
            custom = [p for p in candidates if self._builtin_by_url.get(p.url) is not p]
            replacement = (custom or [self._builtin_by_type.get(base, {}).get(gone.code)])[-1]
            if replacement is not None and self._by_url.get(replacement.url) is replacement:
                codes[gone.code] = replacement

    def builtin(self, base: str, code: str) -> SearchParam | None:
        """The packages' parameter `code` a search on `base` would use (its own, else one of
        DomainResource or Resource), whatever was written through the API."""
        chain = (base,) if base in ("Resource", "DomainResource") else (base, "DomainResource", "Resource")
        for name in chain:
            param = self._builtin_by_type.get(name, {}).get(code)
            if param is not None:
                return param
        return None

    def builtin_by_url(self, url: str) -> SearchParam | None:
        return self._builtin_by_url.get(url)

    def stored_url(self, resource_id: str) -> str | None:
        """The url under which the SearchParameter resource `resource_id` (written through the
        API) is registered, so that its deletion, seen by id only, unregisters it."""
        with self._lock:
            for param in self._by_url.values():
                if (param.resource or {}).get("id") == resource_id and self._builtin_by_url.get(param.url) is not param:
                    return param.url
        return None

    def get(self, resource_type: str, code: str) -> SearchParam | None:
        for base in (resource_type, "DomainResource", "Resource"):
            param = self._by_type.get(base, {}).get(code)
            if param is not None:
                return self._ready(param)
        return None

    def by_url(self, url: str) -> SearchParam | None:
        param = self._by_url.get(url.split("|", 1)[0])
        return self._ready(param) if param else None

    def for_type(self, resource_type: str) -> dict[str, SearchParam]:
        out: dict[str, SearchParam] = {}
        for base in ("Resource", "DomainResource", resource_type):
            out.update(self._by_type.get(base, {}))
        return {code: self._ready(p) for code, p in out.items()}

    def _ready(self, param: SearchParam) -> SearchParam:
        """Compile the extractor (and composite components) on first use."""
        if param.extractor is None:
            with self._lock:
                if param.extractor is None:
                    if param.type == "composite":
                        param.components = self._components(param)
                    extractor, param.compiled = (compile_expression(param.expression, self.definitions)
                                                 if param.expression else ((lambda resource: []), True))
                    param.extractor = extractor
        return param

    def _components(self, param: SearchParam) -> list:
        out = []
        for url, expression in param.component_defs:
            sub = self._by_url.get(url)
            if sub is None or not expression:
                log.warning("composite %s: component %s is unknown; the parameter is not indexed", param.url, url)
                return []
            extractor, _ = compile_expression(expression, self.definitions, relative=True)
            out.append((sub, extractor))
        return out

    # -- indexing ------------------------------------------------------------------------------
    def module(self, param: SearchParam):
        return MODULES[param.type]

    def index_param(self, param: SearchParam, code: str, items: list, base_urls: tuple[str, ...] = (),
                    resource: dict[str, Any] | None = None) -> dict[str, list[Any]]:
        module = self.module(param)
        resource_type = resource.get("resourceType") if resource else None
        if param.type == "composite":
            return module.index(code, items, param.components, self, resource)
        if param.type == "reference":
            return module.index(code, items, base_urls)
        if param.type == "token" and resource_type:
            return module.index(code, items, self.implied_system(resource_type, param))
        return module.index(code, items)

    def implied_system(self, resource_type: str, param: SearchParam) -> str | None:
        """The code system of a plain `code` element, implied by its required binding to a value
        set drawn from one code system (`Patient.gender` → administrative-gender), so that
        `gender=http://hl7.org/fhir/administrative-gender|male` and `:in` find it."""
        key = (resource_type, param.code)
        if key not in self._systems:
            self._systems[key] = self._implied_system(resource_type, param)
        return self._systems[key]

    def _implied_system(self, resource_type: str, param: SearchParam) -> str | None:
        from fhir_server.definitions.model import models_for

        model = models_for(self.definitions).resource(resource_type)
        for part in (param.expression or "").split("|"):
            element = model.element(part.strip()) if model else None
            if element is None or element.type_codes != ("code",):
                continue
            binding = element.definition.get("binding") or {}
            valueset = self.definitions.resource(binding.get("valueSet", "")) if binding.get("strength") == "required" \
                else None
            includes = ((valueset or {}).get("compose") or {}).get("include") or ()
            systems = {i.get("system") for i in includes}
            if len(systems) == 1 and None not in systems and not any(i.get("valueSet") for i in includes):
                return systems.pop()
        return None

    def index_resource(self, resource: dict[str, Any], base_urls: tuple[str, ...] = ()) -> dict[str, Any]:
        """The `ix` values of a resource: parameter code (+ `:suffix`) → stored values.
        References to `base_urls` (this server's) are indexed as `Type/id`."""
        out: dict[str, Any] = {}
        for code, param in self.for_type(resource["resourceType"]).items():
            if code in NOT_INDEXED or not param.expression:
                continue
            items = param.extractor(resource)
            if items:
                out.update(self.index_param(param, code, items, base_urls, resource))
        return out

    # -- queries -------------------------------------------------------------------------------
    def term_for(self, param: SearchParam, code: str, modifier: str | None, texts: list[str], ctx):
        module = self.module(param)
        if param.type == "reference":
            return module.term(code, modifier, texts, ctx, param.targets)
        if param.type == "composite":
            return module.term(code, modifier, texts, ctx, param.components, self)
        return module.term(code, modifier, texts, ctx)


def _restates(sp: dict[str, Any], old: SearchParam, base: str) -> bool:
    """`sp` searches the same thing as `old` on `base` — same type, and the same expression once
    reduced to its parts about `base` (a core expression unions many types) — and either derives
    from it, or both only split one parameter by the comparators they list (ANS GAP defines
    Appointment `start` twice, once for ge/gt and once for le/lt: one parameter, not two meanings)."""
    new_parts, old_parts = _parts(sp.get("expression"), base), _parts(old.expression, base)
    if sp.get("type") != old.type or not new_parts or new_parts != old_parts:
        return False
    derived = sp.get("derivedFrom")
    if isinstance(derived, str):
        return derived.split("|", 1)[0] == old.url
    return bool(sp.get("comparator")) and bool((old.resource or {}).get("comparator"))


def _parts(expression: Any, base: str) -> frozenset[str]:
    """The parts of a union expression about `base` (`List.source | Task.owner` → {List.source}),
    spaces removed; a part naming no type (`extension.where(…)`) counts for every base."""
    if not isinstance(expression, str):
        return frozenset()
    out = set()
    for part in expression.split("|"):
        part = "".join(part.split())
        if part.startswith(f"{base}.") or part == base or not part[:1].isupper():
            out.add(part)
    return frozenset(out)
