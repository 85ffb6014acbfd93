"""Which packages the server runs on: the R4 core, then `FHIR_PACKAGES`, with their dependencies.

`FHIR_PACKAGES` is a comma-separated list of `NAME@VERSION` (taken from the cache, installed on
demand), paths to a `.tgz` (installed into the cache) or folders (read where they are).
Dependencies are looked up in the cache only: the exact version, else another version of the
same package with a warning; a dependency that is nowhere is a warning, never a failure to
start. `fhir-server packages install --dependencies` fetches them, for those who want them all.
A package named or built wrongly (a bad name or version, an unsafe or oversized archive) is
another matter: `PackageRefused`, and the server does not start.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from fhir_server.definitions.packages import (
    Package,
    PackageCache,
    PackageError,
    PackageRefused,
    open_package,
    parse_spec,
)
from fhir_server.definitions.registry import CORE_PACKAGES, Definitions, ensure_core

log = logging.getLogger(__name__)
_CORE_NAMES = {name for name, _ in CORE_PACKAGES}


@dataclass
class Loaded:
    packages: list[Package]
    warnings: list[str] = field(default_factory=list)


def resolve(cache: PackageCache, specs: list[str]) -> Loaded:
    """The core package first, then the named packages, each after its dependencies. One
    version per package name: canonical URLs are the same across versions, so the highest
    version asked for wins (with a warning for whoever wanted another)."""
    core = ensure_core(cache)
    loaded = Loaded([core])
    chosen: dict[str, Package] = {}
    for spec in specs:
        try:
            folder = Path(spec).expanduser()
            # a folder is read where it is (our own guide in profiles/ among them): no stale copy
            package = open_package(folder) if folder.is_dir() else cache.install(spec)
        except PackageRefused as exc:
            raise PackageRefused(f"FHIR_PACKAGES: {spec}: {exc}") from None
        except PackageError as exc:
            loaded.warnings.append(f"package {spec} not loaded: {exc}")
            continue
        other = chosen.get(package.name)
        if other is None or _version_key(package.version) > _version_key(other.version):
            if other is not None:
                loaded.warnings.append(f"{package.name}: #{package.version} loaded, #{other.version} left out "
                                       f"(one version per package)")
            chosen[package.name] = package
    seen = {n for n in _CORE_NAMES}
    for package in chosen.values():
        _add(cache, package, loaded, seen, chosen)
    for warning in loaded.warnings:
        log.warning("%s", warning)
    return loaded


def _version_key(version: str) -> tuple:
    return tuple(int(p) if p.isdigit() else -1 for p in version.replace("-", ".").split("."))


def _add(cache: PackageCache, package: Package, loaded: Loaded, seen: set[str], chosen: dict[str, Package]) -> None:
    if package.name in seen:
        return
    seen.add(package.name)
    for name, version in package.dependencies.items():
        if name in _CORE_NAMES:
            continue
        dependency = chosen.get(name) or _dependency(cache, package, name, version, loaded)
        if dependency is None:
            continue
        if dependency.version != version and name in chosen:
            loaded.warnings.append(f"{package.name}#{package.version} needs {name}#{version}; "
                                   f"{name}#{dependency.version} is loaded")
        _add(cache, dependency, loaded, seen, chosen)
    loaded.packages.append(package)


def _dependency(cache: PackageCache, parent: Package, name: str, version: str, loaded: Loaded) -> Package | None:
    try:
        found = cache.get(name, version)
    except PackageRefused as exc:
        loaded.warnings.append(f"{parent.name}#{parent.version} names a dependency that cannot be: {exc}")
        return None
    if found is not None:
        return found
    others = sorted((v for n, v in cache.installed() if n == name), key=_version_key)
    if others:
        loaded.warnings.append(f"{parent.name}#{parent.version} needs {name}#{version}; using {name}#{others[-1]} "
                               f"from the cache instead")
        return cache.get(name, others[-1])
    loaded.warnings.append(f"{parent.name}#{parent.version} needs {name}#{version}, which is not in the cache: "
                           f"definitions from it are unknown here (fhir-server packages install {name}@{version})")
    return None


def dependency_warnings(cache: PackageCache, package: Package, install: bool = False) -> list[str]:
    """Dependencies of `package` (recursively) missing from the cache; with `install`, fetched
    first where a registry or npm has them."""
    warnings: list[str] = []
    seen: set[tuple[str, str]] = set()

    def walk(current: Package) -> None:
        for name, version in current.dependencies.items():
            if name in _CORE_NAMES or (name, version) in seen:
                continue
            seen.add((name, version))
            try:
                found = cache.get(name, version)
            except PackageRefused as exc:
                warnings.append(f"{current.name}#{current.version} names a dependency that cannot be: {exc}")
                continue
            if found is None and install:
                try:
                    found = cache.install(f"{name}@{version}")
                except PackageError as exc:
                    warnings.append(f"{current.name}#{current.version} needs {name}#{version}: {exc}")
                    continue
            if found is None:
                warnings.append(f"{current.name}#{current.version} needs {name}#{version}, which is not in the "
                                f"cache (fhir-server packages install {name}@{version}, or --dependencies)")
                continue
            walk(found)

    walk(package)
    return warnings


def load_definitions(cache: PackageCache, specs: list[str]) -> Definitions:
    loaded = resolve(cache, specs)
    definitions = Definitions(loaded.packages)
    definitions.warnings = loaded.warnings
    return definitions


def parse_packages_setting(value: str | None) -> list[str]:
    return [s.strip() for s in (value or "").split(",") if s.strip()]


def check_specs(specs: list[str]) -> None:
    """Refuse (PackageRefused) a spec of FHIR_PACKAGES that is neither an existing path nor a valid
    NAME@VERSION, before anything starts; what a path holds is checked when it is loaded."""
    for spec in specs:
        if not Path(spec).expanduser().exists():
            try:
                parse_spec(spec)
            except PackageRefused as exc:
                raise PackageRefused(f"FHIR_PACKAGES: {exc}") from None
