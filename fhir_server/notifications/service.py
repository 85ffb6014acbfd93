"""The notification threads of one server process: the matcher (history → outbox) and the
deliverers (outbox → endpoints), started and stopped with the server. Nothing here is in a
request's path: a write commits without waiting for any of it."""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from fhir_server.errors import FhirError
from fhir_server.notifications.delivery import Deliverer
from fhir_server.notifications.matching import Matcher

if TYPE_CHECKING:
    from fhir_server.server import FhirServer

log = logging.getLogger(__name__)

POLL_S = 0.2
DELIVERY_THREADS = 8


class Notifier:
    def __init__(self, server: FhirServer):
        self.server = server
        self.stopping = threading.Event()
        self.matcher = Matcher(server)
        self.deliverer = Deliverer(server)
        self.pool = ThreadPoolExecutor(DELIVERY_THREADS, thread_name_prefix="notify")
        self.busy: set[str] = set()  # Subscriptions a thread of this process is delivering
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._loop, args=(self._match,), name="notify-match", daemon=True),
                        threading.Thread(target=self._loop, args=(self._deliver,), name="notify-deliver",
                                         daemon=True)]

    def start(self) -> None:
        try:
            self.server.outbox.ensure_indexes()
        except FhirError as exc:
            log.warning("notification indexes not checked at start: %s", exc)
        for thread in self.threads:
            thread.start()

    def stop(self) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(10)
        self.pool.shutdown(wait=True, cancel_futures=True)
        self.deliverer.close()

    def _loop(self, step) -> None:
        """`step` every POLL_S until stopped; a failure (the database away) is logged and retried."""
        while not self.stopping.wait(POLL_S):
            try:
                step()
            except FhirError as exc:  # the database away (503): said once a pass, no trace
                log.warning("notification pass failed: %s; trying again", exc)
                self.stopping.wait(1)
            except Exception:  # noqa: BLE001 - the loop must outlive any one pass
                log.exception("notification pass failed; trying again")
                self.stopping.wait(1)

    def _match(self) -> None:
        self.matcher.run_once()

    def _deliver(self) -> None:
        for subscription in self.deliverer.due():
            with self.lock:
                if subscription in self.busy:
                    continue
                self.busy.add(subscription)
            self.pool.submit(self._deliver_one, subscription)

    def _deliver_one(self, subscription: str) -> None:
        try:
            self.deliverer.deliver(subscription)
        except Exception:  # noqa: BLE001
            log.exception("delivery of Subscription/%s failed; trying again", subscription)
        finally:
            with self.lock:
                self.busy.discard(subscription)
