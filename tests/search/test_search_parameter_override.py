"""A SearchParameter written through the API cannot silently replace a built-in one (issue 14).

By default one with the code and base of a built-in parameter (or its url) but another meaning
is refused with 422; with FHIR_SEARCH_PARAMETER_OVERRIDE=true it applies and is logged, and
deleting it brings the built-in back on every worker, including one that loaded it at start.
The audit's finding end to end: `Patient.identifier` redefined then removed, a conditional
create on an identifier finds the existing patient instead of making a duplicate.
"""

from __future__ import annotations

import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest

_ROOT = Path(__file__).resolve().parents[2]
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

from tests.bundle.support import embedded_uri  # noqa: E402
from tests.conftest import RunningServer, start_server  # noqa: E402

BUILTIN_URL = "http://hl7.org/fhir/SearchParameter/Patient-identifier"
WAIT_S = 30  # a bound on how long a change takes to reach another worker, not a timing assertion


def _redefinition(url: str | None = None, **fields) -> dict:
    """`identifier` of Patient as a string on the identifier's value: another meaning."""
    return {"resourceType": "SearchParameter", "url": url or f"urn:test:sp:{uuid.uuid4().hex}",
            "name": "PatientIdentifierValue", "status": "active", "description": "identifier value as a string",
            "code": "identifier", "base": ["Patient"], "type": "string", "expression": "Patient.identifier.value",
            **fields}


def _issues(response: httpx.Response) -> str:
    return " | ".join(i.get("diagnostics", "") for i in response.json()["issue"])


def _ids(client: httpx.Client, **params: str) -> list[str]:
    r = client.get("/Patient", params={**params, "_count": "50"})
    assert r.status_code == 200, r.text
    return sorted(e["resource"]["id"] for e in r.json().get("entry", []) if e["search"]["mode"] == "match")


def _created(client: httpx.Client, system: str, value: str) -> str:
    r = client.post("/Patient", json={"resourceType": "Patient", "identifier": [{"system": system, "value": value}]})
    assert r.status_code == 201, r.text
    return r.json()["id"]


