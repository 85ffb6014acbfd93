"""FHIR npm packages: the local cache, installing into it, and reading one package.

The cache has the layout the HL7 tools share (`~/.fhir/packages/<name>#<version>/package/…`),
so a cache filled by the IG Publisher, HAPI or Firely is usable as is, and ours is usable by
them. A package is read through an index of its files (type, id, url, kind…), built once and
kept beside the package, so that start-up never has to parse 190 MB of definitions.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import orjson

from fhir_server.config import Settings
from fhir_server.definitions.archive import ArchiveError, ArchiveRefused, Limits, copy_folder, unpack

log = logging.getLogger(__name__)

INDEX_FILE = ".fhir-server.index.json"
INDEX_VERSION = 3
_SPEC_RE = re.compile(r"(?P<name>[^@#]+)[@#](?P<version>[^@#]+)")
# npm's rules as FHIR packages use them: letters, digits, `-`, `_`, dot-separated parts (so no
# `..`, no `/`), at most 214 characters. Upper case is accepted as npm's legacy rule does
# (a few published FHIR packages have it, e.g. KBV.Basis); it names no other path.
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*(?:\.[A-Za-z0-9_-]+)*")
_NAME_MAX = 214
# semver-like (1 to 4 numbers, then -pre.release and +build parts), or the tags `current`/`dev`/`latest`
_IDENTIFIERS = r"[0-9A-Za-z_-]+(?:\.[0-9A-Za-z_-]+)*"
_VERSION_RE = re.compile(rf"(?:current|dev|latest|[0-9]+(?:\.[0-9]+){{0,3}}(?:-{_IDENTIFIERS})?(?:\+{_IDENTIFIERS})?)")
_VERSION_MAX = 128

# Fields of a StructureDefinition worth knowing without opening the file.
_SD_FIELDS = ("kind", "type", "derivation", "abstract", "baseDefinition")


class PackageError(Exception):
    """A package cannot be found, fetched or read; the message says what to do."""


class PackageRefused(PackageError):
    """A package named or built wrongly, or unsafe (a bad name or version, links in its archive,
    beyond the size limits): refused wherever it comes from, never merely skipped."""


def parse_spec(spec: str) -> tuple[str, str]:
    """`name@version` or `name#version` → (name, version), both checked."""
    match = _SPEC_RE.fullmatch(spec.strip())
    if not match:
        raise PackageRefused(f"{spec!r} is neither an existing .tgz file or folder nor NAME@VERSION "
                             f"(for example hl7.fhir.fr.core@2.2.0)")
    return check_name(match["name"]), check_version(match["version"])


def check_name(name: Any) -> str:
    """`name` if it is a FHIR package name; it becomes a folder name, so nothing else passes."""
    if not isinstance(name, str) or len(name) > _NAME_MAX or not _NAME_RE.fullmatch(name):
        raise PackageRefused(f"{str(name)[:100]!r} is not a FHIR package name: letters, digits, '-' and '_' "
                             f"in parts separated by single dots, at most {_NAME_MAX} characters "
                             f"(for example hl7.fhir.fr.core)")
    return name


def check_version(version: Any) -> str:
    """`version` if it is a package version (semver-like, or current/dev/latest)."""
    if not isinstance(version, str) or len(version) > _VERSION_MAX or not _VERSION_RE.fullmatch(version):
        raise PackageRefused(f"{str(version)[:100]!r} is not a package version: numbers separated by dots, "
                             f"then optionally -label and +build (for example 4.0.1 or 5.3.0-ballot-tc1), "
                             f"or current, dev, latest")
    return version


@dataclass(frozen=True)
class IndexEntry:
    filename: str
    resourceType: str
    id: str | None
    url: str | None
    version: str | None
    kind: str | None = None
    type: str | None = None
    derivation: str | None = None
    abstract: bool | None = None
    baseDefinition: str | None = None
    choices: list[str] | None = None  # names of its choice elements (`value` for `value[x]`)


class Package:
    """One unpacked FHIR package: its manifest and an index over its resource files."""

    def __init__(self, root: Path):
        self.root = root  # the folder holding package.json (`…/package`)
        manifest = root / "package.json"
        if not manifest.is_file():
            raise PackageError(f"{root} holds no package.json: not a FHIR package")
        try:
            self.manifest: dict[str, Any] = json.loads(manifest.read_text(encoding="utf-8-sig"))
        except (ValueError, OSError) as exc:
            raise PackageError(f"{manifest} is not readable JSON: {exc}") from None
        if not isinstance(self.manifest, dict):
            raise PackageError(f"{manifest} is not a JSON object")
        self.name: str = self.manifest.get("name", root.parent.name)
        self.version: str = self.manifest.get("version", "0.0.0")

    def __repr__(self) -> str:
        return f"Package({self.name}#{self.version})"

    @property
    def canonical(self) -> str | None:
        return self.manifest.get("canonical")

    @property
    def dependencies(self) -> dict[str, str]:
        return dict(self.manifest.get("dependencies") or {})

    @cached_property
    def index(self) -> list[IndexEntry]:
        cached = self.root / INDEX_FILE
        signature = self._signature()
        if cached.is_file():
            try:
                data = orjson.loads(cached.read_bytes())
                if data.get("index-version") == INDEX_VERSION and data.get("signature") == signature:
                    return [IndexEntry(**e) for e in data["files"]]
            except (orjson.JSONDecodeError, TypeError, KeyError):
                log.warning("rebuilding the unreadable index of %s", self)
        entries = self._build_index()
        try:
            payload = {"index-version": INDEX_VERSION, "signature": signature, "files": [e.__dict__ for e in entries]}
            tmp = cached.with_suffix(".tmp")
            tmp.write_bytes(orjson.dumps(payload))
            os.replace(tmp, cached)
        except OSError:  # a read-only cache still works, it just indexes on every start
            log.info("cannot write the index of %s; it will be rebuilt next time", self)
        return entries

    def _signature(self) -> str:
        """The names and sizes of the files the index is built from: a folder read where it is (our
        own guide in profiles/) is indexed again once a file is added, removed or edited, not
        served from an index of what it held before. (Not their modification times: a checkout
        sets those, and the guide's index is committed.)"""
        digest = hashlib.sha256()
        for path in sorted(self.root.glob("*.json")):
            if path.name.startswith("."):
                continue  # the index itself
            try:
                info = path.stat()
            except OSError:
                continue
            digest.update(f"{path.name}\0{info.st_size}\n".encode())
        return digest.hexdigest()

    def _build_index(self) -> list[IndexEntry]:
        entries = []
        for path in sorted(self.root.glob("*.json")):
            if path.name == "package.json" or path.name.startswith("."):
                continue
            try:
                res = orjson.loads(path.read_bytes())
            except orjson.JSONDecodeError:
                log.warning("%s: %s is not valid JSON, skipped", self, path.name)
                continue
            if not isinstance(res, dict) or "resourceType" not in res:
                continue
            extra = {}
            if res["resourceType"] == "StructureDefinition":
                extra = {k: res.get(k) for k in _SD_FIELDS}
                elements = (res.get("snapshot") or res.get("differential") or {}).get("element") or ()
                names = sorted({e["path"].rsplit(".", 1)[-1][:-3] for e in elements
                                if isinstance(e.get("path"), str) and e["path"].endswith("[x]")})
                extra["choices"] = names or None
            url = res.get("url")
            entries.append(IndexEntry(
                filename=path.name, resourceType=res["resourceType"], id=res.get("id"),
                url=url if isinstance(url, str) else None,
                version=res.get("version") if isinstance(res.get("version"), str) else None,
                **extra))
        return entries

    def load(self, filename: str) -> dict[str, Any]:
        return orjson.loads((self.root / filename).read_bytes())

    def entries(self, resource_type: str | None = None) -> Iterator[IndexEntry]:
        for entry in self.index:
            if resource_type is None or entry.resourceType == resource_type:
                yield entry

    def resources(self, resource_type: str | None = None) -> Iterator[dict[str, Any]]:
        for entry in self.entries(resource_type):
            yield self.load(entry.filename)


def open_package(path: Path) -> Package:
    """A package from a folder (`<x>/package/package.json` or `<x>/package.json`), its manifest
    naming it with a valid name and version (an untrusted folder or archive: these make paths)."""
    for root in (path / "package", path):
        if (root / "package.json").is_file():
            package = Package(root)
            for key in ("name", "version"):
                if key not in package.manifest:
                    raise PackageRefused(f"the package's package.json has no {key}: a FHIR package names itself")
            check_name(package.name)
            check_version(package.version)
            return package
    raise PackageError(f"{path} is not a FHIR package (no package/package.json)")


class PackageCache:
    """The folder of installed packages, one `<name>#<version>` folder each.

    Every install goes through a temporary folder inside the cache (`.install-…`), unpacked or
    copied under `limits` (archive.py), then renamed into place: a package folder is complete
    or absent, and a failed install leaves the cache as it was."""

    def __init__(self, root: Path, registry: str = "https://packages.fhir.org", limits: Limits | None = None):
        self.root = Path(root).expanduser()
        self.registry = registry.rstrip("/")
        self.limits = limits or Limits()

    @classmethod
    def from_settings(cls, settings: Settings) -> PackageCache:
        """The cache of FHIR_PACKAGE_CACHE, its registry and limits."""
        return cls(settings.package_cache, settings.package_registry, Limits.from_settings(settings))

    def folder(self, name: str, version: str) -> Path:
        """`<root>/<name>#<version>`: only for a valid name and version, so always a child of root."""
        return self.root / f"{check_name(name)}#{check_version(version)}"

    def get(self, name: str, version: str) -> Package | None:
        folder = self.folder(name, version)
        if (folder / "package" / "package.json").is_file():
            return Package(folder / "package")
        return None

    def installed(self) -> list[tuple[str, str]]:
        if not self.root.is_dir():
            return []
        out = []
        for folder in sorted(self.root.iterdir()):
            name, _, version = folder.name.partition("#")
            if _valid(name, version) and (folder / "package" / "package.json").is_file():
                out.append((name, version))
        return out

    def remove(self, name: str, version: str) -> bool:
        folder = self.folder(name, version)
        if folder.is_symlink():
            folder.unlink()
            return True
        if not folder.exists():
            return False
        shutil.rmtree(folder)
        return True

    def install(self, spec: str) -> Package:
        """Install from a `.tgz` or folder path, or NAME@VERSION (registry, then `npm pack`)."""
        path = Path(spec).expanduser()
        if path.exists():
            return self._install_path(path)
        name, version = parse_spec(spec)
        existing = self.get(name, version)
        if existing:
            return existing
        errors = []
        for source in (self._from_registry, self._from_npm):
            with tempfile.TemporaryDirectory(dir=self._ensure_root(), prefix=".download-") as tmp:
                try:
                    archive = source(name, version, Path(tmp))
                except PackageError as exc:
                    errors.append(str(exc))
                    continue
                return self._install_archive(archive, expect=(name, version))
        raise PackageError(f"cannot install {name}@{version}: " + "; ".join(errors))

    def _install_path(self, path: Path) -> Package:
        if not path.is_dir():
            return self._install_archive(path, expect=None)
        source = open_package(path)
        existing = self.get(source.name, source.version)
        if existing:
            return existing
        return self._install_unpacked(lambda tmp: self._copy(source.root, tmp / "package"), expect=None)

    def _copy(self, source: Path, into: Path) -> None:
        into.mkdir()
        copy_folder(source, into, self.limits)

    def _install_archive(self, archive: Path, expect: tuple[str, str] | None) -> Package:
        return self._install_unpacked(lambda tmp: unpack(archive, tmp, self.limits), expect)

    def _install_unpacked(self, fill, expect: tuple[str, str] | None) -> Package:
        """`fill(tmp)` writes the package into a new temporary folder of the cache; once it is
        checked (its manifest, the name and version expected), the folder is renamed into place."""
        tmp: Path | None = Path(tempfile.mkdtemp(dir=self._ensure_root(), prefix=".install-"))
        try:
            try:
                fill(tmp)
            except ArchiveRefused as exc:
                raise PackageRefused(str(exc)) from None
            except ArchiveError as exc:
                raise PackageError(str(exc)) from None
            package = open_package(tmp)
            if expect and (package.name, package.version) != expect:
                raise PackageError(f"the archive holds {package.name}#{package.version}, not {expect[0]}#{expect[1]}")
            if package.root != tmp / "package":  # archives without the `package/` level
                (tmp / "package").mkdir()
                for item in list(tmp.iterdir()):
                    if item.name != "package":
                        item.rename(tmp / "package" / item.name)
            target = self.folder(package.name, package.version)
            self._move_into_place(tmp, target)
            tmp = None
            return self.get(package.name, package.version)  # type: ignore[return-value]
        finally:
            if tmp is not None and tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)

    def _from_registry(self, name: str, version: str, into: Path) -> Path:
        """The registry's archive, saved in `into` (at most FHIR_MAX_PACKAGE_BYTES: its answer is
        untrusted too)."""
        url = f"{self.registry}/{name}/{version}"
        request = urllib.request.Request(url, headers={"Accept": "application/tar+gzip, application/gzip, */*"})
        target = into / "registry.tgz"
        try:
            with urllib.request.urlopen(request, timeout=30) as resp, target.open("wb") as out:
                size = 0
                while chunk := resp.read(1 << 16):
                    size += len(chunk)
                    if size > self.limits.max_bytes:
                        raise PackageRefused(f"registry {self.registry}: {name}@{version} is larger than "
                                             f"FHIR_MAX_PACKAGE_BYTES ({self.limits.max_bytes} bytes)")
                    out.write(chunk)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise PackageError(f"registry {self.registry}: {getattr(exc, 'reason', exc)}") from None
        return target

    def _from_npm(self, name: str, version: str, into: Path) -> Path:
        npm = shutil.which("npm")
        if not npm:
            raise PackageError("npm is not on the PATH (fallback to the npm registry unavailable)")
        proc = subprocess.run([npm, "pack", f"{name}@{version}", "--pack-destination", str(into), "--silent"],
                              capture_output=True, text=True, timeout=600)
        tgzs = list(into.glob("*.tgz"))
        if proc.returncode != 0 or not tgzs:
            detail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no archive"]
            raise PackageError(f"npm pack {name}@{version}: {detail[0]}")
        return tgzs[0]

    def _ensure_root(self) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        return self.root

    def _move_into_place(self, tmp: Path, target: Path) -> None:
        """Atomic from a reader's point of view: a package folder is complete or absent. An
        installed package is never replaced; only a folder without package.json (left by a tool
        interrupted mid-copy) is."""
        assert target.parent == self.root, target  # folder() made it from a checked name and version
        if (target / "package" / "package.json").is_file():
            shutil.rmtree(tmp, ignore_errors=True)
            return
        if target.is_symlink():
            raise PackageError(f"{target} is a symbolic link: remove it, then install again")
        if target.exists():
            shutil.rmtree(target)
        try:
            tmp.rename(target)
        except OSError:  # another process installed it meanwhile
            shutil.rmtree(tmp, ignore_errors=True)
            if not (target / "package" / "package.json").is_file():
                raise


def _valid(name: str, version: str) -> bool:
    try:
        check_name(name)
        check_version(version)
    except PackageRefused:
        return False
    return True
