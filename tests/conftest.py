"""Shared fixtures: a real `fhir-server serve` (uvicorn + embedded database) per test session.

Tests talk to it over HTTP only, as any client would. The FHIR package cache is the tests' own,
not the user's (tests/packages.py): the R4 examples package is installed into it once and kept
between runs, and the French packages are looked up there among other places.

Every server or command the tests start dies with pytest, even when pytest is killed
(`die_with_pytest`); the embedded database dies with its server.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `tests.packages` is importable from the repository root
    sys.path.insert(0, str(ROOT))

from fhir_server.definitions.packages import Package, PackageCache  # noqa: E402
from tests import packages  # noqa: E402


def pytest_configure(config: pytest.Config) -> None:
    packages.configure(config)


_PYTEST_PID = os.getpid()


def die_with_pytest() -> None:
    """`preexec_fn` of every process the tests start: the kernel kills it (SIGKILL) when pytest
    ends, however it ends (Ctrl-C, SIGKILL…), so no server is left behind; its embedded database
    dies with it in turn (fhir_server/storage/embedded.py does the same for the database).
    The kernel watches the thread that started the process: start servers from the main thread."""
    if sys.platform != "linux":
        return
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        if os.getppid() != _PYTEST_PID:  # pytest already gone between fork and prctl
            os._exit(1)
    except (OSError, AttributeError):
        pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class RunningServer:
    """A `fhir-server serve` child process and how to reach it."""

    process: subprocess.Popen
    base_url: str
    data_dir: Path
    log_path: Path
    env: dict

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def start_server(data_dir: Path, port: int | None = None, extra_env: dict | None = None,
                 timeout: float = 120) -> RunningServer:
    """Start `fhir-server serve` and wait until GET /fhir/metadata answers 200."""
    port = port or free_port()
    packages.guide_dependencies()
    env = {k: v for k, v in os.environ.items() if k != "FHIR_MONGODB_URI"}  # embedded unless asked
    env.update({"FHIR_DATA_DIR": str(data_dir), **(extra_env or {})})
    data_dir.mkdir(parents=True, exist_ok=True)
    log_path = data_dir / f"server-{port}.log"
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "fhir_server", "serve", "--port", str(port)],
            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=str(data_dir), preexec_fn=die_with_pytest)
    server = RunningServer(process, f"http://127.0.0.1:{port}/fhir", data_dir, log_path, env)
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"fhir-server exited with {process.returncode}:\n{server.log()}")
        try:
            if httpx.get(f"{server.base_url}/metadata", timeout=2).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            server.stop(signal.SIGKILL)
            raise RuntimeError(f"fhir-server did not answer within {timeout}s:\n{server.log()}")
        time.sleep(0.2)


@pytest.fixture(scope="session")
def r4_examples() -> Package:
    """The official R4 examples package (hl7.fhir.r4.examples 4.0.1), installed if missing."""
    return packages.install("hl7.fhir.r4.examples", "4.0.1")


@pytest.fixture(scope="session")
def package_cache(r4_examples) -> PackageCache:
    """The tests' package cache (tests/packages.py, FHIR_PACKAGE_CACHE of the session), R4 in it."""
    return packages.package_cache()


@pytest.fixture(scope="session")
def fr_core_tgz() -> Path:
    """FR Core 2.2.0 (.tgz): skips the test when it cannot be found (fails it under CI=true)."""
    return packages.fr_core()


@pytest.fixture(scope="session")
def server(tmp_path_factory, r4_examples) -> RunningServer:
    running = start_server(tmp_path_factory.mktemp("fhir-data"))
    yield running
    running.stop()


@pytest.fixture(scope="session")
def unchecked_server(tmp_path_factory, r4_examples) -> RunningServer:
    """A second session server with FHIR_REFERENTIAL_INTEGRITY=off, started when first asked for:
    for what references to deleted or missing resources do (data loaded with integrity off), a
    state the default server refuses to get into."""
    running = start_server(tmp_path_factory.mktemp("fhir-data-unchecked"),
                           extra_env={"FHIR_REFERENTIAL_INTEGRITY": "off"})
    yield running
    running.stop()


@pytest.fixture
def unchecked_client(unchecked_server: RunningServer) -> httpx.Client:
    with httpx.Client(base_url=unchecked_server.base_url, timeout=60,
                      headers={"Accept": "application/fhir+json"}) as c:
        yield c


@pytest.fixture(scope="session")
def base_url(server: RunningServer) -> str:
    return server.base_url


@pytest.fixture
def client(base_url: str) -> httpx.Client:
    with httpx.Client(base_url=base_url, timeout=60,
                      headers={"Accept": "application/fhir+json"}) as c:
        yield c
