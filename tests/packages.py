"""Where the tests get their FHIR packages: the R4 core, and the French ones (FR Core, ANS volets).

The tests never write into the user's package cache (FHIR_PACKAGE_CACHE, default ~/.fhir/packages).
They have their own, in pytest's cache folder (`.pytest_cache/d/fhir/packages`, git-ignored, kept
between runs so that the R4 package is downloaded once); `configure()` points FHIR_PACKAGE_CACHE
there for the whole session, so the servers and commands the tests start use it too. A package
the user's cache already holds is copied from there (it is only read) instead of being downloaded.

A French package, `NAME-VERSION.tgz`, is looked for in this order:
1. the folder named by FHIR_TEST_PACKAGES;
2. `../shared/fhir-packages` beside the repository (as in CI);
3. the tests' package cache, then the user's;
4. the FHIR package registry (FHIR_PACKAGE_REGISTRY, default packages.fhir.org), then npm.
When none has it, the tests that need it are skipped, with a message saying how to provide it;
under CI=true they fail instead: CI never skips them.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import tarfile
import tempfile
from pathlib import Path

import pytest

from fhir_server.config import Settings
from fhir_server.definitions.packages import INDEX_FILE, Package, PackageCache, PackageError
from fhir_server.definitions.registry import CORE_PACKAGES, ensure_core

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "fhir-packages"
ENV_FOLDER = "FHIR_TEST_PACKAGES"

# The user's cache, as it was before configure() replaced FHIR_PACKAGE_CACHE: read, never written.
USER_CACHE = Path(os.environ.get("FHIR_PACKAGE_CACHE") or "~/.fhir/packages").expanduser()
# The tests' own folder (set by configure() to pytest's cache folder): `packages/` is a package
# cache, `archives/` holds the .tgz made from packages found in a cache or a registry.
_base = ROOT / ".pytest_cache" / "d" / "fhir"

FR_CORE = ("hl7.fhir.fr.core", "2.2.0")
TDDUI = ("ans.fhir.fr.tddui", "2.2.0")


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def configure(config: pytest.Config) -> None:
    """Called from pytest_configure: the session's FHIR_PACKAGE_CACHE is the tests' own cache."""
    global _base
    cache = getattr(config, "cache", None)  # None with `-p no:cacheprovider`
    _base = cache.mkdir("fhir") if cache is not None else _base
    os.environ["FHIR_PACKAGE_CACHE"] = str(_base / "packages")


def package_cache() -> PackageCache:
    """The tests' package cache (with the registry of FHIR_PACKAGE_REGISTRY)."""
    return PackageCache(_base / "packages", Settings.from_env().package_registry)


def _seed(cache: PackageCache, name: str, version: str) -> Package | None:
    """Copy NAME#VERSION from the user's cache into the tests' cache, if the user's has it."""
    found = PackageCache(USER_CACHE).get(name, version)
    if found is None or USER_CACHE.resolve() == cache.root.resolve():
        return None
    cache.root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=cache.root, prefix=".seed-"))
    try:
        shutil.copytree(found.root, tmp / "package")
        target = cache.folder(name, version)
        if not (target / "package" / "package.json").is_file():
            tmp.rename(target)  # complete or absent, as PackageCache does it
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return cache.get(name, version)


def install(name: str, version: str) -> Package:
    """NAME#VERSION in the tests' cache: already there, copied from the user's cache, or installed
    (FHIR registry, then npm)."""
    cache = package_cache()
    return cache.get(name, version) or _seed(cache, name, version) or cache.install(f"{name}@{version}")


def r4_core() -> Package:
    """The R4 core definitions in the tests' cache: hl7.fhir.r4.core or hl7.fhir.r4.examples 4.0.1,
    whichever is there or in the user's cache, else hl7.fhir.r4.examples (the tests need its examples)."""
    cache = package_cache()
    if not any(cache.get(*p) for p in CORE_PACKAGES) and not any(_seed(cache, *p) for p in CORE_PACKAGES):
        install("hl7.fhir.r4.examples", "4.0.1")
    return ensure_core(cache)


def _archive(package: Package) -> Path:
    """A .tgz of a package found in a cache (npm layout: everything under `package/`)."""
    target = _base / "archives" / f"{package.name}-{package.version}.tgz"
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        with tarfile.open(tmp, "w:gz") as tar:
            for path in sorted(package.root.rglob("*")):
                if path.is_file() and path.name != INDEX_FILE:
                    tar.add(path, arcname=f"package/{path.relative_to(package.root).as_posix()}")
        os.replace(tmp, target)
    return target


@functools.cache
def _lookup(name: str, version: str) -> tuple[Path | None, tuple[str, ...]]:
    """(the .tgz, ()) or (None, what was tried), in the order of the module docstring."""
    filename = f"{name}-{version}.tgz"
    tried = []
    folder = os.environ.get(ENV_FOLDER)
    places = [(Path(folder).expanduser(), ENV_FOLDER)] if folder else []
    places.append((SHARED, "beside the repository"))
    for place, why in places:
        if (place / filename).is_file():
            return place / filename, ()
        tried.append(f"{place / filename} ({why}): no such file")
    for cache in (package_cache(), PackageCache(USER_CACHE)):
        package = cache.get(name, version)
        if package is not None:
            return _archive(package), ()
        tried.append(f"package cache {cache.root}: no {name}#{version}")
    try:
        return _archive(package_cache().install(f"{name}@{version}")), ()
    except PackageError as exc:
        tried.append(str(exc))
    return None, tuple(tried)


def available(name: str, version: str) -> bool:
    """Whether the package can be had, without skipping or failing (for test collection)."""
    return _lookup(name, version)[0] is not None


def french_package(name: str, version: str) -> Path:
    """The .tgz of a French package. Skips the calling test when no place has it (fails it under CI=true)."""
    path, tried = _lookup(name, version)
    if path is not None:
        return path
    message = (
        f"FHIR package {name}#{version} not found. Put {name}-{version}.tgz in a folder and set "
        f"{ENV_FOLDER}=that-folder (CI has them in ../shared/fhir-packages beside the repository), "
        f"or install it into your package cache with `fhir-server packages install PATH/TO/{name}-{version}.tgz` "
        f"(or `fhir-server packages install {name}@{version}` where packages.fhir.org is reachable). "
        "Tried: " + "; ".join(tried))
    if in_ci():
        pytest.fail(f"{message} (CI=true: a missing package is a failure, not a skip)", pytrace=False)
    pytest.skip(message)


@functools.cache
def guide_dependencies() -> None:
    """Put FR Core, which the project's own guide (profiles/) depends on, in the tests' cache when it
    can be had, as a user would with `fhir-server packages install`: every server the tests start
    then loads it. Without it the servers start all the same (the guide's FR Core based rules are
    not checked) and the tests that need those rules skip or fail through `fr_core()`."""
    path, _ = _lookup(*FR_CORE)
    cache = package_cache()
    if path is not None and cache.get(*FR_CORE) is None:
        cache.install(str(path))


def fr_core() -> Path:
    return french_package(*FR_CORE)


def tddui() -> Path:
    return french_package(*TDDUI)


def package_example(tgz: Path, name: str) -> dict:
    """One example of a package archive (`package/example/<name>.json`), parsed."""
    with tarfile.open(tgz) as archive:
        member = archive.extractfile(f"package/example/{name}.json")
        assert member is not None, f"{tgz.name} has no example {name}"
        return json.loads(member.read())
