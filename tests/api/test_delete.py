"""delete: DELETE [base]/[type]/[id] (FHIR R4 http.html#delete); deletions are versions."""

from __future__ import annotations

from .support import assert_outcome, etag_version, new_id, patient


def _created(client, **fields):
    id_ = new_id("del")
    r = client.put(f"/Patient/{id_}", json=patient(id_, **fields))
    assert r.status_code == 201
    return id_, r


def test_delete_then_read_is_410(client):
    id_, created = _created(client, active=True)
    r = client.delete(f"/Patient/{id_}")
    assert r.status_code == 200, r.text
    assert r.headers["etag"] == 'W/"2"'
    assert r.json()["resourceType"] == "OperationOutcome"
    gone = client.get(f"/Patient/{id_}")
    assert_outcome(gone, 410, "deleted")
    # the earlier version is still there
    v1 = client.get(f"/Patient/{id_}/_history/1")
    assert v1.status_code == 200 and v1.json() == created.json()


def test_vread_of_the_deleted_version_is_410_and_of_unknown_version_404(client):
    id_, _ = _created(client)
    client.delete(f"/Patient/{id_}")
    assert_outcome(client.get(f"/Patient/{id_}/_history/2"), 410, "deleted")
    assert_outcome(client.get(f"/Patient/{id_}/_history/3"), 404, "not-found")


def test_history_keeps_the_tombstone(client, base_url):
    id_, created = _created(client)
    deleted = client.delete(f"/Patient/{id_}")
    r = client.get(f"/Patient/{id_}/_history")
    assert r.status_code == 200
    bundle = r.json()
    assert bundle["type"] == "history" and bundle["total"] == 2
    tomb, first = bundle["entry"]
    assert "resource" not in tomb
    assert tomb["fullUrl"] == f"{base_url}/Patient/{id_}"
    assert tomb["request"] == {"method": "DELETE", "url": f"Patient/{id_}"}
    assert tomb["response"]["etag"] == 'W/"2"'
    assert tomb["response"]["status"].split()[0] in ("200", "204")
    assert first["resource"] == created.json()
    assert first["request"] == {"method": "PUT", "url": f"Patient/{id_}"}
    assert first["response"]["status"].startswith("201")
    assert deleted.headers["etag"] == tomb["response"]["etag"]


def test_delete_again_is_harmless(client):
    id_, _ = _created(client)
    assert client.delete(f"/Patient/{id_}").status_code == 200
    again = client.delete(f"/Patient/{id_}")
    assert again.status_code == 200
    assert again.json()["resourceType"] == "OperationOutcome"
    history = client.get(f"/Patient/{id_}/_history").json()
    assert history["total"] == 2  # no second tombstone
    assert_outcome(client.get(f"/Patient/{id_}"), 410)


def test_delete_unknown_id_is_200_and_creates_nothing(client):
    id_ = new_id("never")
    r = client.delete(f"/Patient/{id_}")
    assert r.status_code == 200
    assert r.json()["resourceType"] == "OperationOutcome"
    assert "etag" not in r.headers
    assert_outcome(client.get(f"/Patient/{id_}"), 404)
    assert_outcome(client.get(f"/Patient/{id_}/_history"), 404)


def test_delete_with_if_match(client):
    id_, _ = _created(client)
    client.put(f"/Patient/{id_}", json=patient(id_, active=True))
    stale = client.delete(f"/Patient/{id_}", headers={"If-Match": 'W/"1"'})
    assert_outcome(stale, 412, "conflict")
    assert etag_version(client.get(f"/Patient/{id_}")) == "2"
    ok = client.delete(f"/Patient/{id_}", headers={"If-Match": 'W/"2"'})
    assert ok.status_code == 200 and ok.headers["etag"] == 'W/"3"'
    assert_outcome(client.get(f"/Patient/{id_}"), 410)


def test_delete_with_if_match_on_unknown_resource_is_412(client):
    assert_outcome(client.delete(f"/Patient/{new_id('never')}", headers={"If-Match": 'W/"1"'}), 412)


def test_update_after_delete_brings_it_back_as_the_next_version(client):
    id_, _ = _created(client, active=True)
    client.delete(f"/Patient/{id_}")
    r = client.put(f"/Patient/{id_}", json=patient(id_, active=False))
    assert r.status_code in (200, 201), r.text
    assert r.headers["etag"] == 'W/"3"'
    assert r.json()["meta"]["versionId"] == "3"
    got = client.get(f"/Patient/{id_}")
    assert got.status_code == 200 and got.json() == r.json()
    assert [e["response"]["etag"] for e in client.get(f"/Patient/{id_}/_history").json()["entry"]] == \
        ['W/"3"', 'W/"2"', 'W/"1"']


def test_delete_bad_id_is_400(client):
    assert_outcome(client.delete("/Patient/bad$id"), 400, "value")
    assert_outcome(client.delete("/Patient/" + "a" * 65), 400, "value")
