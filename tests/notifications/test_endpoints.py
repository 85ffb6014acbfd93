"""The SSRF guard: with an issuer (and FHIR_SUBSCRIPTION_ALLOW_PRIVATE unset) a Subscription's
endpoint must be a public address."""

from __future__ import annotations

import pytest

from tests.oidc.provider import Client
from tests.security.conftest import bearer, http, provider, secured  # noqa: F401 - fixtures

CLIENTS = [Client("backend", scope=["system/*.cruds"])]


def _subscription(endpoint: str) -> dict:
    return {"resourceType": "Subscription", "status": "requested", "reason": "test", "criteria": "Patient?gender=male",
            "channel": {"type": "rest-hook", "endpoint": endpoint}}


@pytest.mark.parametrize("endpoint", [
    "http://127.0.0.1:8080/hook", "http://localhost/hook", "http://[::1]/hook", "http://10.1.2.3/hook",
    "http://192.168.0.10/hook", "http://172.16.5.5/hook", "http://169.254.169.254/latest/meta-data/",
    "http://[::ffff:127.0.0.1]/hook", "http://0.0.0.0/hook", "http://[fd00:ec2::254]/", "ftp://93.184.215.14/x",
    "http://user:pw@93.184.215.14/x"])
def test_private_and_metadata_endpoints_are_refused(http, provider, endpoint):  # noqa: F811
    admin = bearer(provider.token("backend", scope="system/*.cruds"))
    answer = http.post("/Subscription", json=_subscription(endpoint), headers=admin)
    assert answer.status_code == 422, answer.text
    assert answer.json()["issue"][0]["expression"] == ["Subscription.channel.endpoint"]


def test_a_public_endpoint_is_accepted(http, provider):  # noqa: F811
    admin = bearer(provider.token("backend", scope="system/*.cruds"))
    answer = http.post("/Subscription", json={**_subscription("http://93.184.215.14/hook"), "status": "off"},
                       headers=admin)
    assert answer.status_code == 201, answer.text
