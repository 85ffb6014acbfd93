"""FHIR npm packages: the local cache, installing into it, and reading one package.

The cache has the layout the HL7 tools share (`~/.fhir/packages/<name>#<version>/package/…`),
so a cache filled by the IG Publisher, HAPI or Firely is usable as is, and ours is usable by
them. A package is read through an index of its files (type, id, url, kind…), built once and
kept beside the package, so that start-up never has to parse 190 MB of definitions.
"""

from __future__ import annotations

import gzip
import io
import json
import logging
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import urllib.error
import urllib.request
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import orjson

log = logging.getLogger(__name__)

INDEX_FILE = ".fhir-server.index.json"
INDEX_VERSION = 3
_SPEC_RE = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)[@#](?P<version>[A-Za-z0-9][A-Za-z0-9.+_-]*)$")

# Fields of a StructureDefinition worth knowing without opening the file.
_SD_FIELDS = ("kind", "type", "derivation", "abstract", "baseDefinition")


class PackageError(Exception):
    """A package cannot be found, fetched or read; the message says what to do."""


def parse_spec(spec: str) -> tuple[str, str]:
    """`name@version` or `name#version` → (name, version)."""
    match = _SPEC_RE.match(spec.strip())
    if not match:
        raise PackageError(f"{spec!r} is not NAME@VERSION (for example hl7.fhir.fr.core@2.2.0)")
    return match["name"], match["version"]


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
        self.manifest: dict[str, Any] = json.loads(manifest.read_text(encoding="utf-8-sig"))
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
        if cached.is_file():
            try:
                data = orjson.loads(cached.read_bytes())
                if data.get("index-version") == INDEX_VERSION:
                    return [IndexEntry(**e) for e in data["files"]]
            except (orjson.JSONDecodeError, TypeError, KeyError):
                log.warning("rebuilding the unreadable index of %s", self)
        entries = self._build_index()
        try:
            payload = {"index-version": INDEX_VERSION, "files": [e.__dict__ for e in entries]}
            tmp = cached.with_suffix(".tmp")
            tmp.write_bytes(orjson.dumps(payload))
            os.replace(tmp, cached)
        except OSError:  # a read-only cache still works, it just indexes on every start
            log.info("cannot write the index of %s; it will be rebuilt next time", self)
        return entries

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
    """A package from a folder (`<x>/package/package.json` or `<x>/package.json`)."""
    for root in (path / "package", path):
        if (root / "package.json").is_file():
            return Package(root)
    raise PackageError(f"{path} is not a FHIR package (no package/package.json)")


class PackageCache:
    """The folder of installed packages, one `<name>#<version>` folder each."""

    def __init__(self, root: Path, registry: str = "https://packages.fhir.org"):
        self.root = Path(root).expanduser()
        self.registry = registry.rstrip("/")

    def folder(self, name: str, version: str) -> Path:
        return self.root / f"{name}#{version}"

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
            if "#" in folder.name and (folder / "package" / "package.json").is_file():
                name, _, version = folder.name.partition("#")
                out.append((name, version))
        return out

    def remove(self, name: str, version: str) -> bool:
        folder = self.folder(name, version)
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
            try:
                data = source(name, version)
            except PackageError as exc:
                errors.append(str(exc))
                continue
            return self._install_tgz_bytes(data, expect=(name, version))
        raise PackageError(f"cannot install {name}@{version}: " + "; ".join(errors))

    def _install_path(self, path: Path) -> Package:
        if path.is_dir():
            source = open_package(path)
            target = self.folder(source.name, source.version)
            if not (target / "package" / "package.json").is_file():
                tmp = Path(tempfile.mkdtemp(dir=self._ensure_root()))
                shutil.copytree(source.root, tmp / "package")
                self._move_into_place(tmp, target)
            return self.get(source.name, source.version)  # type: ignore[return-value]
        return self._install_tgz_bytes(path.read_bytes(), expect=None)

    def _from_registry(self, name: str, version: str) -> bytes:
        url = f"{self.registry}/{name}/{version}"
        request = urllib.request.Request(url, headers={"Accept": "application/tar+gzip, application/gzip, */*"})
        try:
            with urllib.request.urlopen(request, timeout=30) as resp:
                return resp.read()
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise PackageError(f"registry {self.registry}: {getattr(exc, 'reason', exc)}") from None

    def _from_npm(self, name: str, version: str) -> bytes:
        npm = shutil.which("npm")
        if not npm:
            raise PackageError("npm is not on the PATH (fallback to the npm registry unavailable)")
        with tempfile.TemporaryDirectory() as tmp:
            proc = subprocess.run([npm, "pack", f"{name}@{version}", "--pack-destination", tmp, "--silent"],
                                  capture_output=True, text=True, timeout=600)
            tgzs = list(Path(tmp).glob("*.tgz"))
            if proc.returncode != 0 or not tgzs:
                detail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no archive"]
                raise PackageError(f"npm pack {name}@{version}: {detail[0]}")
            return tgzs[0].read_bytes()

    def _install_tgz_bytes(self, data: bytes, expect: tuple[str, str] | None) -> Package:
        tmp = Path(tempfile.mkdtemp(dir=self._ensure_root()))
        try:
            try:
                if data[:2] == b"\x1f\x8b":  # check the whole gzip stream (CRC) before extracting:
                    data = gzip.decompress(data)  # tarfile stops silently at a damaged member
                with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
                    tar.extractall(tmp, filter="data")
            except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
                raise PackageError(f"not a readable package archive: {exc}") from None
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

    def _ensure_root(self) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        return self.root

    @staticmethod
    def _move_into_place(tmp: Path, target: Path) -> None:
        """Atomic from a reader's point of view: a package folder is complete or absent."""
        if (target / "package" / "package.json").is_file():
            shutil.rmtree(tmp, ignore_errors=True)
            return
        if target.exists():
            shutil.rmtree(target)
        try:
            tmp.rename(target)
        except OSError:  # another process installed it meanwhile
            shutil.rmtree(tmp, ignore_errors=True)
            if not (target / "package" / "package.json").is_file():
                raise
