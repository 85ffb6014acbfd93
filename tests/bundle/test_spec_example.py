"""The specification's own example transaction (Bundle-bundle-transaction.json, R4 examples).

Its entry 4 PUTs Patient/123a with `ifMatch: W/"2"`: on an empty server the whole transaction
must fail naming that entry and write nothing; once Patient/123a is at version 2 it succeeds.
Its `ValueSet/$lookup` entry is an operation this server does not have, and its GET entries may
find nothing: those read-only entries answer for themselves after the commit and undo nothing.
"""

from __future__ import annotations

import copy

import pytest

from fhir_server import jsonio

from .support import (
    INSTANT_RE,
    assert_error,
    dump,
    dump_difference,
    history_versions,
    location,
    post_bundle,
    read,
    response_bundle,
    search_ids,
    status,
    system_history_total,
)


@pytest.fixture
def example(r4_examples) -> dict:
    return jsonio.loads((r4_examples.root / "Bundle-bundle-transaction.json").read_bytes())


def test_the_example_as_published(example):
    """What the tests below rely on: the example is the one the issue describes."""
    methods = [(e["request"]["method"], e["request"]["url"]) for e in example["entry"]]
    assert methods[4] == ("PUT", "Patient/123a") and example["entry"][4]["request"]["ifMatch"] == 'W/"2"'
    assert methods[7] == ("POST", "ValueSet/$lookup")
    assert [m for m, _ in methods] == ["POST", "POST", "PUT", "PUT", "PUT", "DELETE", "DELETE", "POST", "GET", "GET"]


def test_on_an_empty_server_it_fails_at_entry_4_and_writes_nothing(example, fresh_server, fresh_client, fresh_db):
    before = dump(fresh_db)
    response = post_bundle(fresh_client, fresh_server.base_url, example)
    text = assert_error(response, 412)
    assert "entry 4" in text and "http://example.org/fhir/Patient/123a" in text, text
    assert "entry 0" not in text and "entry 3" not in text, text
    after = dump(fresh_db)
    assert after == before, dump_difference(before, after)
    # …and through the API: none of the writes before entry 4 (in any order) happened
    assert search_ids(fresh_client, "Patient") == []
    assert fresh_client.get("/Patient/123").status_code == 404
    assert fresh_client.get("/Patient/123a").status_code == 404
    assert system_history_total(fresh_client) == 0


def _prepare(client) -> dict[str, str]:
    """Patient/123a at version 2, plus what the example's two DELETEs delete."""
    for active in (True, False):
        r = client.put("/Patient/123a", json={"resourceType": "Patient", "id": "123a", "active": active})
        assert r.status_code in (200, 201), r.text
    assert r.headers["etag"] == 'W/"2"'
    r = client.put("/Patient/234", json={"resourceType": "Patient", "id": "234"})
    assert r.status_code == 201, r.text
    r = client.post("/Patient", json={"resourceType": "Patient", "identifier": [{"system": "urn:x", "value": "123456"}]})
    assert r.status_code == 201, r.text
    return {"by_identifier": r.json()["id"]}


def test_after_preparing_patient_123a_at_version_2_it_succeeds(example, fresh_server, fresh_client, fresh_db):
    prepared = _prepare(fresh_client)
    history_before = system_history_total(fresh_client)
    response = post_bundle(fresh_client, fresh_server.base_url, example)
    entries = response_bundle(response, "transaction-response", 10)

    # writes: status, location, etag, lastModified, and (Prefer: representation by default) the resource
    created = {}
    for i in (0, 1, 2, 3):
        item = entries[i]
        assert status(item) == 201, (i, item)
        type_, id_, version = location(item)
        assert (type_, version) == ("Patient", 1)
        assert item["response"]["etag"] == 'W/"1"'
        assert INSTANT_RE.match(item["response"]["lastModified"]), item["response"]
        assert item["resource"]["id"] == id_ and item["resource"]["meta"]["versionId"] == "1"
        created[i] = id_
    assert created[2] == "123"
    assert len(set(created.values())) == 4
    assert status(entries[4]) == 200
    assert location(entries[4]) == ("Patient", "123a", 3)
    assert entries[4]["response"]["etag"] == 'W/"3"'
    assert entries[4]["resource"]["name"][0]["family"] == "Chalmers"
    for i in (5, 6):  # the DELETEs
        assert 200 <= status(entries[i]) < 300, entries[i]

    # the read-only entries answer for themselves
    lookup = entries[7]
    assert 400 <= status(lookup) < 500, lookup
    assert lookup["response"]["outcome"]["resourceType"] == "OperationOutcome"
    assert "resource" not in lookup
    search = entries[8]
    assert status(search) == 200, search
    assert search["resource"]["type"] == "searchset"
    found = {e["resource"]["id"] for e in search["resource"]["entry"]}
    # GETs run after the writes: the search sees the patients this transaction wrote
    assert found == {created[0], created[1], "123", created[3], "123a"}, found
    missing = entries[9]
    assert status(missing) == 404, missing
    assert missing["response"]["outcome"]["resourceType"] == "OperationOutcome"

    # …and they undid nothing: every write is there
    for i in (0, 1, 2, 3):
        assert read(fresh_client, f"Patient/{created[i]}")["meta"]["versionId"] == "1"
    assert read(fresh_client, f"Patient/{created[1]}")["identifier"][0]["value"] == "234234"
    assert read(fresh_client, f"Patient/{created[3]}")["identifier"][0]["value"] == "456456"
    patient_123a = read(fresh_client, "Patient/123a")
    assert patient_123a["meta"]["versionId"] == "3" and patient_123a["name"][0]["given"] == ["Peter", "James"]
    assert history_versions(fresh_client, "Patient/123a") == [1, 2, 3]
    assert fresh_client.get("/Patient/234").status_code == 410
    assert fresh_client.get(f"/Patient/{prepared['by_identifier']}").status_code == 410
    assert system_history_total(fresh_client) == history_before + 5 + 2

    # Submitted again: entry 1's ifNoneExist now matches, but Patient/123a is at version 3, so
    # entry 4 fails again and the whole transaction writes nothing.
    before = dump(fresh_db)
    again = post_bundle(fresh_client, fresh_server.base_url, copy.deepcopy(example))
    text = assert_error(again, 412)
    assert "entry 4" in text and "Patient/123a" in text, text
    after = dump(fresh_db)
    assert after == before, dump_difference(before, after)
    assert len(search_ids(fresh_client, "Patient", name="peter")) == 5


def test_prefer_minimal_and_operation_outcome_per_entry(example, fresh_server, fresh_client):
    _prepare(fresh_client)
    response = post_bundle(fresh_client, fresh_server.base_url, example, prefer="return=minimal")
    entries = response_bundle(response, "transaction-response", 10)
    for i in range(5):
        assert "resource" not in entries[i], entries[i]
        assert entries[i]["response"]["location"] and entries[i]["response"]["etag"]
    # one more version of 123a, with Prefer: return=OperationOutcome
    again = copy.deepcopy(example)
    again["entry"] = [again["entry"][4]]
    again["entry"][0]["request"]["ifMatch"] = 'W/"3"'
    response = post_bundle(fresh_client, fresh_server.base_url, again, prefer="return=OperationOutcome")
    (item,) = response_bundle(response, "transaction-response", 1)
    assert "resource" not in item
    assert item["response"]["outcome"]["resourceType"] == "OperationOutcome"
    assert location(item) == ("Patient", "123a", 4)
