"""FHIR_MAX_BUNDLE_ENTRIES and FHIR_MAX_BODY_BYTES on a server started with small values: a clear
413 OperationOutcome naming the limit, and nothing written."""

from __future__ import annotations

import json

import httpx
import pytest

from .support import (
    FHIR_JSON,
    JSON_PATCH,
    assert_error,
    batch,
    bundle,
    entry,
    new_id,
    response_bundle,
    search_ids,
    start_server,
    system,
    transact,
    urn,
)

MAX_ENTRIES = 5
MAX_BYTES = 20_000


@pytest.fixture(scope="module")
def limited(tmp_path_factory, r4_examples):
    running = start_server(tmp_path_factory.mktemp("limits"), extra_env={
        "FHIR_MAX_BUNDLE_ENTRIES": str(MAX_ENTRIES), "FHIR_MAX_BODY_BYTES": str(MAX_BYTES)})
    yield running
    running.stop()


@pytest.fixture
def http(limited):
    with httpx.Client(base_url=limited.base_url, timeout=120, headers={"Accept": FHIR_JSON}) as c:
        yield c


def _entries(s: str, n: int) -> list[dict]:
    return [entry("POST", "Patient", {"resourceType": "Patient", "identifier": [{"system": s, "value": str(i)}]},
                  urn()) for i in range(n)]


@pytest.mark.parametrize("kind", ["transaction", "batch"])
def test_entries_up_to_the_limit_are_processed(limited, http, kind):
    s = system()
    send = transact if kind == "transaction" else batch
    response_bundle(send(http, limited.base_url, _entries(s, MAX_ENTRIES)), f"{kind}-response", MAX_ENTRIES)
    assert len(search_ids(http, "Patient", identifier=f"{s}|")) == MAX_ENTRIES  # `system|`: any value


@pytest.mark.parametrize("kind", ["transaction", "batch"])
def test_one_entry_more_is_refused_whole(limited, http, kind):
    s = system()
    send = transact if kind == "transaction" else batch
    text = assert_error(send(http, limited.base_url, _entries(s, MAX_ENTRIES + 1)), 413)
    assert str(MAX_ENTRIES) in text and "FHIR_MAX_BUNDLE_ENTRIES" in text, text
    assert str(MAX_ENTRIES + 1) in text, text
    assert search_ids(http, "Patient", identifier=f"{s}|") == []


def _padded_transaction(s: str, size: int) -> bytes:
    """A valid 1-entry transaction of exactly `size` bytes (padding in a narrative-free string)."""
    body = bundle("transaction", [entry("POST", "Patient", {
        "resourceType": "Patient", "identifier": [{"system": s, "value": "pad"}],
        "name": [{"family": ""}]}, urn())])
    raw = json.dumps(body, separators=(",", ":")).encode()
    pad = size - len(raw)
    assert pad > 0
    body["entry"][0]["resource"]["name"][0]["family"] = "x" * pad
    raw = json.dumps(body, separators=(",", ":")).encode()
    assert len(raw) == size
    return raw


def test_a_body_at_the_limit_is_accepted(limited, http):
    s = system()
    r = http.post(limited.base_url, content=_padded_transaction(s, MAX_BYTES),
                  headers={"Content-Type": FHIR_JSON})
    response_bundle(r, "transaction-response", 1)
    assert len(search_ids(http, "Patient", identifier=f"{s}|pad")) == 1


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_larger_body_is_refused(limited, http, chunked):
    s = system()
    raw = _padded_transaction(s, MAX_BYTES + 1)
    content = iter([raw[i:i + 4096] for i in range(0, len(raw), 4096)]) if chunked else raw
    r = http.post(limited.base_url, content=content, headers={"Content-Type": FHIR_JSON})
    if chunked:
        assert "content-length" not in r.request.headers
    text = assert_error(r, 413)
    assert str(MAX_BYTES) in text and "FHIR_MAX_BODY_BYTES" in text, text
    assert search_ids(http, "Patient", identifier=f"{s}|pad") == []


def test_the_body_limit_applies_to_patch_and_create(limited, http):
    id_ = new_id()
    assert http.put(f"/Patient/{id_}", json={"resourceType": "Patient", "id": id_}).status_code == 201
    big = "x" * (MAX_BYTES + 10)
    r = http.patch(f"/Patient/{id_}", json=[{"op": "add", "path": "/gender", "value": big}],
                   headers={"Content-Type": JSON_PATCH})
    assert_error(r, 413)
    assert_error(http.post("/Patient", json={"resourceType": "Patient", "name": [{"family": big}]}), 413)
    assert http.get(f"/Patient/{id_}").json()["meta"]["versionId"] == "1"
