"""Conditional create (If-None-Exist), conditional update (PUT [type]?…) and conditional delete
(DELETE [type]?…), FHIR R4 http.html#ccreate, #cond-update, #3.1.0.7.1."""

from __future__ import annotations

import pytest

from .support import assert_outcome, etag_version, identifier_system, new_id, patient


def _with_identifier(system, value, id_=None, **fields):
    return patient(id_, identifier=[{"system": system, "value": value}], **fields)


def _created(client, system, value, **fields):
    r = client.post("/Patient", json=_with_identifier(system, value, **fields))
    assert r.status_code == 201, r.text
    return r.json()


def _ids_in_type_history_since(client, type_, since, system):
    """Ids of the resources carrying an identifier of `system` written at or after `since`."""
    r = client.get(f"/{type_}/_history", params={"_since": since, "_count": "1000"})
    assert r.status_code == 200
    out = []
    for e in r.json().get("entry", []):
        res = e.get("resource") or {}
        if any(i.get("system") == system for i in res.get("identifier", [])):
            out.append((res["id"], e["request"]["method"]))
    return out


# -- conditional create -----------------------------------------------------------------------

def test_if_none_exist_no_match_creates(client):
    system = identifier_system()
    r = client.post("/Patient", json=_with_identifier(system, "1"),
                    headers={"If-None-Exist": f"identifier={system}|1"})
    assert r.status_code == 201, r.text
    assert r.headers["etag"] == 'W/"1"'
    assert r.headers["location"].endswith(f"/Patient/{r.json()['id']}/_history/1")


def test_if_none_exist_one_match_returns_it_and_creates_nothing(client):
    system = identifier_system()
    existing = _created(client, system, "1", active=True)
    r = client.post("/Patient", json=_with_identifier(system, "1", active=False),
                    headers={"If-None-Exist": f"identifier={system}|1"})
    assert r.status_code == 200, r.text
    assert r.json() == existing
    assert r.headers["etag"] == 'W/"1"'
    # still one match: a second conditional create finds exactly the same one
    again = client.post("/Patient", json=_with_identifier(system, "1"),
                        headers={"If-None-Exist": f"identifier={system}|1"})
    assert again.status_code == 200 and again.json()["id"] == existing["id"]
    assert _ids_in_type_history_since(client, "Patient", existing["meta"]["lastUpdated"], system) == \
        [(existing["id"], "POST")]
    assert client.get(f"/Patient/{existing['id']}").json() == existing


def test_if_none_exist_two_matches_is_412(client):
    system = identifier_system()
    a = _created(client, system, "1")
    b = _created(client, system, "1")
    r = client.post("/Patient", json=_with_identifier(system, "1"),
                    headers={"If-None-Exist": f"identifier={system}|1"})
    assert_outcome(r, 412)
    assert sorted(_ids_in_type_history_since(client, "Patient", a["meta"]["lastUpdated"], system)) == \
        sorted([(a["id"], "POST"), (b["id"], "POST")])


@pytest.mark.parametrize("condition", [
    "identifier={system}|{value}",
    "identifier={value}",  # any system
    "identifier={system}|",  # any value of the system
    "Patient?identifier={system}|{value}",
    "identifier={system}|other,{system}|{value}",  # OR
    "identifier=urn:test:none|{value}",  # wrong system: no match
    "_id={id}",
    "_id={id}&identifier={system}|{value}",
])
def test_if_none_exist_condition_forms(client, condition):
    system, value = identifier_system(), new_id("v")
    existing = _created(client, system, value)
    header = condition.format(system=system, value=value, id=existing["id"])
    r = client.post("/Patient", json=_with_identifier(system, value), headers={"If-None-Exist": header})
    if "urn:test:none" in condition:
        assert r.status_code == 201, (header, r.text)
        assert r.json()["id"] != existing["id"]
    else:
        assert r.status_code == 200, (header, r.text)
        assert r.json()["id"] == existing["id"]


