"""From the outbox to the endpoints: each notification POSTed until the endpoint takes it (a 2xx),
retried with a doubling wait, and after FHIR_SUBSCRIPTION_MAX_ATTEMPTS the Subscription goes to
status `error` with the reason (a write of the server's own, through the router).

A worker delivers a Subscription's notifications only while it holds its lease in the database,
so with several workers each notification is sent by one of them, oldest first; a worker that
dies mid-way leaves its lease to expire and another sends what it had not marked sent (at least
once). Subscriptions are delivered by a small pool of threads, so a slow or dead endpoint holds
up its own Subscription only, and writes never wait for any of it.
"""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import httpx

from fhir_server import jsonio
from fhir_server.errors import FhirError
from fhir_server.interactions.request import FhirRequest
from fhir_server.notifications import endpoints
from fhir_server.notifications.subscriptions import SERVER, headers
from fhir_server.storage.store import now

if TYPE_CHECKING:
    from fhir_server.server import FhirServer

log = logging.getLogger(__name__)

LONGEST_WAIT = timedelta(minutes=5)
INACTIVE_WAIT = timedelta(seconds=10)  # how often the pending notifications of an inactive Subscription look again


class Deliverer:
    def __init__(self, server: FhirServer):
        self.server = server
        self.worker = uuid.uuid4().hex
        settings = server.settings
        self.lease = timedelta(seconds=settings.subscription_timeout_s + 30)
        self.client = httpx.Client(timeout=settings.subscription_timeout_s, follow_redirects=False)

    def close(self) -> None:
        self.client.close()

    def due(self) -> set[str]:
        return self.server.outbox.due_subscriptions(now())

    def deliver(self, subscription: str) -> None:
        """Send a Subscription's due notifications in order, while this worker holds its lease;
        stop at the first failure (the later ones wait for it: order is kept)."""
        outbox = self.server.outbox
        if not outbox.lease(subscription, self.worker, now(), now() + self.lease):
            return
        try:
            current = self.server.store.read("Subscription", subscription)
            resource = jsonio.loads(current.json) if current is not None and current.json else None
            if resource is None:
                outbox.drop(subscription)  # deleted: nobody to tell any more
                return
            if resource.get("status") != "active":  # off or in error: its notifications wait for it
                outbox.postpone(subscription, now() + INACTIVE_WAIT)
                return
            pending = outbox.pending(subscription)
            payloads = self._payloads(resource, pending)
            renew = now() + self.lease / 2
            for notification in pending:
                if notification["due"] > now() or not self._send(resource, notification, payloads):
                    return
                if now() > renew:  # still ours: the lease is renewed once half spent
                    outbox.lease(subscription, self.worker, now(), now() + self.lease)
                    renew = now() + self.lease / 2
        finally:
            outbox.release(subscription, self.worker)

    def _payloads(self, subscription: dict[str, Any], pending: list[dict[str, Any]]) -> dict[str, bytes]:
        """The versions the notifications carry (`payload` set), read in one query."""
        if not (subscription.get("channel") or {}).get("payload"):
            return {}
        return {f"{v.key}/{v.version}": v.json or b"" for v in self.server.outbox.versions([n["h"] for n in pending])}

    def _send(self, subscription: dict[str, Any], notification: dict[str, Any], payloads: dict[str, bytes]) -> bool:
        outbox = self.server.outbox
        try:
            self._post(subscription, notification, payloads)
        except Exception as exc:  # noqa: BLE001 - any failure of the endpoint is a failed attempt
            error = f"{type(exc).__name__}: {exc}"[:500]
            settings = self.server.settings
            attempts = notification["n"] + 1
            if attempts >= settings.subscription_max_attempts:
                outbox.give_up(notification["_id"], error)
                self._error(subscription["id"], f"the endpoint failed {attempts} times; last: {error}")
                return False
            wait = min(timedelta(milliseconds=settings.subscription_retry_ms * 2 ** (attempts - 1)), LONGEST_WAIT)
            outbox.retry(notification["_id"], now() + wait, error)
            log.info("notification %s failed (attempt %d, next in %s): %s", notification["_id"], attempts, wait, error)
            return False
        outbox.sent(notification["_id"], now())
        return True

    def _post(self, subscription: dict[str, Any], notification: dict[str, Any], payloads: dict[str, bytes]) -> None:
        """One attempt: raises on anything but a 2xx answer."""
        channel = subscription.get("channel") or {}
        url = channel.get("endpoint") or ""
        endpoints.check(url, self.server.settings)  # the name may resolve elsewhere now
        sent = headers(subscription)
        body = b""
        if channel.get("payload"):
            body = payloads.get(notification["h"], b"")
            sent["Content-Type"] = "application/fhir+json"
        answer = self.client.post(url, content=body, headers=sent)
        if not 200 <= answer.status_code < 300:
            raise RuntimeError(f"{url} answered {answer.status_code}")

    def _error(self, subscription: str, text: str) -> None:
        """The Subscription to status `error`, with why, as a write of the server's own."""
        current = self.server.store.read("Subscription", subscription)
        if current is None or not current.json:
            return
        resource = jsonio.loads(current.json)
        resource.update(status="error", error=text)
        req = FhirRequest("PUT", self.server.settings.base_url or "", type="Subscription", id=subscription,
                          shape="instance", body=resource, if_match=f'W/"{current.version}"', identity=SERVER,
                          url=f"Subscription/{subscription}", prefer_return="minimal")
        try:
            self.server.dispatch(req)
        except FhirError as exc:
            log.warning("Subscription/%s not put in error: %s", subscription, exc)
        log.warning("Subscription/%s is in error: %s", subscription, text)
