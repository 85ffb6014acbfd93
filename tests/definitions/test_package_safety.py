"""Hostile FHIR packages (issue 14): names and versions that would leave the cache, archives with
links, `..` or absolute members, zip bombs, too many files — refused, with nothing written
outside the cache and no installed package harmed; real packages still install.

The CLI runs as a real process (`python -m fhir_server packages install`) against a temporary
FHIR_PACKAGE_CACHE; its peak memory is the kernel's high-water mark of its own address space
(VmHWM), read by the child as it exits: wait4's ru_maxrss would also count the pytest process
it was forked from (a forked child's resident pages are its parent's until exec), 390 MB late
in a full run. The archives are built here, byte by byte where tarfile would refuse to write them.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from fhir_server.definitions.loading import check_specs, load_definitions
from fhir_server.definitions.packages import PackageCache, PackageRefused
from tests import packages
from tests.conftest import die_with_pytest, free_port

FR_CORE = "hl7.fhir.fr.core"
FR_FOLDER = f"{FR_CORE}#2.2.0"
GIB = 1 << 30
MIB = 1 << 20
# A Python process with the server's modules imported is ~60-80 MB; unpacking must add little.
PEAK_RSS_LIMIT = 300 * MIB


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str
    peak_rss: int  # bytes, of the child process alone


# Runs the CLI as `python -m fhir_server`, writing its VmHWM (kB) to the file named first on exit.
_MEASURED = """
import atexit, runpy, sys
peak_file = sys.argv.pop(1)

def write_peak():
    with open("/proc/self/status") as status, open(peak_file, "w") as out:
        out.write(next(line.split()[1] for line in status if line.startswith("VmHWM:")))

atexit.register(write_peak)
sys.argv[0] = "fhir_server"
runpy.run_module("fhir_server", run_name="__main__", alter_sys=True)
"""


def run_cli(*args: str, cache: Path, tmp_path: Path, env: dict[str, str] | None = None) -> Run:
    """`python -m fhir_server ARGS` with its own cache, and the peak RSS of that process alone."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("FHIR_")}
    environment.update({"FHIR_PACKAGE_CACHE": str(cache), "FHIR_PACKAGE_REGISTRY": "http://127.0.0.1:9",
                        "PATH": str(tmp_path / "no-npm"), **(env or {})})
    (tmp_path / "no-npm").mkdir(exist_ok=True)
    out, err, peak = tmp_path / "cli.out", tmp_path / "cli.err", tmp_path / "cli.peak"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        returncode = subprocess.run([sys.executable, "-c", _MEASURED, str(peak), *args], env=environment,
                                    stdout=stdout, stderr=stderr, cwd=tmp_path,
                                    preexec_fn=die_with_pytest).returncode
    return Run(returncode, out.read_text(), err.read_text(), int(peak.read_text()) * 1024)


def manifest(name: str = FR_CORE, version: str = "9.9.9") -> bytes:
    return json.dumps({"name": name, "version": version, "dependencies": {"hl7.fhir.r4.core": "4.0.1"}}).encode()


def member(name: str, data: bytes = b"", **fields) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    for key, value in fields.items():
        setattr(info, key, value)
    return info, data


def tgz(path: Path, *members: tuple[tarfile.TarInfo, bytes]) -> Path:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if info.isfile() else None)
    path.write_bytes(gzip.compress(buffer.getvalue()))
    return path


def package_tgz(path: Path, *extra: tuple[tarfile.TarInfo, bytes], name: str = FR_CORE,
                version: str = "9.9.9") -> Path:
    """An npm-style package archive: package/package.json, one resource, then `extra`."""
    resource = json.dumps({"resourceType": "CodeSystem", "id": "x", "url": "http://example.org/x"}).encode()
    return tgz(path, member("package/package.json", manifest(name, version)),
               member("package/CodeSystem-x.json", resource), *extra)