def test_if_none_exist_ignores_deleted_resources(client):
    system = identifier_system()
    old = _created(client, system, "1")
    assert client.delete(f"/Patient/{old['id']}").status_code == 200
    r = client.post("/Patient", json=_with_identifier(system, "1"),
                    headers={"If-None-Exist": f"identifier={system}|1"})
    assert r.status_code == 201 and r.json()["id"] != old["id"]


def test_if_none_exist_and_conditions_that_do_not_all_match_create(client):
    system = identifier_system()
    existing = _created(client, system, "1")
    r = client.post("/Patient", json=_with_identifier(system, "2"),
                    headers={"If-None-Exist": f"_id={existing['id']}&identifier={system}|2"})
    assert r.status_code == 201 and r.json()["id"] != existing["id"]


# Conditions no server can honour: unknown parameters (also those of another type), unknown
# modifiers, empty values, result parameters alone.
@pytest.mark.parametrize("condition", ["foo=bar", "code=x", "identifier:nonsense=1", "identifier=", "_sort=name"])
def test_if_none_exist_unsupported_condition_is_400(client, condition):
    system = identifier_system()
    r = client.post("/Patient", json=_with_identifier(system, "1"), headers={"If-None-Exist": condition})
    assert_outcome(r, 400)


# -- conditional update -----------------------------------------------------------------------

def test_conditional_update_no_match_creates(client, base_url):
    system = identifier_system()
    r = client.put("/Patient", params={"identifier": f"{system}|1"}, json=_with_identifier(system, "1"))
    assert r.status_code == 201, r.text
    id_ = r.json()["id"]
    assert r.headers["location"] == f"{base_url}/Patient/{id_}/_history/1"
    assert client.get(f"/Patient/{id_}").json() == r.json()


def test_conditional_update_no_match_with_body_id_creates_that_id(client):
    system = identifier_system()
    id_ = new_id("cu")
    r = client.put("/Patient", params={"identifier": f"{system}|1"}, json=_with_identifier(system, "1", id_))
    assert r.status_code == 201, r.text
    assert r.json()["id"] == id_
    assert client.get(f"/Patient/{id_}").status_code == 200


def test_conditional_update_one_match_updates_it(client):
    system = identifier_system()
    existing = _created(client, system, "1", active=True)
    r = client.put("/Patient", params={"identifier": f"{system}|1"},
                   json=_with_identifier(system, "1", active=False))
    assert r.status_code == 200, r.text
    assert r.json()["id"] == existing["id"]
    assert r.headers["etag"] == 'W/"2"'
    current = client.get(f"/Patient/{existing['id']}")
    assert etag_version(current) == "2" and current.json()["active"] is False
    # the same with the matching id in the body
    r = client.put("/Patient", params={"identifier": f"{system}|1"},
                   json=_with_identifier(system, "1", existing["id"], active=True))
    assert r.status_code == 200 and r.headers["etag"] == 'W/"3"'


def test_conditional_update_one_match_other_body_id_is_400(client):
    system = identifier_system()
    existing = _created(client, system, "1")
    r = client.put("/Patient", params={"identifier": f"{system}|1"},
                   json=_with_identifier(system, "1", new_id("other")))
    assert_outcome(r, 400, expression="Patient.id")
    assert etag_version(client.get(f"/Patient/{existing['id']}")) == "1"


def test_conditional_update_by_id(client):
    system = identifier_system()
    existing = _created(client, system, "1")
    r = client.put("/Patient", params={"_id": existing["id"]}, json=_with_identifier(system, "2"))
    assert r.status_code == 200, r.text
    assert r.json()["id"] == existing["id"] and r.json()["identifier"][0]["value"] == "2"


def test_conditional_update_two_matches_is_412(client):
    system = identifier_system()
    a = _created(client, system, "1")
    b = _created(client, system, "1")
    r = client.put("/Patient", params={"identifier": f"{system}|1"}, json=_with_identifier(system, "1", gender="male"))
    assert_outcome(r, 412)
    for res in (a, b):
        current = client.get(f"/Patient/{res['id']}")
        assert etag_version(current) == "1" and "gender" not in current.json()


