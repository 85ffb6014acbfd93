"""What every security test module needs: a real OpenID provider with the module's `CLIENTS`, a
server that trusts it (plus the module's `SERVER_ENV`), and an HTTP client on that server."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import start_server
from tests.oidc.provider import OidcProvider, require_node

AUDIENCE = "https://fhir.test/fhir"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(scope="module")
def provider(request):
    require_node()
    with OidcProvider(request.module.CLIENTS, audience=AUDIENCE) as op:
        yield op


@pytest.fixture(scope="module")
def secured(request, provider, tmp_path_factory, r4_examples):
    env = {"FHIR_AUTH_ISSUER": provider.issuer, "FHIR_AUTH_AUDIENCE": AUDIENCE,
           **getattr(request.module, "SERVER_ENV", {})}
    running = start_server(tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1]), extra_env=env)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def http(secured):
    with httpx.Client(base_url=secured.base_url, timeout=60, headers={"Accept": "application/fhir+json"}) as c:
        yield c
