"""Helpers of the lifecycle tests: finding database processes through /proc, waiting, HTTP.

The server under test is a real `fhir-server serve` process (tests/conftest.py `start_server`);
its embedded database is a `secantusd-py` child found by its `--storage-path` argument.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
from pymongo import MongoClient
from pymongo.errors import PyMongoError

_ROOT = Path(__file__).resolve().parents[2]
if str(_ROOT) not in sys.path:  # `tests.conftest` is importable from the repository root
    sys.path.insert(0, str(_ROOT))

from fhir_server.storage.embedded import client_uri  # noqa: E402
from tests.conftest import RunningServer, die_with_pytest, free_port, start_server  # noqa: E402

__all__ = ["RunningServer", "die_with_pytest", "free_port", "start_server", "DbProcess", "db_processes", "children_db_processes",
           "wait_until", "fhir_client", "create_patient", "OwnDatabase", "HoldDown", "secantusd"]

FHIR_JSON = "application/fhir+json"
T = TypeVar("T")


@dataclass(frozen=True)
class DbProcess:
    pid: int
    ppid: int
    argv: tuple[str, ...]

    def option(self, name: str) -> str | None:
        if name in self.argv[:-1]:
            return self.argv[self.argv.index(name) + 1]
        return None

    @property
    def port(self) -> int:
        return int(self.option("--port") or 0)


def _read_proc(pid: int) -> DbProcess | None:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:  # gone meanwhile, or not ours to read
        return None
    argv = tuple(a.decode(errors="replace") for a in raw.split(b"\0") if a)
    if not any(Path(a).name == "secantusd-py" for a in argv[:2]):
        return None
    ppid = next((int(line.split()[1]) for line in status.splitlines() if line.startswith("PPid:")), 0)
    state = next((line.split()[1] for line in status.splitlines() if line.startswith("State:")), "?")
    if state == "Z":  # exited, not reaped yet: not a running database
        return None
    return DbProcess(pid, ppid, argv)


def all_db_processes() -> list[DbProcess]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            proc = _read_proc(int(entry))
            if proc:
                found.append(proc)
    return found


def db_processes(storage_path: Path) -> list[DbProcess]:
    """Running `secantusd-py` processes whose --storage-path is this folder."""
    target = Path(storage_path).resolve()
    return [p for p in all_db_processes()
            if p.option("--storage-path") and Path(p.option("--storage-path")).resolve() == target]


def children_db_processes(parent_pid: int) -> list[DbProcess]:
    return [p for p in all_db_processes() if p.ppid == parent_pid]


def wait_until(predicate: Callable[[], T], timeout: float, what: str, interval: float = 0.1) -> T:
    """Poll until `predicate()` is truthy; fail with `what` if it never is."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting ({timeout:.0f}s): {what}")
        time.sleep(interval)


def fhir_client(server: RunningServer, timeout: float = 30) -> httpx.Client:
    return httpx.Client(base_url=server.base_url, timeout=timeout,
                        headers={"Accept": FHIR_JSON, "Content-Type": FHIR_JSON})


def create_patient(client: httpx.Client, family: str, **fields: Any) -> dict[str, Any]:
    response = client.post("/Patient", json={"resourceType": "Patient", "name": [{"family": family}], **fields})
    assert response.status_code == 201, response.text
    return response.json()


def secantusd() -> str:
    sibling = Path(sys.executable).with_name("secantusd-py")
    return str(sibling) if sibling.exists() else "secantusd-py"


def fsync(server: RunningServer, port: int) -> None:
    """Ask the server's embedded database to flush everything to disk (so a later kill -9 loses nothing)."""
    with MongoClient(client_uri(server.data_dir, port), serverSelectionTimeoutMS=10000) as c:
        c.admin.command("fsync")


class OwnDatabase:
    """A `secantusd-py` the test starts itself, as an operator would run an external MongoDB."""

    def __init__(self, storage_path: Path, port: int | None = None):
        self.storage_path = storage_path
        self.port = port or free_port()
        self.process: subprocess.Popen | None = None

    @property
    def uri(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}/?directConnection=true"

    def start(self, timeout: float = 60) -> OwnDatabase:
        log = open(self.storage_path.parent / f"own-db-{self.port}.log", "ab")
        self.process = subprocess.Popen(
            [secantusd(), "--host", "127.0.0.1", "--port", str(self.port), "--storage-path",
             str(self.storage_path), "--log-level", "WARNING"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, preexec_fn=die_with_pytest)
        log.close()
        with MongoClient(self.uri, serverSelectionTimeoutMS=500) as client:
            def ready() -> bool:
                assert self.process.poll() is None, f"secantusd-py exited with {self.process.returncode}"
                try:
                    client.admin.command("ping")
                    return True
                except PyMongoError:
                    return False
            wait_until(ready, timeout, f"secantusd-py on port {self.port} answers ping")
        return self

    def client(self) -> MongoClient:
        return MongoClient(self.uri, serverSelectionTimeoutMS=10000)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class HoldDown:
    """Keep a database down: SIGKILL every `secantusd-py` on this storage path as soon as it appears.

    The server's watchdog restarts its database within about a second; holding it down makes
    the outage last as long as the test needs to observe it, whatever the machine's speed.
    """

    def __init__(self, storage_path: Path):
        self.storage_path = storage_path
        self.killed: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="hold-down", daemon=True)

    def _kill_all(self) -> None:
        for proc in db_processes(self.storage_path):
            try:
                os.kill(proc.pid, signal.SIGKILL)
                self.killed.append(proc.pid)
            except ProcessLookupError:
                pass

    def _run(self) -> None:
        while not self._stop.is_set():
            self._kill_all()
            self._stop.wait(0.01)

    def __enter__(self) -> HoldDown:
        self._kill_all()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
