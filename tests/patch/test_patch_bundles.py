"""PATCH as transaction and batch entries: JSON Patch as a Binary with base64 data, FHIRPath
Patch as Parameters, ifMatch per entry; in a transaction a failing patch fails everything,
in a batch it fails its own entry only."""

from __future__ import annotations

import base64

import pytest

from .support import (
    assert_error,
    batch,
    binary,
    entry,
    history_versions,
    location,
    new_id,
    op,
    parameters,
    put,
    read,
    response_bundle,
    search_ids,
    status,
    system,
    transact,
    urn,
)


@pytest.fixture
def two(client):
    s = system()
    out = {"system": s}
    for key in ("a", "b"):
        id_ = new_id(f"pb{key}")
        resource = {"resourceType": "Patient", "id": id_, "active": True,
                    "identifier": [{"system": s, "value": key}]}
        put(client, resource)
        out[key] = put(client, resource)
    return out


def _ref(resource) -> str:
    return f"Patient/{resource['id']}"


def test_both_formats_in_a_transaction(client, base_url, two):
    entries = [
        entry("PATCH", _ref(two["a"]), binary([{"op": "replace", "path": "/active", "value": False},
                                               {"op": "add", "path": "/gender", "value": "male"}]),
              urn(), ifMatch='W/"2"'),
        entry("PATCH", _ref(two["b"]), parameters(op("add", "Patient", name="birthDate", valueDate="2001-02-03"))),
    ]
    items = response_bundle(transact(client, base_url, entries), "transaction-response", 2)
    assert [status(i) for i in items] == [200, 200]
    assert location(items[0]) == ("Patient", two["a"]["id"], 3)
    assert location(items[1]) == ("Patient", two["b"]["id"], 3)
    assert items[0]["response"]["etag"] == 'W/"3"' and items[0]["response"]["lastModified"]
    a, b = read(client, _ref(two["a"])), read(client, _ref(two["b"]))
    assert a["active"] is False and a["gender"] == "male" and items[0]["resource"] == a
    assert b["birthDate"] == "2001-02-03" and items[1]["resource"] == b
    history = client.get(f"/{_ref(two['a'])}/_history").json()
    assert {e["request"]["method"] for e in history["entry"] if e["resource"]["meta"]["versionId"] == "3"} == {"PATCH"}


@pytest.mark.parametrize("failing, expected", [
    (lambda two: entry("PATCH", _ref(two["b"]), binary([{"op": "test", "path": "/active", "value": False}]), urn()),
     422),
    (lambda two: entry("PATCH", _ref(two["b"]), parameters(op("replace", "Patient.gender", valueCode="x")), urn()),
     422),
    (lambda two: entry("PATCH", _ref(two["b"]), binary([{"op": "add", "path": "/birthDate", "value": "soon"}]),
                       urn()), 422),
    (lambda two: entry("PATCH", _ref(two["b"]), binary([{"op": "replace", "path": "/active", "value": False}]),
                       urn(), ifMatch='W/"1"'), 412),
    (lambda two: entry("PATCH", _ref(two["b"]), {"resourceType": "Binary", "contentType": "application/json-patch+json",
                                                 "data": "not base64!"}, urn()), 400),
    (lambda two: entry("PATCH", _ref(two["b"]), {"resourceType": "Binary", "contentType": "application/json-patch+json",
                                                 "data": base64.b64encode(b"{not json").decode()}, urn()), 400),
    (lambda two: entry("PATCH", _ref(two["b"]), binary([{"op": "jump", "path": "/active"}]), urn()), 400),
    (lambda two: entry("PATCH", f"Patient/{new_id('none')}", binary([{"op": "remove", "path": "/active"}]), urn()),
     404),
    (lambda two: entry("PATCH", _ref(two["b"]), binary([{"op": "replace", "path": "/id", "value": "x"}]), urn()),
     (400, 422)),
], ids=["test fails", "path not found", "result invalid", "ifMatch", "Binary not base64", "Binary not JSON",
        "bad op", "unknown id", "id change"])
