"""FHIR_MAX_BATCH_SEARCHES and FHIR_MAX_RESPONSE_BYTES on a server started with small values: too
many searches is a 413 before any entry runs; an answer growing past the limit is a 422 naming the
entry when nothing was written, and otherwise a response that still reports every write."""

from __future__ import annotations

import httpx
import pytest

from .support import (
    FHIR_JSON,
    assert_error,
    batch,
    entry,
    new_id,
    response_bundle,
    search_ids,
    start_server,
    status,
    system,
    transact,
)

MAX_SEARCHES = 3
MAX_RESPONSE = 60_000
LARGE_TEXT = "x" * 20_000  # each read of a large Patient answers ~20 KB


@pytest.fixture(scope="module")
def limited(tmp_path_factory, r4_examples):
    running = start_server(tmp_path_factory.mktemp("response-limits"), extra_env={
        "FHIR_MAX_BATCH_SEARCHES": str(MAX_SEARCHES), "FHIR_MAX_RESPONSE_BYTES": str(MAX_RESPONSE)})
    yield running
    running.stop()


@pytest.fixture
def http(limited):
    with httpx.Client(base_url=limited.base_url, timeout=120, headers={"Accept": FHIR_JSON}) as c:
        yield c


@pytest.fixture(scope="module")
def large(limited) -> str:
    with httpx.Client(base_url=limited.base_url, timeout=120) as c:
        id_ = new_id("large")
        response = c.put(f"/Patient/{id_}", json={"resourceType": "Patient", "id": id_,
                                                   "name": [{"text": LARGE_TEXT}]})
        assert response.status_code == 201, response.text
    return f"Patient/{id_}"


def _searches(n: int) -> list[dict]:
    return [entry("GET", f"Patient?family=none{i}") for i in range(n)]


@pytest.mark.parametrize("send", [batch, transact])
def test_searches_up_to_the_limit_run(limited, http, send):
    kind = "batch-response" if send is batch else "transaction-response"
    items = response_bundle(send(http, limited.base_url, _searches(MAX_SEARCHES)), kind, MAX_SEARCHES)
    assert [status(i) for i in items] == [200] * MAX_SEARCHES


@pytest.mark.parametrize("send", [batch, transact])
def test_one_search_more_is_refused_before_anything_runs(limited, http, send):
    s = system()
    created = entry("POST", "Patient", {"resourceType": "Patient", "identifier": [{"system": s, "value": "1"}]})
    searches = _searches(MAX_SEARCHES) + [entry("POST", "Patient/_search?family=x")]
    text = assert_error(send(http, limited.base_url, [created, *searches]), 413)
    assert f"{MAX_SEARCHES + 1} searches" in text and "FHIR_MAX_BATCH_SEARCHES" in text, text
    assert search_ids(http, "Patient", identifier=f"{s}|") == []


def test_reads_and_other_entries_are_not_searches(limited, http, large):
    entries = [entry("GET", large), entry("GET", f"{large}/_history"), *_searches(MAX_SEARCHES)]
    items = response_bundle(batch(http, limited.base_url, entries), "batch-response", 2 + MAX_SEARCHES)
    assert [status(i) for i in items][:2] == [200, 200]


@pytest.mark.parametrize("send", [batch, transact])
def test_an_answer_past_the_limit_fails_whole_when_nothing_was_written(limited, http, large, send):
    text = assert_error(send(http, limited.base_url, [entry("GET", large)] * 5), 422)
    assert "entry 2" in text and "FHIR_MAX_RESPONSE_BYTES" in text and "split" in text, text


def test_a_batch_that_wrote_reports_its_writes(limited, http, large):
    s = system()
    created = entry("POST", "Patient", {"resourceType": "Patient", "identifier": [{"system": s, "value": "1"}]})
    items = response_bundle(batch(http, limited.base_url, [*[entry("GET", large)] * 4, created]),
                            "batch-response", 5)
    assert status(items[4]) == 201 and items[4]["response"]["location"].startswith("Patient/")
    assert [status(i) for i in items[:4]] == [200, 200, 422, 422]
    assert "FHIR_MAX_RESPONSE_BYTES" in items[2]["response"]["outcome"]["issue"][0]["diagnostics"]
    assert len(search_ids(http, "Patient", identifier=f"{s}|")) == 1


def test_a_transaction_that_wrote_reports_its_writes(limited, http, large):
    s = system()
    created = entry("POST", "Patient", {"resourceType": "Patient", "identifier": [{"system": s, "value": "1"}],
                                        "name": [{"text": LARGE_TEXT}]})
    items = response_bundle(transact(http, limited.base_url, [created, *[entry("GET", large)] * 3]),
                            "transaction-response", 4)
    assert status(items[0]) == 201 and items[0]["response"]["location"].startswith("Patient/")
    assert [status(i) for i in items[1:]] == [200, 422, 422]
    assert len(search_ids(http, "Patient", identifier=f"{s}|")) == 1
