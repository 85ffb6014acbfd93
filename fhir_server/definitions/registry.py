"""The definitions the server runs on, gathered from the loaded FHIR packages.

What the server accepts (resource types, elements, later profiles, search parameters, value
sets) is whatever these packages say. Nothing here lists FHIR content by hand.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from typing import Any

from fhir_server.definitions.packages import IndexEntry, Package, PackageCache, PackageError

log = logging.getLogger(__name__)

FHIR_BASE = "http://hl7.org/fhir/StructureDefinition/"
# Either package carries the R4 definitions; the examples package is a superset on npm.
CORE_PACKAGES = (("hl7.fhir.r4.core", "4.0.1"), ("hl7.fhir.r4.examples", "4.0.1"))


def ensure_core(cache: PackageCache) -> Package:
    """The R4 core definitions from the cache, installing them on first use."""
    for name, version in CORE_PACKAGES:
        package = cache.get(name, version)
        if package:
            return package
    errors = []
    for name, version in CORE_PACKAGES:
        log.info("installing %s#%s into %s (first start)", name, version, cache.root)
        try:
            return cache.install(f"{name}@{version}")
        except PackageError as exc:
            errors.append(str(exc))
    raise PackageError("the FHIR R4 core definitions are not installed and could not be fetched: "
                       + " | ".join(errors)
                       + ". Install them with `fhir-server packages install PATH/TO/hl7.fhir.r4.core.tgz`.")


class Definitions:
    """Lookup of conformance resources by canonical URL across packages; first package wins."""

    def __init__(self, packages: list[Package]):
        if not packages:
            raise ValueError("at least the core package is needed")
        self.packages = list(packages)
        self.warnings: list[str] = []  # what could not be loaded (missing dependencies…)
        self._by_url: dict[str, tuple[Package, IndexEntry]] = {}
        self._cache: dict[tuple[str, str], dict[str, Any]] = {}
        self._lock = threading.Lock()
        for package in self.packages:
            for entry in package.index:
                if entry.url and entry.url not in self._by_url and entry.resourceType != "ImplementationGuide":
                    self._by_url[entry.url] = (package, entry)
        self.resource_types: tuple[str, ...] = tuple(sorted(
            entry.type for package, entry in self._by_url.values()
            if entry.resourceType == "StructureDefinition" and entry.kind == "resource"
            and entry.derivation == "specialization" and not entry.abstract and entry.type
            and entry.url == FHIR_BASE + entry.type))
        self._resource_type_set = frozenset(self.resource_types)
        # Data types and their parents (canonical → uri, SimpleQuantity → Quantity…), for casts.
        self._type_parent: dict[str, str | None] = {}
        for _package, entry in self._by_url.values():
            if (entry.resourceType == "StructureDefinition" and entry.kind in ("primitive-type", "complex-type")
                    and entry.type and entry.url == FHIR_BASE + entry.type):
                parent = (entry.baseDefinition or "").rsplit("/", 1)[-1] or None
                self._type_parent[entry.type] = parent
        self.data_types: frozenset[str] = frozenset(self._type_parent)
        # Names of choice elements anywhere (`value` of `value[x]`): only these can hide behind a
        # typed JSON name such as `valueQuantity`.
        self.choice_names: frozenset[str] = frozenset(
            name for package in self.packages for entry in package.index if entry.choices for name in entry.choices)

    @property
    def core(self) -> Package:
        return self.packages[0]

    def is_resource_type(self, name: str) -> bool:
        return name in self._resource_type_set

    def profiles(self, resource_type: str) -> list[str]:
        """Canonical URLs of the loaded profiles (constraints) on a resource type."""
        return sorted(entry.url for _, entry in self._by_url.values()
                      if entry.resourceType == "StructureDefinition" and entry.derivation == "constraint"
                      and entry.type == resource_type and entry.kind == "resource" and entry.url)

    def implementation_guides(self) -> list[str]:
        """Canonical URLs of the ImplementationGuides of the loaded packages (not the core's)."""
        out = []
        for package in self.packages[1:]:
            for entry in package.entries("ImplementationGuide"):
                if entry.url:
                    out.append(entry.url)
        return sorted(set(out))

    def is_a(self, type_: str, ancestor: str) -> bool:
        """True if `type_` is `ancestor` or derives from it (`canonical` is a `uri`)."""
        seen = 0
        while type_ and seen < 20:
            if type_ == ancestor:
                return True
            type_ = self._type_parent.get(type_)
            seen += 1
        return False

    def resource(self, url: str) -> dict[str, Any] | None:
        """A conformance resource by canonical URL (`url|version` accepted, version ignored)."""
        url = url.split("|", 1)[0]
        hit = self._by_url.get(url)
        if hit is None:
            return None
        package, entry = hit
        key = (package.name, entry.filename)
        with self._lock:
            cached = self._cache.get(key)
        if cached is None:
            cached = package.load(entry.filename)
            with self._lock:
                self._cache[key] = cached
        return cached

    def structure_definition(self, url_or_type: str) -> dict[str, Any] | None:
        """A StructureDefinition by URL, or a base type/resource by name (`Patient`, `HumanName`)."""
        url = url_or_type if "/" in url_or_type else FHIR_BASE + url_or_type
        res = self.resource(url)
        return res if res and res.get("resourceType") == "StructureDefinition" else None

    def entries(self, resource_type: str) -> Iterator[tuple[Package, IndexEntry]]:
        """Every indexed definition of a type (e.g. all SearchParameters), in package order."""
        for package, entry in self._by_url.values():
            if entry.resourceType == resource_type:
                yield package, entry

    def load_entry(self, package: Package, entry: IndexEntry) -> dict[str, Any]:
        return self.resource(entry.url) if entry.url else package.load(entry.filename)