def test_conditional_update_with_if_match(client):
    system = identifier_system()
    existing = _created(client, system, "1")
    stale = client.put("/Patient", params={"identifier": f"{system}|1"}, json=_with_identifier(system, "1"),
                       headers={"If-Match": 'W/"2"'})
    assert_outcome(stale, 412)
    ok = client.put("/Patient", params={"identifier": f"{system}|1"}, json=_with_identifier(system, "1"),
                    headers={"If-Match": 'W/"1"'})
    assert ok.status_code == 200 and ok.json()["id"] == existing["id"] and ok.headers["etag"] == 'W/"2"'


@pytest.mark.parametrize("params", [{"foo": "bar"}, {"code": "x"}, {"identifier:nonsense": "1"}, {}])
def test_conditional_update_unsupported_condition_is_400(client, params):
    system = identifier_system()
    r = client.put("/Patient", params=params, json=_with_identifier(system, "1"))
    assert_outcome(r, 400)


def test_conditional_update_invalid_resource_is_400(client):
    system = identifier_system()
    r = client.put("/Patient", params={"identifier": f"{system}|1"},
                   json=_with_identifier(system, "1", birthDate="1970-13-01"))
    assert_outcome(r, 400, "value", expression="Patient.birthDate")
    created = client.post("/Patient", json=_with_identifier(system, "1"),
                          headers={"If-None-Exist": f"identifier={system}|1"})
    assert created.status_code == 201  # nothing had been stored


def test_conditional_update_with_format_parameters(client):
    """_format and _pretty shape the response; they are not conditions."""
    system = identifier_system()
    r = client.put("/Patient", params={"identifier": f"{system}|1", "_format": "json"},
                   json=_with_identifier(system, "1"))
    assert r.status_code == 201, r.text
    r = client.put("/Patient", params={"identifier": f"{system}|1", "_pretty": "true"},
                   json=_with_identifier(system, "1", active=True))
    assert r.status_code == 200, r.text
    assert r.content.startswith(b'{\n  "resourceType": "Patient"') and r.json()["active"] is True


# -- conditional delete -----------------------------------------------------------------------

def test_conditional_delete_one_match(client):
    system = identifier_system()
    existing = _created(client, system, "1")
    r = client.delete("/Patient", params={"identifier": f"{system}|1"})
    assert r.status_code == 200, r.text
    assert r.headers["etag"] == 'W/"2"'
    assert_outcome(client.get(f"/Patient/{existing['id']}"), 410)
    # nothing matches any more
    again = client.delete("/Patient", params={"identifier": f"{system}|1"})
    assert again.status_code == 200 and "etag" not in again.headers


def test_conditional_delete_by_id(client):
    system = identifier_system()
    existing = _created(client, system, "1")
    r = client.delete("/Patient", params={"_id": existing["id"]})
    assert r.status_code == 200
    assert_outcome(client.get(f"/Patient/{existing['id']}"), 410)


def test_conditional_delete_no_match_is_200(client):
    r = client.delete("/Patient", params={"identifier": f"{identifier_system()}|1"})
    assert r.status_code == 200
    assert r.json()["resourceType"] == "OperationOutcome"


def test_conditional_delete_two_matches_is_412_and_deletes_nothing(client):
    system = identifier_system()
    a = _created(client, system, "1")
    b = _created(client, system, "1")
    assert_outcome(client.delete("/Patient", params={"identifier": f"{system}|1"}), 412)
    for res in (a, b):
        assert client.get(f"/Patient/{res['id']}").status_code == 200


@pytest.mark.parametrize("params", [{"foo": "bar"}, {"identifier:nonsense": "1"}, {}, {"identifier": ""}])
def test_conditional_delete_unsupported_condition_is_400(client, params):
    assert_outcome(client.delete("/Patient", params=params), 400)


def test_conditional_delete_with_format_parameter(client):
    system = identifier_system()
    existing = _created(client, system, "1")
    r = client.delete("/Patient", params={"identifier": f"{system}|1", "_format": "json"})
    assert r.status_code == 200, r.text
    assert client.get(f"/Patient/{existing['id']}").status_code == 410
