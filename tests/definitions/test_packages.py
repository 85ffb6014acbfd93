"""FHIR packages: the `fhir-server packages` command, the package cache, and the core definitions.

No FHIR server is started here. The CLI is run as a real process against a temporary cache
(FHIR_PACKAGE_CACHE); "remote" installs go to a real HTTP registry served by the test
(see conftest.py), or, for the R4 core, to the public npm registry through `npm pack`.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import orjson
import pytest

from fhir_server.definitions.packages import INDEX_FILE, Package, PackageCache
from fhir_server.definitions.registry import Definitions, ensure_core
from tests.conftest import die_with_pytest

FR_CORE = "hl7.fhir.fr.core"
FR_VERSION = "2.2.0"
FR_FOLDER = f"{FR_CORE}#{FR_VERSION}"


def run_cli(*args: str, cache: Path, registry: str | None = None,
            path: str | None = None) -> subprocess.CompletedProcess:
    """`python -m fhir_server ARGS` with its own package cache (and registry / PATH if given)."""
    env = {k: v for k, v in os.environ.items() if k not in ("FHIR_PACKAGE_CACHE", "FHIR_PACKAGE_REGISTRY")}
    env["FHIR_PACKAGE_CACHE"] = str(cache)
    if registry is not None:
        env["FHIR_PACKAGE_REGISTRY"] = registry
    if path is not None:
        env["PATH"] = path
    return subprocess.run([sys.executable, "-m", "fhir_server", *args], env=env, capture_output=True,
                          text=True, timeout=300, preexec_fn=die_with_pytest)


def archive_files(tgz: Path) -> set[str]:
    """Paths of the regular files of an npm archive, relative to its `package/` folder."""
    with tarfile.open(tgz) as tar:
        return {m.name.removeprefix("package/") for m in tar.getmembers() if m.isfile()}


def folder_files(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def cache_is_empty(cache: Path) -> bool:
    """Nothing at all in the cache: no package folder, no half-unpacked temporary folder."""
    return not cache.exists() or not any(cache.iterdir())


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "packages"


@pytest.fixture
def no_npm_path(tmp_path: Path) -> str:
    """A PATH on which there is no `npm` (so the npm fallback cannot be used)."""
    empty = tmp_path / "bin-without-npm"
    empty.mkdir()
    return str(empty)


# -- install / list / remove ------------------------------------------------------------------

def test_install_tgz_then_list_then_remove(cache: Path, fr_core_tgz: Path) -> None:
    result = run_cli("packages", "install", str(fr_core_tgz), cache=cache)
    assert result.returncode == 0, result.stderr
    assert f"installed {FR_FOLDER}" in result.stdout

    manifest = cache / FR_FOLDER / "package" / "package.json"
    assert manifest.is_file()
    data = json.loads(manifest.read_text(encoding="utf-8-sig"))
    assert (data["name"], data["version"]) == (FR_CORE, FR_VERSION)
    # Every file of the archive is in the cache (the index is added beside them).
    assert archive_files(fr_core_tgz) <= folder_files(cache / FR_FOLDER / "package")
    # Nothing but the package folder: no temporary folder left behind.
    assert [p.name for p in cache.iterdir()] == [FR_FOLDER]

    listed = run_cli("packages", "list", cache=cache)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines() == [FR_FOLDER]

    removed = run_cli("packages", "remove", f"{FR_CORE}@{FR_VERSION}", cache=cache)
    assert removed.returncode == 0, removed.stderr
    assert f"removed {FR_FOLDER}" in removed.stdout
    assert not (cache / FR_FOLDER).exists()
    assert run_cli("packages", "list", cache=cache).stdout.strip() == ""

    again = run_cli("packages", "remove", f"{FR_CORE}@{FR_VERSION}", cache=cache)
    assert again.returncode == 0, again.stderr
    assert f"not installed: {FR_FOLDER}" in again.stdout


@pytest.mark.parametrize("level", ["archive-root", "package-folder"])
def test_install_from_unpacked_folder(level: str, cache: Path, fr_core_tgz: Path, tmp_path: Path) -> None:
    unpacked = tmp_path / "unpacked"
    with tarfile.open(fr_core_tgz) as tar:
        tar.extractall(unpacked, filter="data")
    source = unpacked if level == "archive-root" else unpacked / "package"

    result = run_cli("packages", "install", str(source), cache=cache)
    assert result.returncode == 0, result.stderr
    assert f"installed {FR_FOLDER}" in result.stdout
    installed = cache / FR_FOLDER / "package"
    assert (installed / "package.json").is_file()
    assert archive_files(fr_core_tgz) <= folder_files(installed)
    assert [p.name for p in cache.iterdir()] == [FR_FOLDER]
    # The source folder is copied, not moved or altered.
    assert folder_files(unpacked / "package") == archive_files(fr_core_tgz)
    assert run_cli("packages", "list", cache=cache).stdout.splitlines() == [FR_FOLDER]


def test_install_name_at_version_from_registry(cache: Path, fr_core_tgz: Path, registry, no_npm_path: str) -> None:
    registry.packages[f"/{FR_CORE}/{FR_VERSION}"] = fr_core_tgz.read_bytes()

    result = run_cli("packages", "install", f"{FR_CORE}@{FR_VERSION}", cache=cache, registry=registry.url,
                     path=no_npm_path)
    assert result.returncode == 0, result.stderr
    assert f"installed {FR_FOLDER}" in result.stdout
    assert registry.requests == [f"/{FR_CORE}/{FR_VERSION}"]
    assert (cache / FR_FOLDER / "package" / "package.json").is_file()
    assert archive_files(fr_core_tgz) <= folder_files(cache / FR_FOLDER / "package")

    # Installed already: the `#` spelling finds it in the cache without asking the registry again.
    again = run_cli("packages", "install", f"{FR_CORE}#{FR_VERSION}", cache=cache, registry=registry.url,
                    path=no_npm_path)
    assert again.returncode == 0, again.stderr
    assert registry.requests == [f"/{FR_CORE}/{FR_VERSION}"]


def test_registry_404_and_no_npm_is_a_clear_error(cache: Path, registry, no_npm_path: str) -> None:
    result = run_cli("packages", "install", f"{FR_CORE}@{FR_VERSION}", cache=cache, registry=registry.url,
                     path=no_npm_path)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith("error: ")
    assert f"{FR_CORE}@{FR_VERSION}" in error
    assert "Not Found" in error or "404" in error  # what the registry said
    assert "npm" in error  # and why the fallback was not tried
    assert registry.requests == [f"/{FR_CORE}/{FR_VERSION}"]
    assert cache_is_empty(cache)


def test_registry_serving_another_package_is_refused(cache: Path, fr_core_tgz: Path, registry,
                                                     no_npm_path: str) -> None:
    registry.packages[f"/{FR_CORE}/2.1.0"] = fr_core_tgz.read_bytes()  # 2.2.0 served as 2.1.0
    result = run_cli("packages", "install", f"{FR_CORE}@2.1.0", cache=cache, registry=registry.url,
                     path=no_npm_path)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert f"{FR_CORE}#{FR_VERSION}" in result.stderr and f"{FR_CORE}#2.1.0" in result.stderr
    assert cache_is_empty(cache)


def test_bad_spec_is_a_clear_error(cache: Path) -> None:
    result = run_cli("packages", "install", "not a package spec", cache=cache)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "NAME@VERSION" in result.stderr
    assert cache_is_empty(cache)


def _corrupt(kind: str, data: bytes) -> bytes:
    if kind == "not-gzip":
        return b"this is not a package archive\n" * 50
    if kind == "empty":
        return b""
    if kind == "truncated":
        return data[: len(data) // 2]
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["not-gzip", "empty", "truncated"])
def test_corrupt_tgz_is_a_clear_error_and_leaves_nothing(kind: str, cache: Path, fr_core_tgz: Path,
                                                        tmp_path: Path) -> None:
    bad = tmp_path / f"{FR_CORE}-{kind}.tgz"
    bad.write_bytes(_corrupt(kind, fr_core_tgz.read_bytes()))
    result = run_cli("packages", "install", str(bad), cache=cache)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "error: " in result.stderr and "not a readable package archive" in result.stderr
    assert cache_is_empty(cache), sorted(p.name for p in cache.iterdir())
    assert run_cli("packages", "list", cache=cache).stdout.strip() == ""


def test_archive_damaged_in_the_middle_is_refused(cache: Path, fr_core_tgz: Path, tmp_path: Path) -> None:
    data = fr_core_tgz.read_bytes()
    middle = len(data) // 2
    damaged = data[:middle] + bytes(b ^ 0xFF for b in data[middle:middle + 64]) + data[middle + 64:]
    bad = tmp_path / f"{FR_CORE}-damaged.tgz"
    bad.write_bytes(damaged)
    result = run_cli("packages", "install", str(bad), cache=cache)
    assert result.returncode == 1, (result.stdout, sorted(folder_files(cache))[:5],
                                    len(folder_files(cache)), len(archive_files(fr_core_tgz)))
    assert "Traceback" not in result.stderr
    assert cache_is_empty(cache)


# -- the index beside each package --------------------------------------------------------------

def test_index_is_built_once_and_reused(cache: Path, fr_core_tgz: Path) -> None:
    assert run_cli("packages", "install", str(fr_core_tgz), cache=cache).returncode == 0
    root = cache / FR_FOLDER / "package"
    index_file = root / INDEX_FILE
    assert index_file.is_file(), "installing indexes the package"
    first = index_file.stat()
    content = index_file.read_bytes()
    entries = orjson.loads(content)["files"]
    resource_files = {p.name for p in root.glob("*.json")
                      if p.name != "package.json" and not p.name.startswith(".")}
    assert {e["filename"] for e in entries} == resource_files
    assert any(e["resourceType"] == "StructureDefinition" and e["kind"] for e in entries)

    # Installing again and listing reuse the index: the file is not rewritten.
    assert run_cli("packages", "install", str(fr_core_tgz), cache=cache).returncode == 0
    assert run_cli("packages", "list", cache=cache).returncode == 0
    after = index_file.stat()
    assert (after.st_ino, after.st_mtime_ns, after.st_size) == (first.st_ino, first.st_mtime_ns, first.st_size)
    assert index_file.read_bytes() == content

    # A new reader takes the index from the file rather than scanning the package again:
    # an index narrowed to one entry is what it sees.
    doctored = orjson.loads(content)
    doctored["files"] = doctored["files"][:1]
    index_file.write_bytes(orjson.dumps(doctored))
    package = PackageCache(cache).get(FR_CORE, FR_VERSION)
    assert package is not None
    assert [e.filename for e in package.index] == [doctored["files"][0]["filename"]]

    # An unreadable index is rebuilt (and written back) rather than trusted.
    index_file.write_bytes(b"{not json")
    rebuilt = Package(root).index
    assert {e.filename for e in rebuilt} == resource_files
    assert {e["filename"] for e in orjson.loads(index_file.read_bytes())["files"]} == resource_files


# -- the R4 core definitions --------------------------------------------------------------------

R4_ONLY_TYPES = ("MedicinalProduct", "MedicinalProductIngredient", "EffectEvidenceSynthesis",
                 "SubstanceSpecification", "ResearchDefinition")


def check_core_definitions(definitions: Definitions) -> None:
    types = definitions.resource_types
    assert len(types) == 146, len(types)
    assert len(set(types)) == 146
    for name in ("Patient", "Bundle", "Parameters", "Binary", "CarePlan", "OperationOutcome", *R4_ONLY_TYPES):
        assert name in types, name
        assert definitions.is_resource_type(name)
    for abstract in ("Resource", "DomainResource"):
        assert abstract not in types
        assert not definitions.is_resource_type(abstract)
    for not_a_resource in ("HumanName", "Extension", "string", "BackboneElement", "patient"):
        assert not definitions.is_resource_type(not_a_resource)
    patient = definitions.structure_definition("Patient")
    assert patient is not None and patient["kind"] == "resource" and patient["fhirVersion"] == "4.0.1"


def test_core_definitions_resource_types(package_cache: PackageCache) -> None:
    core = ensure_core(package_cache)
    assert (core.name, core.version) in (("hl7.fhir.r4.core", "4.0.1"), ("hl7.fhir.r4.examples", "4.0.1"))
    check_core_definitions(Definitions([core]))


def test_guide_profiles_add_no_resource_type(package_cache: PackageCache, fr_core_tgz: Path, cache: Path) -> None:
    """FR Core constrains resources; it does not make new resource types."""
    fr_core = PackageCache(cache).install(str(fr_core_tgz))
    definitions = Definitions([ensure_core(package_cache), fr_core])
    check_core_definitions(definitions)
    fr_patient = definitions.resource("https://hl7.fr/ig/fhir/core/StructureDefinition/fr-core-patient")
    assert fr_patient is not None and fr_patient["type"] == "Patient"
    assert fr_patient["derivation"] == "constraint"


@pytest.mark.network
def test_ensure_core_installs_into_an_empty_cache_through_npm(tmp_path: Path, registry) -> None:
    """First start on a new machine: no core package, the FHIR registry has none (a local registry
    answering 404 stands in for an unreachable packages.fhir.org), so `npm pack` fetches
    hl7.fhir.r4.examples@4.0.1 from the npm registry."""
    if shutil.which("npm") is None:
        pytest.skip("npm is not on the PATH")
    cache = PackageCache(tmp_path / "empty-cache", registry.url)
    package = ensure_core(cache)
    assert (package.name, package.version) == ("hl7.fhir.r4.examples", "4.0.1")
    assert (tmp_path / "empty-cache" / "hl7.fhir.r4.examples#4.0.1" / "package" / "package.json").is_file()
    # The FHIR registry was asked first, for both packages that carry the R4 definitions.
    assert "/hl7.fhir.r4.core/4.0.1" in registry.requests
    assert "/hl7.fhir.r4.examples/4.0.1" in registry.requests
    assert [p.name for p in (tmp_path / "empty-cache").iterdir()] == ["hl7.fhir.r4.examples#4.0.1"]
    check_core_definitions(Definitions([package]))
    # A second start finds it in the cache.
    assert ensure_core(cache).root == package.root


def test_tgz_without_package_level_is_installed_under_package(cache: Path, fr_core_tgz: Path,
                                                            tmp_path: Path) -> None:
    """Some archives put package.json at the top level; the cache layout is the same."""
    flat = io.BytesIO()
    with tarfile.open(fr_core_tgz) as src, tarfile.open(fileobj=flat, mode="w:gz") as dst:
        for member in src.getmembers():
            data = src.extractfile(member) if member.isfile() else None
            member.name = member.name.removeprefix("package/")
            dst.addfile(member, data)
    archive = tmp_path / "flat.tgz"
    archive.write_bytes(flat.getvalue())
    result = run_cli("packages", "install", str(archive), cache=cache)
    assert result.returncode == 0, result.stderr
    assert folder_files(cache / FR_FOLDER / "package") >= archive_files(fr_core_tgz)
    assert [p.name for p in cache.iterdir()] == [FR_FOLDER]
