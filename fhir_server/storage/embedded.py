"""The embedded database: a MongoDB-wire server run as a child process, watched over.

`secantusd-py` (PyPI `SecantusDB`, GPL-2.0) is started as a separate process, never imported,
so its licence stays out of ours. It keeps its files under `FHIR_DATA_DIR/db` across restarts.
A watchdog thread restarts it if it dies, so that the API recovers on its own after a crash
(requests answer 503 meanwhile).
"""

from __future__ import annotations

import logging
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from pymongo import MongoClient
from pymongo.errors import PyMongoError

log = logging.getLogger(__name__)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:
    """Linux: the database is killed if the server process is killed outright (kill -9),
    instead of living on as an orphan holding the data directory's lock. SIGKILL, not SIGTERM:
    the database's graceful shutdown sometimes hangs once it has written data (seen in 2 of 8
    tries), and with --sync-on-commit a hard stop loses no acknowledged write (tests/robustness)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _executable() -> list[str]:
    found = shutil.which("secantusd-py")
    if found:
        return [found]
    sibling = Path(sys.executable).with_name("secantusd-py")  # same venv, not on PATH
    if sibling.exists():
        return [str(sibling)]
    raise RuntimeError("secantusd-py not found: install the project with `pip install -e .` "
                       "or set FHIR_MONGODB_URI to an existing MongoDB")


class EmbeddedDatabase:
    """Start, watch and stop the embedded server; `uri` is what pymongo connects to."""

    def __init__(self, data_dir: Path, port: int = 0, test_commands: bool = False):
        self.data_dir = Path(data_dir).resolve()
        self.port = port or _free_port()
        self.test_commands = test_commands
        self.process: subprocess.Popen | None = None
        self._stopping = threading.Event()
        self._watchdog: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def uri(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}/?directConnection=true"

    def start(self, timeout: float = 60.0) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._spawn()
        self.wait_ready(timeout)
        self._watchdog = threading.Thread(target=self._watch, name="embedded-db-watchdog", daemon=True)
        self._watchdog.start()

    def _spawn(self) -> None:
        cmd = _executable() + ["--host", "127.0.0.1", "--port", str(self.port),
                               "--storage-path", str(self.data_dir / "db"), "--log-level", "WARNING",
                               # fsync the log at each commit: an acknowledged write survives a crash
                               # (the server ignores j:true inside transactions otherwise)
                               "--sync-on-commit"]
        if self.test_commands:
            cmd.append("--enable-test-commands")
        log_file = open(self.data_dir / "db.log", "ab")
        with self._lock:
            # Own process group: a Ctrl-C on the terminal reaches us, and we stop it in order.
            self.process = subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, start_new_session=True,
                                            preexec_fn=_die_with_parent if sys.platform == "linux" else None)
        log_file.close()
        log.info("embedded database pid %s on port %s, files in %s", self.process.pid, self.port,
                 self.data_dir / "db")

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        client = MongoClient(self.uri, serverSelectionTimeoutMS=500, connectTimeoutMS=500)
        try:
            while True:
                if self.process and self.process.poll() is not None:
                    raise RuntimeError(f"the embedded database exited with code {self.process.returncode}; "
                                       f"see {self.data_dir / 'db.log'}")
                try:
                    client.admin.command("ping")
                    return
                except PyMongoError:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"the embedded database did not answer within {timeout:.0f}s; "
                                           f"see {self.data_dir / 'db.log'}") from None
                    time.sleep(0.1)
        finally:
            client.close()

    def _watch(self) -> None:
        delay = 0.5
        while not self._stopping.wait(0.5):
            proc = self.process
            if proc is None or proc.poll() is None:
                delay = 0.5
                continue
            log.error("the embedded database exited (code %s); restarting it", proc.returncode)
            time.sleep(delay)
            if self._stopping.is_set():
                return
            try:
                self._spawn()
                self.wait_ready(30)
                log.warning("the embedded database is back")
            except (OSError, RuntimeError) as exc:
                log.error("restart failed: %s", exc)
                delay = min(delay * 2, 10)

    def stop(self, timeout: float = 20.0) -> None:
        self._stopping.set()
        with self._lock:
            proc = self.process
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            log.warning("the embedded database did not stop in %ss; killing it", timeout)
            proc.kill()
            proc.wait()

    def __enter__(self) -> EmbeddedDatabase:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

