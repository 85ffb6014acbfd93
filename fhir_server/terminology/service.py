"""`Terminology`: the questions other modules ask about codes, answered from the loaded
packages and from ValueSets/CodeSystems stored on the server.

A canonical URL (`url` or `url|version`) is looked up in the packages first (first package
wins, as for every definition), then among stored resources through `find_stored`. A version
asked for is preferred; when only another version is held, that one is used (and expansions
say which in `used-codesystem`).

Caches (bounded LRU, shared by threads): one `CodeSystemIndex` per CodeSystem, and one full
expansion per ValueSet, keyed by where the ValueSet came from (package, or stored id and
version). A cached expansion remembers what it was computed from; those that came from stored
resources, or that were missing, are looked up again before it is reused, so a ValueSet or
CodeSystem written through the API is seen by the next question. Package content never changes
while the server runs.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

from fhir_server.terminology import expand as expanding
from fhir_server.terminology import expansion_render, membership, ucum
from fhir_server.terminology import lookup as looking
from fhir_server.terminology import validate_code as validating
from fhir_server.terminology.codesystems import CodeSystemIndex
from fhir_server.terminology.errors import TerminologyError
from fhir_server.terminology.expand import Entry, Expansion

FindStored = Callable[[str, str], "dict[str, Any] | None"]
PACKAGE = "package"
MISSING: tuple = ("missing",)


class _LRU:
    def __init__(self, size: int):
        self.size = size
        self._items: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> Any:
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key: Hashable, value: Any) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


class Scope:
    """One question: each canonical is resolved once, and what an expansion read is recorded."""

    def __init__(self, terminology: Terminology):
        self.terminology = terminology
        self._memo: dict[tuple[str, str], tuple[dict[str, Any] | None, tuple]] = {}
        self._origin: dict[int, tuple] = {}  # id(resource) → fingerprint, for resources resolved here
        self._recorders: list[dict[tuple[str, str], tuple]] = []

    def resolve(self, type_: str, canonical: str) -> tuple[dict[str, Any] | None, tuple]:
        key = (type_, canonical)
        found = self._memo.get(key)
        if found is None:
            found = self.terminology._resolve(type_, canonical)
            self._memo[key] = found
            if found[0] is not None:
                self._origin[id(found[0])] = found[1]
        for recorder in self._recorders:
            recorder[key] = found[1]
        return found

    def valueset(self, canonical: str) -> dict[str, Any] | None:
        return self.resolve("ValueSet", canonical)[0]

    def codesystem(self, canonical: str) -> CodeSystemIndex | None:
        resource, fingerprint = self.resolve("CodeSystem", canonical)
        if resource is None:
            return None
        return self.terminology._index(resource, fingerprint)

    def expansion(self, valueset: dict[str, Any], seen: frozenset[str] = frozenset()) -> Expansion:
        return self.terminology._expansion(self, valueset, seen)


class Terminology:
    """Terminology questions over the loaded packages and the stored ValueSets/CodeSystems."""

    def __init__(self, definitions, find_stored: FindStored | None = None, cache_size: int = 256):
        self.definitions = definitions
        self.find_stored = find_stored
        self._indexes = _LRU(cache_size)
        self._expansions = _LRU(cache_size)
        self._piped: dict[tuple[str, str], tuple[Any, Any]] | None = None
        self._piped_loaded: dict[str, dict[str, Any]] = {}
        self._piped_lock = threading.Lock()

    # -- resources -------------------------------------------------------------------------------
    def valueset(self, url: str) -> dict[str, Any] | None:
        """A ValueSet by canonical URL (`url` or `url|version`)."""
        return Scope(self).valueset(url)

    def codesystem(self, url: str) -> dict[str, Any] | None:
        """A CodeSystem by canonical URL (`url` or `url|version`)."""
        return Scope(self).resolve("CodeSystem", url)[0]

    # -- questions -------------------------------------------------------------------------------
    def expand(self, valueset: dict[str, Any] | str, *, filter: str | None = None, offset: int = 0,
               count: int | None = None, include_designations: bool = False,
               active_only: bool = False) -> dict[str, Any]:
        """The ValueSet with its `expansion` (flat `contains`, in definition order; `total` counts
        the codes after `filter`/`active_only`, `offset`/`count` page them). TerminologyError when
        any part cannot be expanded here (`code` not-found for an unknown ValueSet)."""
        scope = Scope(self)
        resource = self._valueset(scope, valueset)
        expansion = scope.expansion(resource)
        return expansion_render.render(resource, expansion, filter=filter, offset=offset, count=count,
                                       include_designations=include_designations, active_only=active_only)

    def entries(self, valueset: dict[str, Any] | str) -> list[Entry]:
        """Every code of a ValueSet (the full expansion, not rendered); TerminologyError as `expand`."""
        scope = Scope(self)
        return list(scope.expansion(self._valueset(scope, valueset)).entries)

    def contains(self, valueset: dict[str, Any] | str, system: str | None, code: str) -> bool | None:
        """Whether `system|code` (any system when None) is in the ValueSet: True, False, or None
        when that cannot be told here (unknown ValueSet, code system not held, unknown filter)."""
        scope = Scope(self)
        resource = scope.valueset(valueset) if isinstance(valueset, str) else valueset
        if resource is None:
            return None
        try:
            return membership.member(scope, resource, system, code).state
        except TerminologyError:
            return None

    def validate_code(self, *, valueset: dict[str, Any] | str | None = None,
                      codesystem: dict[str, Any] | str | None = None, code: str | None = None,
                      system: str | None = None, display: str | None = None, coding: dict[str, Any] | None = None,
                      codeable_concept: dict[str, Any] | None = None, abstract: bool = False) -> dict[str, Any]:
        """`{"result": True | False | None, "message"?, "display"?}` (see validate_code.py). With
        neither a valueset nor a codesystem, each coding is checked against its own system.
        ValueError for missing or contradictory inputs; an unknown ValueSet/CodeSystem gives
        result None (cannot tell) with the reason."""
        codings = validating.codings_of(code, system, display, coding, codeable_concept)
        scope = Scope(self)
        results = []
        if valueset is not None:
            resource = scope.valueset(valueset) if isinstance(valueset, str) else valueset
            if resource is None:
                return {"result": None, "message": f"the value set {valueset} is not known here"}
            for c in codings:
                results.append(validating.in_valueset(scope, resource, c, abstract))
        else:
            for c in codings:
                results.append(self._in_codesystem(scope, codesystem, c, abstract))
        return validating.combine(results)

    def _in_codesystem(self, scope: Scope, codesystem: dict[str, Any] | str | None, coding: dict[str, Any],
                       abstract: bool) -> dict[str, Any]:
        if isinstance(codesystem, dict):
            cs = CodeSystemIndex(codesystem)
        else:
            url = codesystem or coding.get("system")
            if not url:
                return {"result": None, "message": f"the code {coding['code']!r} has no system to validate it in"}
            cs = scope.codesystem(url)
            if cs is None and url == ucum.SYSTEM:
                error = ucum.syntax_error(coding["code"])
                if error:
                    return {"result": False, "message": f"{coding['code']!r} is not a UCUM code: {error}"}
                return {"result": None, "message": f"{coding['code']!r} is a well-formed UCUM code, but the UCUM "
                                                   f"units are not held here to tell whether it is one"}
            if cs is None:
                return {"result": None, "message": f"cannot tell whether {coding['code']!r} is a code of {url}: "
                                                   f"that code system is not held here"}
        return validating.in_codesystem(cs, coding, abstract)

    def lookup(self, system: str, code: str, version: str | None = None,
               properties: list[str] | None = None) -> dict[str, Any] | None:
        """`{"name", "version"?, "display", "abstract"?, "designation": [...], "property": [{"code",
        "value[x]"}]}`, or None for a code the system does not have; TerminologyError when the
        system (or that version of it) is not held, or held without its codes."""
        return looking.lookup(Scope(self), system, code, version, properties)

    def subsumes(self, system: str, code_a: str, code_b: str, version: str | None = None) -> str | None:
        """equivalent | subsumes | subsumed-by | not-subsumed; None when the system is not held."""
        return looking.subsumes(Scope(self), system, code_a, code_b, version)

    def hierarchy(self, system: str, code: str, direction: str) -> set[str]:
        """The code and every code below it (`below`) or above it (`above`) in its system;
        TerminologyError if the system is not held or the code is not one of its codes."""
        cs = looking.held(Scope(self), system)
        if cs.get(code) is None:
            raise TerminologyError(f"{code!r} is not a code of {system}", "not-found")
        keys = cs.descendants(code) if direction == "below" else cs.ancestors(code)
        return {cs.concepts[k].code for k in keys if k in cs.concepts} | {cs.get(code).code}

    # -- internals -------------------------------------------------------------------------------
    def _valueset(self, scope: Scope, valueset: dict[str, Any] | str) -> dict[str, Any]:
        if isinstance(valueset, dict):
            return valueset
        resource = scope.valueset(valueset)
        if resource is None:
            raise TerminologyError(f"ValueSet {valueset} is not known here: not in the loaded packages nor stored "
                                   f"on this server", "not-found")
        return resource

    def _resolve(self, type_: str, canonical: str) -> tuple[dict[str, Any] | None, tuple]:
        url, _, version = canonical.partition("|")
        if not url:
            return None, MISSING
        if version:
            piped = self._piped_url(type_, canonical)
            if piped is not None:
                return piped, (PACKAGE, canonical)
        found = self.definitions.resource(url)
        if found is not None and found.get("resourceType") == type_:
            if not version or found.get("version") in (None, version):
                return found, (PACKAGE, url)
            stored = self._stored(type_, url, version, exact=True)
            return stored if stored[0] is not None else (found, (PACKAGE, url))
        return self._stored(type_, url, version)

    def _piped_url(self, type_: str, canonical: str) -> dict[str, Any] | None:
        """Some R4 core resources have a `|` inside their url (the v2 tables of older versions:
        `http://terminology.hl7.org/CodeSystem/v2-0006|2.1`); the registry reads `|` as a
        version separator, so these are found here by their whole url."""
        with self._piped_lock:
            if self._piped is None:
                self._piped = {(entry.resourceType, entry.url): (package, entry)
                               for type_name in ("CodeSystem", "ValueSet")
                               for package, entry in self.definitions.entries(type_name)
                               if entry.url and "|" in entry.url}
            hit = self._piped.get((type_, canonical))
            if hit is None:
                return None
            loaded = self._piped_loaded.get(canonical)
            if loaded is None:
                package, entry = hit
                loaded = self._piped_loaded[canonical] = package.load(entry.filename)
            return loaded

    def _stored(self, type_: str, url: str, version: str, exact: bool = False) -> tuple[dict[str, Any] | None, tuple]:
        if self.find_stored is None:
            return None, MISSING
        found = self.find_stored(type_, f"{url}|{version}") if version else None
        if found is None and not exact:
            found = self.find_stored(type_, url)
        if found is None or found.get("resourceType") != type_:
            return None, MISSING
        meta = found.get("meta") or {}
        return found, ("stored", found.get("id"), meta.get("versionId"), meta.get("lastUpdated"))

    def _index(self, resource: dict[str, Any], fingerprint: tuple) -> CodeSystemIndex:
        key = ("CodeSystem", resource.get("url"), fingerprint)
        index = self._indexes.get(key)
        if index is None:
            index = CodeSystemIndex(resource)
            self._indexes.put(key, index)
        return index

    def _expansion(self, scope: Scope, valueset: dict[str, Any], seen: frozenset[str]) -> Expansion:
        fingerprint = scope._origin.get(id(valueset))
        if fingerprint is None:  # given inline: computed each time
            return expanding.compute(scope, valueset, seen)
        key = ("ValueSet", valueset.get("url"), fingerprint)
        cached = self._expansions.get(key)
        if cached is not None:
            depends, expansion = cached
            if all(fp[0] == PACKAGE or scope.resolve(t, c)[1] == fp for (t, c), fp in depends.items()):
                for recorder in scope._recorders:
                    recorder.update(depends)
                return expansion
        recorder: dict[tuple[str, str], tuple] = {}
        scope._recorders.append(recorder)
        try:
            expansion = expanding.compute(scope, valueset, seen)
        finally:
            scope._recorders.pop()
        for outer in scope._recorders:
            outer.update(recorder)
        self._expansions.put(key, (recorder, expansion))
        return expansion

    def clear(self) -> None:
        """Forget every cached index and expansion."""
        self._indexes.clear()
        self._expansions.clear()