def _eventually(check, what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not check():
        assert time.monotonic() < deadline, f"not within {WAIT_S}s: {what}"
        time.sleep(0.2)


def _overridden(client: httpx.Client) -> bool:
    """`identifier:exact` exists for a string parameter, not for the built-in token (400)."""
    return client.get("/Patient", params={"identifier:exact": "x"}).status_code == 200


# -- the default: refused ------------------------------------------------------------------------

@pytest.mark.parametrize("sp", [
    _redefinition(),
    _redefinition(url=BUILTIN_URL, code="identifier"),
    _redefinition(code="_lastUpdated", type="date", expression="Patient.birthDate"),  # Resource's, on Patient
], ids=["same-code", "same-url", "resource-level"])
def test_replacing_a_builtin_is_refused_by_default(client, sp):
    r = client.post("/SearchParameter", json=sp)
    assert r.status_code == 422, r.text
    assert "FHIR_SEARCH_PARAMETER_OVERRIDE" in _issues(r) and repr(sp["code"]) in _issues(r)
    assert r.json()["issue"][0]["expression"] == ["SearchParameter.code"]
    put = client.put("/SearchParameter/override-attempt", json={**sp, "id": "override-attempt"})
    assert put.status_code == 422, put.text
    assert not _overridden(client)


def test_what_does_not_replace_a_builtin_is_accepted(client):
    system = f"urn:test:{uuid.uuid4().hex}"
    pid = _created(client, system, "v1")
    own = {**_redefinition(), "code": f"x-{uuid.uuid4().hex[:8]}"}  # a code of its own
    same = {**_redefinition(), "type": "token", "expression": "Patient.identifier"}  # the built-in's meaning
    retired = {**_redefinition(), "status": "retired"}  # never applied
    for sp in (own, same, retired):
        r = client.post("/SearchParameter", json=sp)
        assert r.status_code == 201, r.text
        sp["id"] = r.json()["id"]
    assert _ids(client, identifier=f"{system}|v1") == [pid]
    later = _created(client, system, "v1")
    assert _ids(client, **{own["code"]: "v1"}) == [later]  # new writes carry the new parameter
    for sp in (own, same, retired):
        assert client.delete(f"/SearchParameter/{sp['id']}").status_code == 200
    assert len(_ids(client, identifier=f"{system}|v1")) == 2


# -- with the switch: applied, logged, and undone on every worker --------------------------------

@pytest.fixture(scope="module")
def switched(tmp_path_factory) -> RunningServer:
    running = start_server(tmp_path_factory.mktemp("sp-override"),
                           extra_env={"FHIR_SEARCH_PARAMETER_OVERRIDE": "true"})
    yield running
    running.stop()


def _client(server: RunningServer) -> httpx.Client:
    return httpx.Client(base_url=server.base_url, timeout=60, headers={"Accept": "application/fhir+json"})


def test_override_then_removal_restores_the_builtin_on_every_worker(switched, tmp_path_factory):
    """The audit's finding: after a redefinition of Patient.identifier is deleted, a conditional
    create on an existing INS finds that patient (200) on both workers, no duplicate."""
    system = f"urn:test:{uuid.uuid4().hex}"
    with _client(switched) as one:
        before = _created(one, system, "ins-1")
        r = one.post("/SearchParameter", json=_redefinition())
        assert r.status_code == 201, r.text
        sp_id = r.json()["id"]
        assert _overridden(one)
        assert f"replaces the built-in search parameter 'identifier' of Patient ({BUILTIN_URL})" in switched.log()
        during = _created(one, system, "ins-2")  # indexed with the redefinition's values

        # a second worker on the same database, started while the redefinition is in force
        other = start_server(tmp_path_factory.mktemp("sp-override-2"), extra_env={
            "FHIR_SEARCH_PARAMETER_OVERRIDE": "true", "FHIR_MONGODB_URI": embedded_uri(switched)})
        try:
            with _client(other) as two:
                assert _overridden(two)
                assert one.delete(f"/SearchParameter/{sp_id}").status_code == 200
                assert not _overridden(one)
                _eventually(lambda: not _overridden(two), "the second worker drops the redefinition")
                assert "is back" in switched.log()
                for client in (one, two):
                    assert _ids(client, identifier=f"{system}|ins-1") == [before]
                    again = client.post("/Patient", headers={"If-None-Exist": f"identifier={system}|ins-1"},
                                        json={"resourceType": "Patient",
                                              "identifier": [{"system": system, "value": "ins-1"}]})
                    assert again.status_code == 200, again.text
                    assert again.json()["id"] == before
                # resources written during the redefinition carry its values until $reindex
                _reindex(one, "Patient")
                for client in (one, two):
                    assert _ids(client, identifier=f"{system}|ins-2") == [during]
                assert _ids(one, identifier=f"{system}|") == sorted([before, during])
        finally:
            other.stop()


def test_a_stored_override_is_not_applied_by_a_server_without_the_switch(switched, tmp_path_factory):
    """Stored by a server that had the switch, it stays inert on one that has not (logged)."""
    with _client(switched) as one:
        r = one.post("/SearchParameter", json=_redefinition())
        assert r.status_code == 201, r.text
        try:
            plain = start_server(tmp_path_factory.mktemp("sp-no-switch"),
                                 extra_env={"FHIR_MONGODB_URI": embedded_uri(switched)})
            try:
                with _client(plain) as two:
                    assert not _overridden(two)
                    assert "not applied" in plain.log() and "FHIR_SEARCH_PARAMETER_OVERRIDE is off" in plain.log()
            finally:
                plain.stop()
        finally:
            assert one.delete(f"/SearchParameter/{r.json()['id']}").status_code == 200


def _reindex(client: httpx.Client, type_: str) -> None:
    r = client.post(f"/{type_}/$reindex")
    assert r.status_code == 202, r.text
    job = r.headers["content-location"]

    def done() -> bool:
        status = client.get(job)
        assert status.status_code in (200, 202), status.text
        return status.status_code == 200

    _eventually(done, f"$reindex of {type_} completes")
