"""The audit trail: every access queued by the request path, written as AuditEvents in batches
by one thread, so a request pays for an append to a list and nothing else.

Written within a second (the queue is flushed every half second, or sooner when a batch is
full); on a clean stop, everything queued is written before the database closes. A database
that refuses the writes keeps the events queued and retried; when the queue passes its bound
the server stops taking requests (503, `check`) rather than serve without a trail. Events
still unwritten when the server stops are logged as JSON, so none vanishes silently.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from fhir_server import jsonio
from fhir_server.errors import FhirError, Issue
from fhir_server.security.audit_events import Access, audit_event

log = logging.getLogger(__name__)

Writer = Callable[[list[dict[str, Any]]], None]


class AuditTrail:
    def __init__(self, write: Writer, observer: dict[str, Any], *, flush_s: float = 0.5, batch: int = 500,
                 bound: int = 100_000, enabled: bool = True):
        self._write = write
        self.enabled = enabled  # off: nothing recorded (FHIR_AUDIT=false, open mode only)
        self.observer = observer  # the Reference naming this server in its events
        self.flush_s = flush_s
        self.batch = batch
        self.bound = bound
        self._queue: list[Access] = []
        self._failed: list[dict[str, Any]] = []  # built events a write refused, tried again first
        self._since = 0.0  # when the oldest queued access came
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._busy = False  # a batch is being written

    # -- the request path -----------------------------------------------------------------------
    def check(self) -> None:
        """503 while the trail cannot keep up (the database refuses its writes): no access
        without a record of it."""
        if len(self._queue) + len(self._failed) >= self.bound:
            raise FhirError(503, Issue("error", "transient", "the audit trail cannot be written at the moment, so "
                                       "no request is served; retry shortly"), headers={"Retry-After": "5"})

    def record(self, access: Access) -> None:
        if not self.enabled:
            return
        with self._cond:
            if self._thread is None and not self._stopping:
                self._start()
            if not self._queue:
                self._since = time.monotonic()
                self._cond.notify()  # the writer waits for a first access, then for the flush time
            self._queue.append(access)
            if len(self._queue) >= self.batch:
                self._cond.notify()

    # -- life cycle -----------------------------------------------------------------------------
    def _start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="audit-trail", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 30.0) -> None:
        """Write everything queued, then stop the thread."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
            thread = self._thread
        if thread is not None:
            thread.join(timeout_s)
        left = self._take_all()
        if left:
            log.error("%d audit events could not be written to the database; here they are:", len(left))
            for event in left:
                log.error("unwritten AuditEvent %s", jsonio.dumps(event).decode())

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Wait until what is queued now is written (tests, and tools that stop soon after)."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            self._since = 0.0  # due now
            self._cond.notify()
        while time.monotonic() < deadline:
            with self._cond:
                if not self._queue and not self._failed and not self._busy:
                    return True
            time.sleep(0.01)
        return False

    # -- the writer thread ----------------------------------------------------------------------
    def _run(self) -> None:
        failures = 0
        while True:
            with self._cond:
                while not self._queue and not self._failed and not self._stopping:
                    self._cond.wait()
                if self._stopping and not self._queue and not self._failed:
                    return
                while len(self._queue) < self.batch and not self._stopping and not self._failed:
                    remaining = self._since + self.flush_s - time.monotonic()
                    if remaining <= 0:
                        break
                    self._cond.wait(remaining)
                accesses = self._queue[:self.batch]
                del self._queue[:self.batch]
                self._since = time.monotonic()
                events, self._failed = self._failed, []
                self._busy = True
            events.extend(self._built(accesses))
            try:
                self._write(events)
                failures = 0
            except Exception as exc:  # noqa: BLE001 - the trail must survive anything and retry
                failures += 1
                log.warning("audit events not written (%s), %d kept to try again", exc, len(events))
                with self._cond:
                    self._failed = events + self._failed
                if self._stopping and failures >= 3:
                    return
                time.sleep(min(0.1 * 2 ** failures, 5.0))
            finally:
                with self._cond:
                    self._busy = False

    def _built(self, accesses: list[Access]) -> list[dict[str, Any]]:
        events = []
        for access in accesses:
            try:
                events.append(audit_event(access, self.observer))
            except Exception:  # a bug here must not cost the other events
                log.exception("no AuditEvent could be made for %s %s", access.method, access.path)
        return events

    def _take_all(self) -> list[dict[str, Any]]:
        with self._cond:
            events = self._failed + self._built(self._queue)
            self._failed, self._queue = [], []
        return events
