"""Batches through HTTP: every entry on its own, with its own status and OperationOutcome; one
bad entry affects no other; answers in the request's order; an entry answers as the same
request would alone."""

from __future__ import annotations

import base64
import json

import pytest

from .support import (
    FHIR_JSON,
    JSON_PATCH,
    batch,
    entry,
    history_versions,
    location,
    new_id,
    read,
    response_bundle,
    search_ids,
    status,
    system,
    urn,
)


def _patient(**fields):
    return {"resourceType": "Patient", **fields}


def _ident(sys_: str, value: str) -> dict:
    return {"identifier": [{"system": sys_, "value": value}]}


def _json_patch_binary(ops) -> dict:
    return {"resourceType": "Binary", "contentType": JSON_PATCH,
            "data": base64.b64encode(json.dumps(ops).encode()).decode()}


def test_entries_are_independent(client, base_url):
    s = system()
    existing, deleted, put_id = new_id(), new_id(), new_id()
    assert client.put(f"/Patient/{existing}", json=_patient(id=existing, active=True)).status_code == 201
    assert client.put(f"/Patient/{deleted}", json=_patient(id=deleted)).status_code == 201
    entries = [
        entry("POST", "Patient", _patient(**_ident(s, "ok")), urn()),                         # 0 → 201
        entry("POST", "Patient", _patient(gender=5, **_ident(s, "bad"))),                      # 1 → 400
        entry("PUT", f"Patient/{existing}", _patient(id=existing), ifMatch='W/"9"'),           # 2 → 412
        entry("GET", f"Patient/{new_id()}"),                                                   # 3 → 404
        entry("DELETE", f"Patient/{deleted}"),                                                 # 4 → 2xx
        {"resource": _patient(**_ident(s, "no-request"))},                                     # 5 → 400
        entry("POST", "NoSuchType", {"resourceType": "NoSuchType"}),                           # 6 → 404/400
        entry("PUT", f"Patient/{put_id}", _patient(id=put_id, **_ident(s, "put"))),            # 7 → 201
        entry("PATCH", f"Patient/{existing}", _json_patch_binary(
            [{"op": "test", "path": "/active", "value": False}])),                             # 8 → 422
        entry("PATCH", f"Patient/{existing}", _json_patch_binary(
            [{"op": "add", "path": "/gender", "value": "other"}])),                            # 9 → 200
        entry("GET", f"Patient/{deleted}"),                                                    # 10 → 410
    ]
    items = response_bundle(batch(client, base_url, entries), "batch-response", len(entries))
    codes = [status(i) for i in items]
    assert codes[0] == 201 and codes[7] == 201 and codes[9] == 200, codes
    assert codes[1] == 400 and codes[2] == 412 and codes[3] == 404 and codes[5] == 400, codes
    assert 200 <= codes[4] < 300 and codes[6] in (400, 404) and codes[8] == 422 and codes[10] == 410, codes
    for i in (1, 2, 3, 5, 6, 8, 10):
        outcome = items[i]["response"]["outcome"]
        assert outcome["resourceType"] == "OperationOutcome", items[i]
        assert any(issue["severity"] in ("error", "fatal") for issue in outcome["issue"]), outcome
        assert "resource" not in items[i]
    # what succeeded is stored, what failed is not
    assert search_ids(client, "Patient", identifier=f"{s}|ok") == [location(items[0])[1]]
    assert search_ids(client, "Patient", identifier=f"{s}|bad") == []
    assert search_ids(client, "Patient", identifier=f"{s}|no-request") == []
    assert read(client, f"Patient/{put_id}")["identifier"][0]["value"] == "put"
    assert client.get(f"/Patient/{deleted}").status_code == 410
    patched = read(client, f"Patient/{existing}")
    assert patched["gender"] == "other" and patched["meta"]["versionId"] == "2"
    assert history_versions(client, f"Patient/{existing}") == [1, 2]


