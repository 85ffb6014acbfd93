"""Unpacking an untrusted FHIR package: streamed, limited, files and folders only.

An archive is whatever someone hands over (a .tgz, a registry's answer, a folder), so it is
read as a stream — decompressed a block at a time, never whole in memory — and written into
a fresh folder the caller made, with these rules:
- only regular files and folders: links, devices, fifos and sparse files are refused;
- names stay inside that folder: absolute names, `..` and backslashes are refused;
- at most `max_files` entries and `max_bytes` of file content (checked from each header, before
  its content is written); tar headers and padding get a small margin per entry, so a header
  claiming a huge size (pax, GNU long names) or zeros after the end are refused too;
- the gzip checksum is checked at the end: a damaged archive is refused, not unpacked in part.
"""

from __future__ import annotations

import gzip
import os
import shutil
import stat
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from fhir_server.config import Settings

_CHUNK = 1 << 16
_MARGIN = 1 << 20  # tar read-ahead and the end-of-archive blocks
_MARGIN_PER_ENTRY = 4096  # its header, padding and pax/long-name records


class ArchiveError(Exception):
    """The archive cannot be unpacked; the message says why."""


class ArchiveRefused(ArchiveError):
    """The archive is unsafe or beyond the limits: refused whatever else it holds."""


class ArchiveUnreadable(ArchiveError):
    """The archive is not a (complete, undamaged) tar or tar.gz."""


@dataclass(frozen=True)
class Limits:
    """How much one package may unpack to (FHIR_MAX_PACKAGE_BYTES, FHIR_MAX_PACKAGE_FILES)."""

    max_bytes: int = Settings.max_package_bytes
    max_files: int = Settings.max_package_files

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        return cls(settings.max_package_bytes, settings.max_package_files)

    def too_many(self) -> ArchiveRefused:
        return ArchiveRefused(f"the package holds more than {self.max_files} files and folders "
                              f"(FHIR_MAX_PACKAGE_FILES; raise it if you trust this package)")

    def too_big(self) -> ArchiveRefused:
        return ArchiveRefused(f"the package unpacks to more than {_mib(self.max_bytes)} "
                              f"(FHIR_MAX_PACKAGE_BYTES; raise it if you trust this package)")


def _mib(size: int) -> str:
    return f"{size / (1 << 20):g} MiB"


class _Meter:
    """The decompressed tar stream, counted: beyond the content of the files accepted so far,
    only a margin per entry may be read (headers), so no header can make tarfile hold more."""

    def __init__(self, stream: BinaryIO):
        self._stream = stream
        self.count = 0
        self._allowed = _MARGIN

    def allow(self, size: int) -> None:
        self._allowed += size

    def read(self, size: int | None = -1) -> bytes:
        data = self._stream.read(size if size is not None and 0 <= size <= _CHUNK else _CHUNK)
        self.count += len(data)
        if self.count > self._allowed:
            raise ArchiveRefused("the archive holds more data than its files (a header claiming a huge size, "
                                 "or data after the end of the archive): refused")
        return data

    def drain(self) -> None:
        """Read to the end, so that gzip checks its length and CRC."""
        while self.read(_CHUNK):
            pass


def unpack(archive: Path, into: Path, limits: Limits) -> None:
    """Unpack the tar or tar.gz `archive` into the existing empty folder `into`."""
    with archive.open("rb") as raw:
        gzipped = raw.read(2) == b"\x1f\x8b"
        raw.seek(0)
        stream: BinaryIO = gzip.GzipFile(fileobj=raw, mode="rb") if gzipped else raw  # type: ignore[assignment]
        meter = _Meter(stream)
        try:
            with tarfile.open(fileobj=meter, mode="r|") as tar:  # type: ignore[call-overload]
                _unpack_members(tar, meter, into.resolve(), limits)
            meter.drain()
        except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
            raise ArchiveUnreadable(f"not a readable package archive: {exc}") from None
        except OSError as exc:
            raise ArchiveError(f"cannot write the package into the cache: {exc}") from None


def _unpack_members(tar: tarfile.TarFile, meter: _Meter, into: Path, limits: Limits) -> None:
    entries = size = 0
    folders: set[Path] = set()  # the folders checked to be inside `into`
    for member in tar:
        entries += 1
        if entries > limits.max_files:
            raise limits.too_many()
        meter.allow(_MARGIN_PER_ENTRY)
        target = _target(into, member.name)
        if member.isdir():
            if target is not None:
                target.mkdir(parents=True, exist_ok=True)
            continue
        if not member.isfile() or member.issparse():
            raise ArchiveRefused(f"{member.name!r} is {_kind(member)}: a package holds only files and folders")
        if target is None:
            raise ArchiveRefused(f"{member.name!r} is not a file name")
        size += member.size
        if size > limits.max_bytes:
            raise limits.too_big()
        meter.allow(member.size)
        source = tar.extractfile(member)
        assert source is not None  # a regular file
        _write(source, target, into, folders)


def _target(into: Path, name: str) -> Path | None:
    """Where entry `name` goes, or None for the archive's own root (`./`); refused if outside."""
    parts = [part for part in name.split("/") if part not in ("", ".")]
    if name.startswith("/") or ".." in parts or "\\" in name or "\0" in name:
        raise ArchiveRefused(f"{name!r}: an entry outside the package folder (absolute or with '..')")
    return into.joinpath(*parts) if parts else None


def _write(source: BinaryIO, target: Path, into: Path, folders: set[Path]) -> None:
    if target.parent not in folders:
        target.parent.mkdir(parents=True, exist_ok=True)
        # nothing but folders and files is ever created, so no link can redirect this; checked anyway
        if not target.parent.resolve().is_relative_to(into):
            raise ArchiveRefused(f"{target.relative_to(into)}: outside the package folder")
        folders.add(target.parent)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
    with os.fdopen(fd, "wb") as out:
        shutil.copyfileobj(source, out, _CHUNK)


def _kind(member: tarfile.TarInfo) -> str:
    if member.issym():
        return "a symbolic link"
    if member.islnk():
        return "a hard link"
    if member.ischr() or member.isblk():
        return "a device"
    if member.isfifo():
        return "a fifo"
    if member.issparse():
        return "a sparse file"
    return f"of tar type {member.type!r}"


def copy_folder(source: Path, into: Path, limits: Limits) -> None:
    """Copy an unpacked package folder into the existing empty folder `into`, by the same rules."""
    entries = size = 0
    for folder, dirnames, filenames in os.walk(source):  # does not follow links to folders
        for name in sorted(dirnames) + sorted(filenames):
            path = Path(folder, name)
            entries += 1
            if entries > limits.max_files:
                raise limits.too_many()
            info = path.lstat()
            mode = info.st_mode
            target = into / path.relative_to(source)
            if stat.S_ISDIR(mode):
                target.mkdir()
            elif stat.S_ISREG(mode):
                size += info.st_size
                if size > limits.max_bytes:
                    raise limits.too_big()
                shutil.copyfile(path, target, follow_symlinks=False)
            else:
                kind = "a symbolic link" if stat.S_ISLNK(mode) else "not a regular file"
                raise ArchiveRefused(f"{path} is {kind}: a package holds only files and folders")
