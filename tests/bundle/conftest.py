"""Fixtures of the bundle tests: dedicated servers where a test needs a database of its own."""

from __future__ import annotations

import httpx
import pytest

from .support import FHIR_JSON, mongo, start_server


@pytest.fixture
def fresh_server(tmp_path, r4_examples):
    """A `fhir-server serve` on an empty data directory, for one test."""
    running = start_server(tmp_path / "fhir-data")
    yield running
    running.stop()


@pytest.fixture
def fresh_client(fresh_server):
    with httpx.Client(base_url=fresh_server.base_url, timeout=120,
                      headers={"Accept": FHIR_JSON}) as c:
        yield c


@pytest.fixture
def fresh_db(fresh_server):
    with mongo(fresh_server) as client:
        yield client