def test_each_entry_answers_as_the_same_request_alone(client, base_url):
    s = system()
    existing, gone = new_id(), new_id()
    assert client.put(f"/Patient/{existing}", json=_patient(id=existing, active=True)).status_code == 201
    assert client.put(f"/Patient/{gone}", json=_patient(id=gone)).status_code == 201
    assert client.delete(f"/Patient/{gone}").status_code in (200, 204)
    for _ in range(2):
        assert client.post("/Patient", json=_patient(**_ident(s, "two"))).status_code == 201
    cases = [
        ("GET", f"Patient/{existing}", None, {}),
        ("GET", f"Patient/{gone}", None, {}),
        ("GET", f"Patient/{new_id()}", None, {}),
        ("GET", f"Patient?identifier={s}|two", None, {}),
        ("POST", "Patient", _patient(gender=5), {}),
        ("POST", "Patient", _patient(**_ident(s, "two")), {"ifNoneExist": f"identifier={s}|two"}),
        ("PUT", f"Patient/{existing}", _patient(id=existing), {"ifMatch": 'W/"5"'}),
        ("PUT", f"Patient/{existing}", _patient(id="other"), {}),
        ("PUT", f"Patient?identifier={s}|two", _patient(**_ident(s, "two")), {}),
        ("DELETE", f"Patient?identifier={s}|two", None, {}),
        ("PATCH", f"Patient/{gone}", [{"op": "remove", "path": "/active"}], {}),
        ("PATCH", f"Patient/{existing}", [{"op": "remove", "path": "/nothing"}], {}),
    ]
    headers_of = {"ifNoneExist": "If-None-Exist", "ifMatch": "If-Match"}
    alone = []
    for method, url, body, extra in cases:
        headers = {"Content-Type": JSON_PATCH if method == "PATCH" else FHIR_JSON}
        headers.update({headers_of[k]: v for k, v in extra.items()})
        r = client.request(method, f"/{url}", json=body, headers=headers)
        alone.append(r.status_code)
    entries = [entry(method, url, _json_patch_binary(body) if method == "PATCH" else body, **extra)
               for method, url, body, extra in cases]
    items = response_bundle(batch(client, base_url, entries), "batch-response", len(cases))
    in_batch = [status(i) for i in items]
    assert in_batch == alone, list(zip([f"{c[0]} {c[1]}" for c in cases], alone, in_batch, strict=True))
    assert alone[:3] == [200, 410, 404] and all(code >= 400 for code in alone[4:])


def test_an_unknown_operation_answers_as_it_does_alone(client, base_url):
    body = {"resourceType": "Parameters", "parameter": [
        {"name": "coding", "valueCoding": {"system": "http://loinc.org", "code": "1963-8"}}]}
    alone = client.post("/ValueSet/$lookup", json=body)
    assert alone.status_code >= 400
    items = response_bundle(batch(client, base_url, [entry("POST", "ValueSet/$lookup", body)]), "batch-response", 1)
    assert status(items[0]) == alone.status_code


def test_processing_order_delete_before_get(client, base_url):
    id_ = new_id()
    assert client.put(f"/Patient/{id_}", json=_patient(id=id_)).status_code == 201
    entries = [entry("GET", f"Patient/{id_}"), entry("DELETE", f"Patient/{id_}")]
    items = response_bundle(batch(client, base_url, entries), "batch-response", 2)
    assert status(items[0]) == 410, items[0]
    assert 200 <= status(items[1]) < 300


@pytest.mark.parametrize("prefer", ["return=minimal", "return=representation", "return=OperationOutcome"])
def test_prefer_applies_to_every_entry(client, base_url, prefer):
    existing = new_id()
    assert client.put(f"/Patient/{existing}", json=_patient(id=existing)).status_code == 201
    entries = [entry("POST", "Patient", _patient()), entry("PUT", f"Patient/{existing}", _patient(id=existing,
                                                                                                 active=True))]
    items = response_bundle(batch(client, base_url, entries, prefer=prefer), "batch-response", 2)
    assert [status(i) for i in items] == [201, 200]
    for item in items:
        assert item["response"]["etag"] and item["response"]["lastModified"]
        if prefer == "return=minimal":
            assert "resource" not in item
        elif prefer == "return=OperationOutcome":
            assert "resource" not in item and item["response"]["outcome"]["resourceType"] == "OperationOutcome"
        else:
            assert item["resource"]["resourceType"] == "Patient"
    assert items[0]["response"]["location"]


def test_the_same_resource_twice_in_a_batch_gives_two_versions(client, base_url):
    id_ = new_id()
    entries = [entry("PUT", f"Patient/{id_}", _patient(id=id_, active=True)),
               entry("PUT", f"Patient/{id_}", _patient(id=id_, active=False))]
    items = response_bundle(batch(client, base_url, entries), "batch-response", 2)
    assert sorted(status(i) for i in items) == [200, 201]
    assert history_versions(client, f"Patient/{id_}") == [1, 2]


def test_a_batch_entry_may_not_reference_another_entry(client, base_url):
    s = system()
    pat = urn()
    entries = [entry("POST", "Patient", _patient(**_ident(s, "1")), pat),
               entry("POST", "Observation", {"resourceType": "Observation", "status": "final",
                                             "code": {"text": "x"}, "subject": {"reference": pat}}, urn())]
    items = response_bundle(batch(client, base_url, entries), "batch-response", 2)
    assert status(items[0]) == 201
    assert status(items[1]) >= 400, items[1]


def test_an_empty_or_wrong_batch(client, base_url):
    from .support import assert_error, post_bundle

    assert_error(post_bundle(client, base_url, {"resourceType": "Bundle", "type": "batch",
                                                  "entry": entry("POST", "Patient", _patient())}), 400)
    assert_error(post_bundle(client, base_url, {"resourceType": "Bundle", "type": "searchset"}), 400)
