"""The embedded database: a MongoDB-wire server run as a child process, watched over.

`secantusd-py` (PyPI `SecantusDB`, GPL-2.0) is started as a separate process, never imported,
so its licence stays out of ours. It keeps its files under `FHIR_DATA_DIR/db` across restarts.
A watchdog thread restarts it if it dies, so that the API recovers on its own after a crash
(requests answer 503 meanwhile).

It listens on 127.0.0.1 only and requires authentication (SCRAM-SHA-256): the credential is
generated on first start and kept in `FHIR_DATA_DIR/db-credential` (mode 0600). The database
creates users only while it runs without `--auth`, so a data folder without a credential (new,
or made by an earlier version) is provisioned once: started without authentication on another
loopback port, the user created, stopped, then started for real. The data folder is mode 0700
and the database's files are created under umask 077: nobody else on the machine reads them.
The URI carries the credential: it is handed to pymongo and to uvicorn's workers, never logged.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import quote_plus

from pymongo import MongoClient
from pymongo.errors import OperationFailure, PyMongoError

log = logging.getLogger(__name__)

CREDENTIAL_FILE = "db-credential"
USER = "fhir-server"
_AUTHENTICATION_FAILED = 18


def client_uri(data_dir: Path, port: int) -> str:
    """The URI of the embedded database of the server whose FHIR_DATA_DIR is `data_dir`, running
    on `port`, with its credential: for tools and tests that look at the database directly."""
    password = _read_credential(Path(data_dir))
    if password is None:
        raise RuntimeError(f"no {CREDENTIAL_FILE} in {data_dir}: the embedded database was never started there")
    return _uri(port, password)


def _uri(port: int, password: str | None) -> str:
    auth = f"{USER}:{quote_plus(password)}@" if password else ""
    return f"mongodb://{auth}127.0.0.1:{port}/?directConnection=true" + ("&authSource=admin" if password else "")


def _read_credential(data_dir: Path) -> str | None:
    path = data_dir / CREDENTIAL_FILE
    try:
        return path.read_text(encoding="ascii").strip() or None
    except FileNotFoundError:
        return None


def _write_private(path: Path, text: str) -> None:
    """`text` in `path`, mode 0600 from the start (never readable by others, not even briefly),
    replacing it in one step."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    temporary.unlink(missing_ok=True)
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as out:
        out.write(text)
        out.flush()
        os.fsync(out.fileno())
    os.replace(temporary, path)


def _make_private(data_dir: Path) -> None:
    """The data folder mode 0700, and files an earlier version left readable made private."""
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    data_dir.chmod(0o700)
    for folder, _, files in os.walk(data_dir / "db"):
        os.chmod(folder, 0o700)
        for name in files:
            path = os.path.join(folder, name)
            mode = os.stat(path).st_mode & 0o777
            if mode & 0o077:
                os.chmod(path, mode & 0o700)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _child_setup() -> None:
    """`preexec_fn` of the database: its files private (umask 077), and it dies with us."""
    os.umask(0o077)
    if sys.platform == "linux":
        _die_with_parent()


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
        self._password: str | None = None

    @property
    def uri(self) -> str:
        """What pymongo connects to, credential included: never log it."""
        return _uri(self.port, self._password)

    def start(self, timeout: float = 60.0) -> None:
        _make_private(self.data_dir)
        self._password = self._credential(timeout)
        self._spawn()
        self.wait_ready(timeout)
        self._watchdog = threading.Thread(target=self._watch, name="embedded-db-watchdog", daemon=True)
        self._watchdog.start()

    def _credential(self, timeout: float) -> str:
        """The credential of the data folder; provisioned first when the folder has none, or when
        its database is new (no files yet: no user either)."""
        password = _read_credential(self.data_dir)
        if password is not None and (self.data_dir / "db" / "WiredTiger").exists():
            return password
        password = password or secrets.token_urlsafe(32)
        self._provision(password, timeout)
        _write_private(self.data_dir / CREDENTIAL_FILE, password)  # after the user exists: a crash
        return password                                              # in between only provisions again

    def _provision(self, password: str, timeout: float) -> None:
        """Create (or reset) the user, the database running without authentication meanwhile on
        a port of its own, on loopback, for about a second."""
        port = _free_port()
        process = self._popen(port, auth=False)
        log.info("provisioning the embedded database's credential (pid %s)", process.pid)
        try:
            _wait_ready(process, _uri(port, None), timeout, self.data_dir)
            with MongoClient(_uri(port, None), serverSelectionTimeoutMS=5000) as client:
                _create_or_reset_user(client, password)
                client.admin.command("fsync")  # the user is on disk: a hard stop loses nothing
        finally:  # (a graceful one takes 2 s, and sometimes hangs: see _die_with_parent)
            process.kill()
            process.wait()

    def _popen(self, port: int, auth: bool = True) -> subprocess.Popen:
        cmd = _executable() + ["--host", "127.0.0.1", "--port", str(port),
                               "--storage-path", str(self.data_dir / "db"), "--log-level", "WARNING",
                               # fsync the log at each commit: an acknowledged write survives a crash
                               # (the server ignores j:true inside transactions otherwise)
                               "--sync-on-commit"]
        if auth:
            cmd.append("--auth")
        if self.test_commands:
            cmd.append("--enable-test-commands")
        fd = os.open(self.data_dir / "db.log", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        with os.fdopen(fd, "ab") as log_file:
            # Own process group: a Ctrl-C on the terminal reaches us, and we stop it in order.
            return subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True, preexec_fn=_child_setup)

    def _spawn(self) -> None:
        with self._lock:
            self.process = self._popen(self.port)
        log.info("embedded database pid %s on port %s, files in %s", self.process.pid, self.port,
                 self.data_dir / "db")

    def wait_ready(self, timeout: float) -> None:
        _wait_ready(self.process, self.uri, timeout, self.data_dir)

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
        _stop(proc, timeout)

    def __enter__(self) -> EmbeddedDatabase:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()



def _wait_ready(process: subprocess.Popen | None, uri: str, timeout: float, data_dir: Path) -> None:
    """Until the database answers a ping, authenticated when `uri` has a credential (a refused
    one is said at once, not waited out)."""
    deadline = time.monotonic() + timeout
    with MongoClient(uri, serverSelectionTimeoutMS=500, connectTimeoutMS=500) as client:
        while True:
            if process and process.poll() is not None:
                raise RuntimeError(f"the embedded database exited with code {process.returncode}; "
                                   f"see {data_dir / 'db.log'}")
            try:
                client.admin.command("ping")
                return
            except OperationFailure as exc:
                if exc.code != _AUTHENTICATION_FAILED:
                    raise RuntimeError(f"the embedded database answered: {exc}") from None
                raise RuntimeError(f"the embedded database refuses the credential in {data_dir / CREDENTIAL_FILE}; "
                                   "remove that file and start again to provision a new one") from None
            except PyMongoError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the embedded database did not answer within {timeout:.0f}s; "
                                       f"see {data_dir / 'db.log'}") from None
                time.sleep(0.1)


def _stop(proc: subprocess.Popen | None, timeout: float) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        log.warning("the embedded database did not stop in %ss; killing it", timeout)
        proc.kill()
        proc.wait()


def _create_or_reset_user(client: MongoClient, password: str) -> None:
    """The server's user with this password: created, or its password reset when the folder's
    credential was lost (the database still knows the user)."""
    roles = [{"role": "root", "db": "admin"}]
    try:
        client.admin.command("createUser", USER, pwd=password, roles=roles)
    except OperationFailure:
        client.admin.command("updateUser", USER, pwd=password, roles=roles)
