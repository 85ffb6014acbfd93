"""Notifications survive a restart (the outbox and the position are in the database), and with
two servers on one database each notification is sent once."""

from __future__ import annotations

import json
import signal
import time
import uuid

import httpx

from fhir_server.storage.embedded import client_uri
from tests.conftest import free_port, start_server
from tests.notifications.conftest import FAST
from tests.notifications.test_rest_hook import patient, subscribe, subscription


def _ids(received) -> list[str]:
    return [json.loads(r.body)["id"] for r in received]


def test_undelivered_notifications_are_sent_after_a_restart(tmp_path, receiver, r4_examples):
    data = tmp_path / "data"
    first = start_server(data, extra_env=FAST | {"FHIR_SUBSCRIPTION_MAX_ATTEMPTS": "1000"})
    tag = uuid.uuid4().hex[:8]
    try:
        with httpx.Client(base_url=first.base_url, timeout=60) as fhir:
            subscribe(fhir, subscription(receiver, f"/{tag}", f"Patient?family=fam{tag}"))
            receiver.status = 503
            written = [fhir.post("/Patient", json=patient(f"fam{tag}")).json()["id"] for _ in range(3)]
    finally:
        first.stop(signal.SIGKILL)  # no clean stop: whatever was in memory is gone
    receiver.status = 200
    second = start_server(data, extra_env=FAST)
    try:
        got = receiver.wait(f"/{tag}", 3)
        assert list(dict.fromkeys(_ids(got))) == written  # at least once, in the order of the writes
    finally:
        second.stop()


def test_two_servers_on_one_database_send_each_notification_once(tmp_path, receiver, r4_examples):
    port = free_port()
    first = start_server(tmp_path / "a", extra_env=FAST | {"FHIR_EMBEDDED_DB_PORT": str(port)})
    second = start_server(tmp_path / "b", extra_env=FAST | {"FHIR_MONGODB_URI": client_uri(first.data_dir, port)})
    tag = uuid.uuid4().hex[:8]
    try:
        with httpx.Client(base_url=first.base_url, timeout=60) as a, \
                httpx.Client(base_url=second.base_url, timeout=60) as b:
            subscribe(a, subscription(receiver, f"/{tag}", f"Patient?family=fam{tag}"))
            written = [(a if i % 2 else b).post("/Patient", json=patient(f"fam{tag}")).json()["id"]
                       for i in range(20)]
        got = receiver.wait(f"/{tag}", 20)
        time.sleep(1.5)
        got = receiver.on(f"/{tag}")
        assert sorted(_ids(got)) == sorted(written) and len(got) == 20
    finally:
        second.stop()
        first.stop()