def test_a_failing_patch_fails_the_whole_transaction(client, base_url, two, failing, expected):
    s = system()
    last = failing(two)
    entries = [entry("POST", "Patient", {"resourceType": "Patient", "identifier": [{"system": s, "value": "new"}]},
                     urn()),
               entry("PATCH", _ref(two["a"]), binary([{"op": "replace", "path": "/active", "value": False}])),
               last]
    text = assert_error(transact(client, base_url, entries), expected)
    assert "entry 2" in text, text
    if "Binary" not in text:  # errors found while reading the entry name no fullUrl: see test_transaction
        assert last["fullUrl"] in text, text
    assert read(client, _ref(two["a"])) == two["a"] and read(client, _ref(two["b"])) == two["b"]
    assert history_versions(client, _ref(two["a"])) == [1, 2] == history_versions(client, _ref(two["b"]))
    assert search_ids(client, "Patient", identifier=f"{s}|new") == []


def test_patch_of_a_deleted_resource_in_a_transaction(client, base_url, two):
    assert client.delete(f"/{_ref(two['b'])}").status_code in (200, 204)
    entries = [entry("PATCH", _ref(two["a"]), binary([{"op": "remove", "path": "/active"}])),
               entry("PATCH", _ref(two["b"]), binary([{"op": "remove", "path": "/active"}]))]
    text = assert_error(transact(client, base_url, entries), 410)
    assert "entry 1" in text
    assert read(client, _ref(two["a"])) == two["a"]


def test_conditional_patch_entries(client, base_url, two):
    s = two["system"]
    ops = binary([{"op": "add", "path": "/gender", "value": "other"}])
    items = response_bundle(transact(client, base_url, [entry("PATCH", f"Patient?identifier={s}|a", ops)]),
                            "transaction-response", 1)
    assert location(items[0]) == ("Patient", two["a"]["id"], 3)
    assert_error(transact(client, base_url, [entry("PATCH", f"Patient?identifier={s}|zzz", ops)]), 404)
    assert client.post("/Patient", json={"resourceType": "Patient",
                                         "identifier": [{"system": s, "value": "b"}]}).status_code == 201
    assert_error(transact(client, base_url, [entry("PATCH", f"Patient?identifier={s}|b", ops)]), 412)
    assert read(client, _ref(two["b"])) == two["b"]


def test_batch_patch_entries_fail_alone(client, base_url, two):
    gone = put(client, {"resourceType": "Patient", "id": new_id("gone"), "active": True})
    assert client.delete(f"/Patient/{gone['id']}").status_code in (200, 204)
    entries = [
        entry("PATCH", _ref(two["a"]), binary([{"op": "replace", "path": "/active", "value": False}])),      # 200
        entry("PATCH", _ref(two["b"]), binary([{"op": "test", "path": "/active", "value": False}])),         # 422
        entry("PATCH", _ref(two["b"]), parameters(op("replace", "Patient.active", valueBoolean=False)),
              ifMatch='W/"1"'),                                                                               # 412
        entry("PATCH", _ref(two["b"]), {"resourceType": "Binary", "data": "%%%"}),                           # 400
        entry("PATCH", f"Patient/{gone['id']}", binary([{"op": "remove", "path": "/active"}])),              # 410
        entry("PATCH", f"Patient/{new_id('none')}", binary([{"op": "remove", "path": "/active"}])),          # 404
        entry("PATCH", _ref(two["b"]), parameters(op("add", "Patient", name="colour", valueString="red"))),  # 422
        entry("PATCH", _ref(two["b"]), parameters(op("add", "Patient", name="gender", valueCode="female"))),  # 200
    ]
    items = response_bundle(batch(client, base_url, entries), "batch-response", len(entries))
    assert [status(i) for i in items] == [200, 422, 412, 400, 410, 404, 422, 200]
    for item in items[1:7]:
        assert item["response"]["outcome"]["resourceType"] == "OperationOutcome"
    a, b = read(client, _ref(two["a"])), read(client, _ref(two["b"]))
    assert a["active"] is False and a["meta"]["versionId"] == "3"
    assert b["active"] is True and b["gender"] == "female" and b["meta"]["versionId"] == "3"
    assert history_versions(client, _ref(two["b"])) == [1, 2, 3]
