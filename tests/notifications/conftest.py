from __future__ import annotations

import httpx
import pytest

from tests.conftest import start_server
from tests.notifications.receiver import start_receiver

FAST = {"FHIR_SUBSCRIPTION_RETRY_MS": "100", "FHIR_SUBSCRIPTION_MAX_ATTEMPTS": "4", "FHIR_AUDIT": "false"}


@pytest.fixture(scope="module")
def receiver():
    r = start_receiver()
    yield r
    r.close()


@pytest.fixture(scope="module")
def notifying(tmp_path_factory, r4_examples):
    """A server in open mode (private endpoints allowed) with quick retries."""
    running = start_server(tmp_path_factory.mktemp("notifications"), extra_env=FAST)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def fhir(notifying):
    with httpx.Client(base_url=notifying.base_url, timeout=60, headers={"Accept": "application/fhir+json"}) as c:
        yield c