def zeros_gzip(size: int) -> bytes:
    """`size` zero bytes as concatenated gzip members of 1 MiB each (~1 KB per MiB: a bomb)."""
    assert size % MIB == 0
    return gzip.compress(bytes(MIB), 9) * (size // MIB)


def header(name: str, size: int, kind: bytes = tarfile.REGTYPE) -> bytes:
    info = tarfile.TarInfo(name)
    info.size, info.type = size, kind
    return info.tobuf(format=tarfile.USTAR_FORMAT)


def refused(run: Run, *words: str) -> None:
    assert run.returncode == 1, (run.stdout, run.stderr)
    assert "Traceback" not in run.stderr, run.stderr
    assert "error: " in run.stderr
    for word in words:
        assert word in run.stderr, run.stderr


def cache_untouched(cache: Path, *expected: str) -> None:
    """The cache holds exactly `expected` (no temporary folder left behind)."""
    assert sorted(p.name for p in cache.iterdir()) == sorted(expected) if cache.exists() else not expected


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "cache" / "packages"


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    """A folder outside the cache that a traversal would replace: `cache/../../victim`."""
    folder = tmp_path / "victim"
    folder.mkdir()
    (folder / "precious.txt").write_text("keep me")
    return folder


def victim_intact(victim: Path) -> None:
    assert sorted(p.name for p in victim.iterdir()) == ["precious.txt"]
    assert (victim / "precious.txt").read_text() == "keep me"


# -- names and versions ---------------------------------------------------------------------------

@pytest.mark.parametrize(("name", "version", "word"), [
    (FR_CORE, "1.0.0/../../../victim", "not a package version"),  # the archive
    (FR_CORE, "../../../victim", "not a package version"),
    ("../../victim", "1.0.0", "not a FHIR package name"),
    ("a/../../../victim", "1.0.0", "not a FHIR package name"),
    ("hl7..fhir", "1.0.0", "not a FHIR package name"),
    ("x" * 215, "1.0.0", "not a FHIR package name"),
    (FR_CORE, "1.0.0\n", "not a package version"),
    (FR_CORE, 1, "not a package version"),
    (FR_CORE, None, "not a package version"),
])
def test_bad_name_or_version_in_archive_is_refused(name, version, word, cache: Path, victim: Path,
                                                   tmp_path: Path) -> None:
    archive = tmp_path / "hostile.tgz"
    tgz(archive, member("package/package.json", json.dumps({"name": name, "version": version}).encode()),
        member("package/evil.json", b"{}"))
    run = run_cli("packages", "install", str(archive), cache=cache, tmp_path=tmp_path)
    refused(run, word)
    victim_intact(victim)
    cache_untouched(cache)
    assert not list(tmp_path.glob("**/evil.json"))


def test_manifest_without_version_is_refused(cache: Path, tmp_path: Path) -> None:
    archive = tgz(tmp_path / "no-version.tgz", member("package/package.json", b'{"name": "hl7.fhir.fr.core"}'))
    refused(run_cli("packages", "install", str(archive), cache=cache, tmp_path=tmp_path), "has no version")
    cache_untouched(cache)


@pytest.mark.parametrize("spec", [f"{FR_CORE}@1.0.0/../../../victim", "../../victim@1.0.0",
                                  f"{FR_CORE}#../../../victim", "-rf@1.0.0"])
def test_bad_name_at_version_is_refused_before_any_path(spec: str, cache: Path, victim: Path,
                                                        tmp_path: Path) -> None:
    for action in ("install", "remove"):
        run = run_cli("packages", action, "--", spec, cache=cache, tmp_path=tmp_path)
        refused(run)
        assert "not a package version" in run.stderr or "not a FHIR package name" in run.stderr
        victim_intact(victim)
        cache_untouched(cache)


@pytest.mark.parametrize("version", ["4.0.1", "5.3.0-ballot-tc1", "2.0.0-ballot2+20200101", "1.1", "current",
                                     "dev"])
def test_usual_versions_are_accepted(version: str, cache: Path, tmp_path: Path) -> None:
    archive = package_tgz(tmp_path / "ok.tgz", version=version)
    run = run_cli("packages", "install", str(archive), cache=cache, tmp_path=tmp_path)
    assert run.returncode == 0, run.stderr
    cache_untouched(cache, f"{FR_CORE}#{version}")


def test_registry_answer_with_a_traversal_is_refused(cache: Path, victim: Path, tmp_path: Path, registry) -> None:
    """The registry is asked for a good NAME@VERSION and answers a hostile archive."""
    hostile = tgz(tmp_path / "hostile.tgz",
                  member("package/package.json", manifest(version="2.2.0/../../../victim")))
    registry.packages[f"/{FR_CORE}/2.2.0"] = hostile.read_bytes()
    run = run_cli("packages", "install", f"{FR_CORE}@2.2.0", cache=cache, tmp_path=tmp_path,
                  env={"FHIR_PACKAGE_REGISTRY": registry.url})
    refused(run, "not a package version")
    assert registry.requests == [f"/{FR_CORE}/2.2.0"]
    victim_intact(victim)
    cache_untouched(cache)


def test_registry_answer_over_the_size_limit_is_not_kept(cache: Path, tmp_path: Path, registry) -> None:
    registry.packages[f"/{FR_CORE}/2.2.0"] = os.urandom(3 * MIB)
    run = run_cli("packages", "install", f"{FR_CORE}@2.2.0", cache=cache, tmp_path=tmp_path,
                  env={"FHIR_PACKAGE_REGISTRY": registry.url, "FHIR_MAX_PACKAGE_BYTES": str(2 * MIB)})
    refused(run, "FHIR_MAX_PACKAGE_BYTES")
    cache_untouched(cache)


def test_folder_with_a_bad_version_or_a_link_is_refused(cache: Path, victim: Path, tmp_path: Path) -> None:
    folder = tmp_path / "unpacked" / "package"
    folder.mkdir(parents=True)
    (folder / "package.json").write_bytes(manifest(version="1.0.0/../../../victim"))
    refused(run_cli("packages", "install", str(folder), cache=cache, tmp_path=tmp_path), "not a package version")
    (folder / "package.json").write_bytes(manifest())
    (folder / "secret.json").symlink_to(victim / "precious.txt")
    refused(run_cli("packages", "install", str(folder), cache=cache, tmp_path=tmp_path), "symbolic link")
    victim_intact(victim)
    cache_untouched(cache)


# -- archive members ------------------------------------------------------------------------------

@pytest.mark.parametrize(("case", "word"), [
    ("symlink", "symbolic link"),
    ("symlink-then-write", "symbolic link"),
    ("hardlink", "hard link"),
    ("device", "device"),
    ("fifo", "fifo"),
    ("dot-dot", "outside the package folder"),
    ("dot-dot-inside", "outside the package folder"),
    ("absolute", "outside the package folder"),
    ("backslash", "outside the package folder"),
])
def test_unsafe_members_are_refused(case: str, word: str, cache: Path, victim: Path, tmp_path: Path) -> None:
    target = str(victim / "precious.txt")
    members = {
        "symlink": [member("package/link.json", type=tarfile.SYMTYPE, linkname=target)],
        "symlink-then-write": [member("package/link.json", type=tarfile.SYMTYPE, linkname=target),
                               member("package/link.json", b"overwritten")],
        "hardlink": [member("package/link.json", type=tarfile.LNKTYPE, linkname=target)],
        "device": [member("package/dev", type=tarfile.CHRTYPE, devmajor=1, devminor=3)],
        "fifo": [member("package/fifo", type=tarfile.FIFOTYPE)],
        "dot-dot": [member("../../../victim/precious.txt", b"overwritten")],
        "dot-dot-inside": [member("package/../../../../victim/new.txt", b"new")],
        "absolute": [member(f"{victim}/new.txt", b"new")],
        "backslash": [member("package\\..\\..\\new.txt", b"new")],
    }[case]
    archive = package_tgz(tmp_path / f"{case}.tgz", *members)
    refused(run_cli("packages", "install", str(archive), cache=cache, tmp_path=tmp_path), word)
    victim_intact(victim)
    cache_untouched(cache)


def test_failed_install_never_harms_an_installed_package(cache: Path, fr_core_tgz: Path, tmp_path: Path) -> None:
    """Same name and version as an installed package, hostile content: refused, the package kept."""
    assert run_cli("packages", "install", str(fr_core_tgz), cache=cache, tmp_path=tmp_path).returncode == 0
    installed = cache / FR_FOLDER / "package"
    before = {p.relative_to(installed): p.read_bytes() for p in installed.rglob("*") if p.is_file()}
    for case, extra in [("link", member("package/link.json", type=tarfile.SYMTYPE, linkname="/etc/passwd")),
                        ("dot-dot", member("package/../x.json", b"{}"))]:
        hostile = package_tgz(tmp_path / f"{case}.tgz", extra, version="2.2.0")
        refused(run_cli("packages", "install", str(hostile), cache=cache, tmp_path=tmp_path))
    bomb = tmp_path / "bomb.tgz"
    bomb.write_bytes(gzip.compress(header("package/package.json", GIB)) + zeros_gzip(64 * MIB))
    refused(run_cli("packages", "install", str(bomb), cache=cache, tmp_path=tmp_path), "FHIR_MAX_PACKAGE_BYTES")
    after = {p.relative_to(installed): p.read_bytes() for p in installed.rglob("*") if p.is_file()}
    assert after == before
    cache_untouched(cache, FR_FOLDER)


# -- size and count -------------------------------------------------------------------------------

def test_zip_bomb_is_refused_in_bounded_memory(cache: Path, tmp_path: Path) -> None:
    """The issue's bomb: ~1 MB of gzip, one file of 1 GiB of zeros (it took 2.1 GB of memory)."""
    bomb = tmp_path / "bomb.tgz"
    bomb.write_bytes(gzip.compress(header("package/package.json", GIB)) + zeros_gzip(GIB)
                     + gzip.compress(bytes(1024)))
    assert bomb.stat().st_size < 2 * MIB
    run = run_cli("packages", "install", str(bomb), cache=cache, tmp_path=tmp_path)
    refused(run, "more than 512 MiB", "FHIR_MAX_PACKAGE_BYTES")
    assert run.peak_rss < PEAK_RSS_LIMIT, run.peak_rss
    cache_untouched(cache)


def test_bomb_of_many_files_stops_at_the_limit(cache: Path, tmp_path: Path) -> None:
    """Each file within the limit, together beyond it: streamed to disk until the limit, then refused
    and removed (8 x 16 MiB against FHIR_MAX_PACKAGE_BYTES = 40 MiB)."""
    parts = [gzip.compress(header("package/package.json", 2) + b"{}".ljust(512, b"\0"))]
    for i in range(8):
        parts += [gzip.compress(header(f"package/zeros-{i}.json", 16 * MIB)), zeros_gzip(16 * MIB)]
    bomb = tmp_path / "bomb.tgz"
    bomb.write_bytes(b"".join(parts) + gzip.compress(bytes(1024)))
    run = run_cli("packages", "install", str(bomb), cache=cache, tmp_path=tmp_path,
                  env={"FHIR_MAX_PACKAGE_BYTES": str(40 * MIB)})
    refused(run, "more than 40 MiB", "FHIR_MAX_PACKAGE_BYTES")
    assert run.peak_rss < PEAK_RSS_LIMIT, run.peak_rss
    cache_untouched(cache)


@pytest.mark.parametrize("case", ["zeros-after-the-end", "huge-pax-header", "huge-long-name"])
def test_data_hidden_outside_files_is_refused_in_bounded_memory(case: str, cache: Path, tmp_path: Path) -> None:
    """Bytes no file accounts for: tarfile would read a pax or long-name header whole into memory,
    and gzip.decompress zeros after the end of the archive."""
    good = io.BytesIO()
    with tarfile.open(fileobj=good, mode="w") as tar:
        info, data = member("package/package.json", manifest())
        tar.addfile(info, io.BytesIO(data))
    kind = {"huge-pax-header": tarfile.XHDTYPE, "huge-long-name": tarfile.GNUTYPE_LONGNAME}.get(case)
    if kind is None:
        bomb = gzip.compress(good.getvalue()) + zeros_gzip(GIB)
    else:
        bomb = gzip.compress(header("././@LongLink", GIB, kind)) + zeros_gzip(GIB)
    archive = tmp_path / "bomb.tgz"
    archive.write_bytes(bomb)
    run = run_cli("packages", "install", str(archive), cache=cache, tmp_path=tmp_path)
    refused(run, "more data than its files")
    assert run.peak_rss < PEAK_RSS_LIMIT, run.peak_rss
    cache_untouched(cache)


def test_too_many_files_is_refused(cache: Path, tmp_path: Path) -> None:
    files = [member(f"package/f{i}.json", b"{}") for i in range(60)]
    archive = package_tgz(tmp_path / "many.tgz", *files)
    run = run_cli("packages", "install", str(archive), cache=cache, tmp_path=tmp_path,
                  env={"FHIR_MAX_PACKAGE_FILES": "50"})
    refused(run, "more than 50 files", "FHIR_MAX_PACKAGE_FILES")
    cache_untouched(cache)
    # the same archive within the limit installs
    ok = run_cli("packages", "install", str(archive), cache=cache, tmp_path=tmp_path,
                 env={"FHIR_MAX_PACKAGE_FILES": "100"})
    assert ok.returncode == 0, ok.stderr
    cache_untouched(cache, f"{FR_CORE}#9.9.9")


def test_too_many_entries_at_the_default_limit(cache: Path, tmp_path: Path) -> None:
    """20,001 entries (the same folder again and again: cheap to unpack, counted all the same)."""
    folders = [member("package/examples", type=tarfile.DIRTYPE) for _ in range(20001)]
    archive = package_tgz(tmp_path / "many.tgz", *folders)
    refused(run_cli("packages", "install", str(archive), cache=cache, tmp_path=tmp_path),
            "more than 20000 files", "FHIR_MAX_PACKAGE_FILES")
    cache_untouched(cache)


# -- real packages ----------------------------------------------------------------------------------

def test_r4_examples_install_within_the_default_limits(cache: Path, tmp_path: Path, r4_examples) -> None:
    """The largest package the server uses (~193 MB unpacked, 5,308 files) fits the defaults
    (512 MiB, 20,000 files), and is unpacked in bounded memory."""
    archive = packages._archive(r4_examples)
    run = run_cli("packages", "install", str(archive), cache=cache, tmp_path=tmp_path)
    assert run.returncode == 0, run.stderr
    assert "installed hl7.fhir.r4.examples#4.0.1" in run.stdout
    cache_untouched(cache, "hl7.fhir.r4.examples#4.0.1")
    installed = cache / "hl7.fhir.r4.examples#4.0.1" / "package"
    with tarfile.open(archive) as tar:
        names = {m.name.removeprefix("package/") for m in tar.getmembers() if m.isfile()}
    assert names <= {p.relative_to(installed).as_posix() for p in installed.rglob("*") if p.is_file()}
    assert len(names) > 5000
    assert run.peak_rss < PEAK_RSS_LIMIT, run.peak_rss


def test_fr_core_installs_from_archive_and_folder(cache: Path, fr_core_tgz: Path, tmp_path: Path) -> None:
    run = run_cli("packages", "install", str(fr_core_tgz), cache=cache, tmp_path=tmp_path)
    assert run.returncode == 0, run.stderr
    unpacked = tmp_path / "unpacked"
    with tarfile.open(fr_core_tgz) as tar:
        tar.extractall(unpacked, filter="data")
    other = tmp_path / "other-cache"
    run = run_cli("packages", "install", str(unpacked), cache=other, tmp_path=tmp_path)
    assert run.returncode == 0, run.stderr
    cache_untouched(cache, FR_FOLDER)
    cache_untouched(other, FR_FOLDER)


# -- FHIR_PACKAGES ----------------------------------------------------------------------------------

@pytest.mark.parametrize("spec", ["../../victim@1.0.0", f"{FR_CORE}@1.0.0/../../../victim", "no spec at all"])
def test_packages_setting_with_a_bad_name_is_refused(spec: str) -> None:
    with pytest.raises(PackageRefused, match="FHIR_PACKAGES"):
        check_specs([str(packages.SHARED), spec])


def test_packages_setting_naming_a_hostile_archive_is_refused(package_cache: PackageCache, cache: Path,
                                                              victim: Path, tmp_path: Path) -> None:
    hostile = tgz(tmp_path / "hostile.tgz", member("package/package.json", manifest(version="1/../../../victim")))
    local = PackageCache(cache)
    for r4 in package_cache.installed():  # the core from the tests' cache, so that only FHIR_PACKAGES differs
        if r4[0].startswith("hl7.fhir.r4"):
            local.root.mkdir(parents=True, exist_ok=True)
            (local.root / f"{r4[0]}#{r4[1]}").symlink_to(package_cache.folder(*r4))
    with pytest.raises(PackageRefused, match="not a package version"):
        load_definitions(local, [str(hostile)])
    victim_intact(victim)
    assert all(p.name.startswith("hl7.fhir.r4") for p in cache.iterdir())


@pytest.mark.parametrize("case", ["name-at-version", "archive"])
def test_server_with_a_bad_package_refuses_to_start(case: str, tmp_path: Path, victim: Path) -> None:
    """NAME@VERSION is refused before anything starts; an archive's manifest when it is loaded
    (after the embedded database started, which is stopped again): exit 2, the message, no traceback."""
    if case == "archive":
        spec = str(tgz(tmp_path / "hostile.tgz", member("package/package.json",
                                                          manifest(version="1/../../../victim"))))
    else:
        spec = f"{FR_CORE}@1.0.0/../../../victim"
    environment = {k: v for k, v in os.environ.items() if k != "FHIR_MONGODB_URI"}
    environment.update({"FHIR_PACKAGES": spec, "FHIR_DATA_DIR": str(tmp_path / "data")})
    run = subprocess.run([sys.executable, "-m", "fhir_server", "serve", "--port", str(free_port())],
                         env=environment, capture_output=True, text=True, timeout=180, cwd=tmp_path,
                         preexec_fn=die_with_pytest)
    output = run.stdout + run.stderr
    assert run.returncode == 2, output
    assert "FHIR_PACKAGES" in output and "not a package version" in output, output
    assert "Traceback" not in output
    victim_intact(victim)
    if case == "name-at-version":
        assert not (tmp_path / "data").exists()  # refused before the database started
