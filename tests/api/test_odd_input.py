"""Odd input over HTTP (issue 14, point 6): dates at the edges of FHIR time, numbers past a double,
5,000-digit version ids, deeply nested UCUM units, JSON and FHIRPath. Each case is a 4xx
OperationOutcome saying what is wrong, or succeeds when the input is valid FHIR — never a 500, and
never a traceback in the server's log. One server of its own, so its log is this module's alone.
Pure functions behind these answers: tests/unit/test_odd_values.py."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.conftest import RunningServer, start_server

FHIR_JSON = "application/fhir+json"
JSON_PATCH = "application/json-patch+json"
DIGITS = "9" * 5000
DEEP_UNIT = "(" * 500 + "mg" + ")" * 500
UCUM = "http://unitsofmeasure.org"
EDGE_DATES = ["9999-12-31T23:59:59.999+14:00", "9999-12-31T23:59:59.999-14:00", "0001-01-01T00:00:00-14:00",
              "0001-01-01T00:00:00+14:00"]
EDGE_SEARCHES = ["ge0001-01-01", "eb9999-12-31", "sa9999", "lt0001", "gt9999", "le0001", "ap0001", "ap9999",
                 "ap9999-12-31", "eq0001-01-01T00:00:00+14:00", "sa9999-12-31T23:59:59.999-14:00",
                 "eb0001-01-01T00:00:00+14:00", "ge9999-12-31T23:59:59.999-14:00"]


@pytest.fixture(scope="module")
def server(tmp_path_factory, r4_examples) -> RunningServer:
    running = start_server(tmp_path_factory.mktemp("odd-input"))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def http(server: RunningServer) -> httpx.Client:
    with httpx.Client(base_url=server.base_url, timeout=120, headers={"Accept": FHIR_JSON}) as c:
        yield c


@pytest.fixture(scope="module")
def patient_id(http) -> str:
    response = http.post("/Patient", json={"resourceType": "Patient"})
    assert response.status_code == 201, response.text
    return response.json()["id"]


def observation(**fields: Any) -> dict[str, Any]:
    return {"resourceType": "Observation", "status": "final", "code": {"text": "odd input"}, **fields}


def raw(text: str, content_type: str = FHIR_JSON) -> dict[str, Any]:
    return {"content": text.encode(), "headers": {"Content-Type": content_type}}


def nested_extensions(depth: int) -> str:
    inner = '{"url":"http://x/e","extension":[' * depth + '{"url":"http://x/e","valueString":"a"}' + "]}" * depth
    return '{"resourceType":"Patient","extension":[' + inner + "]}"


def fhirpath_patch(path: str) -> dict[str, Any]:
    return {"json": {"resourceType": "Parameters", "parameter": [{"name": "operation", "part": [
        {"name": "type", "valueCode": "delete"}, {"name": "path", "valueString": path}]}]}}


def search_parameter(code: str, expression: str) -> dict[str, Any]:
    return {"json": {"resourceType": "SearchParameter", "url": f"http://example.org/sp/{code}", "name": code,
                     "status": "active", "code": code, "base": ["Patient"], "type": "string",
                     "description": "odd", "expression": expression}}


# (id, method, path with {pid} for the module's Patient, request keywords)
Case = tuple[str, str, str, Callable[[], dict[str, Any]]]
CASES: list[Case] = [
    *[(f"write effectiveDateTime {d}", "POST", "/Observation", lambda d=d: {"json": observation(effectiveDateTime=d)})
      for d in EDGE_DATES],
    ("write a Period across all of time", "POST", "/Observation", lambda: {"json": observation(effectivePeriod={
        "start": "0001-01-01T00:00:00+14:00", "end": "9999-12-31T23:59:59-14:00"})}),
    ("write birthDate 0001-01-01", "POST", "/Patient", lambda: {"json": {"resourceType": "Patient",
                                                                        "birthDate": "0001-01-01"}}),
    ("write birthDate 9999-12-31", "POST", "/Patient", lambda: {"json": {"resourceType": "Patient",
                                                                        "birthDate": "9999-12-31"}}),
    *[(f"search {p}={v}", "GET", f"/{t}?{p}={v.replace('+', '%2B')}", dict)
      for v in EDGE_SEARCHES for t, p in (("Patient", "birthdate"), ("Patient", "_lastUpdated"), ("Observation", "date"))],
    ("history _since at the start of time", "GET", "/Patient/_history?_since=0001-01-01T00:00:00%2B14:00", dict),
    ("history _since at the end of time", "GET", "/Patient/_history?_since=9999-12-31T23:59:59-14:00", dict),
    ("history _at 9999", "GET", "/_history?_at=9999", dict),
    ("$everything over all of time", "GET",
     "/Patient/{pid}/$everything?start=0001-01-01T00:00:00%2B14:00&end=9999-12-31T23:59:59-14:00", dict),
    ("search a time zone past 14 hours", "GET", "/Patient?birthdate=2020-01-01T00:00:00%2B15:00", dict),
    # UCUM
    ("search a unit nested 500 deep", "GET", f"/Observation?value-quantity=5||{DEEP_UNIT}", dict),
    ("search a UCUM unit nested 500 deep", "GET", f"/Observation?value-quantity=5|{UCUM}|{DEEP_UNIT}", dict),
    ("search a UCUM power of ten with 20 digits", "GET", f"/Observation?value-quantity=5|{UCUM}|10*{'9' * 20}", dict),
    ("write a Quantity unit nested 500 deep", "POST", "/Observation", lambda: {"json": observation(
        valueQuantity={"value": 5, "system": UCUM, "code": DEEP_UNIT})}),
    ("$validate a Quantity unit nested 500 deep", "POST", "/Observation/$validate", lambda: {"json": observation(
        valueQuantity={"value": 5, "system": UCUM, "code": DEEP_UNIT})}),
    ("write a UCUM power of ten with 400 digits", "POST", "/Observation", lambda: {"json": observation(
        valueQuantity={"value": 5, "system": UCUM, "code": "10*" + "9" * 400})}),
    # version ids
    ("vread a 5,000-digit version", "GET", f"/Patient/{{pid}}/_history/{DIGITS}", dict),
    ("vread a 20-digit version", "GET", "/Patient/{pid}/_history/99999999999999999999", dict),
    ("vread a superscript version", "GET", "/Patient/{pid}/_history/%C2%B2", dict),
    ("If-Match a 5,000-digit version", "PUT", "/Patient/{pid}", lambda: {
        "json": {"resourceType": "Patient"}, "headers": {"If-Match": f'W/"{DIGITS}"'}}),
    ("If-Match a superscript version", "PUT", "/Patient/{pid}", lambda: {
        "json": {"resourceType": "Patient"}, "headers": [("If-Match", 'W/"²"'.encode("latin-1"))]}),
    ("a reference to a 5,000-digit version", "POST", "/Observation", lambda: {"json": observation(
        subject={"reference": f"Patient/x/_history/{DIGITS}"})}),
    # numbers
    ("valueInteger 1e400", "POST", "/Patient", lambda: raw('{"resourceType":"Patient","multipleBirthInteger":1e400}')),
    ("a 10,000-digit integer", "POST", "/Patient",
     lambda: raw('{"resourceType":"Patient","multipleBirthInteger":' + "9" * 10_000 + "}")),
    ("a 10,000-digit decimal", "POST", "/Observation", lambda: raw(json.dumps(observation(
        valueQuantity={"value": 1})).replace('"value": 1', '"value": ' + "9" * 10_000 + ".5"))),
    ("a decimal of exponent 999999999", "POST", "/Observation", lambda: raw(json.dumps(observation(
        valueQuantity={"value": 1})).replace('"value": 1', '"value": 1e999999999'))),
    ("_count of 20 digits", "GET", "/Patient?_count=99999999999999999999", dict),
    ("_count of 5,000 digits", "GET", f"/Patient?_count={DIGITS}", dict),
    ("_count superscript", "GET", "/Patient?_count=%C2%B2", dict),
    ("_offset of 20 digits", "GET", "/Patient?_offset=99999999999999999999", dict),
    ("history _count of 5,000 digits", "GET", f"/Patient/{{pid}}/_history?_count={DIGITS}", dict),
    ("$everything _count of 5,000 digits", "GET", f"/Patient/{{pid}}/$everything?_count={DIGITS}", dict),
    ("$expand count of 5,000 digits", "GET",
     f"/ValueSet/$expand?url=http://hl7.org/fhir/ValueSet/administrative-gender&count={DIGITS}", dict),
    ("quantity search of 5,000 digits", "GET", f"/Observation?value-quantity={DIGITS}", dict),
    ("quantity search 1e999999999", "GET", "/Observation?value-quantity=1e999999999", dict),
    ("number search 1e400", "GET", "/RiskAssessment?probability=1e400", dict),
    ("near at an infinite distance", "GET", "/Location?near=10|10|inf|km", dict),
    # deep recursion
    ("JSON arrays 10,000 deep", "POST", "/Patient",
     lambda: raw('{"resourceType":"Patient","x":' + "[" * 10_000 + "]" * 10_000 + "}")),
    ("JSON objects 10,000 deep", "POST", "/Patient",
     lambda: raw('{"resourceType":"Patient","x":' + '{"a":' * 10_000 + "1" + "}" * 10_000 + "}")),
    ("extensions 2,000 deep", "POST", "/Patient", lambda: raw(nested_extensions(2000))),
    ("extensions 300 deep", "POST", "/Patient", lambda: raw(nested_extensions(300))),
    ("$validate extensions 300 deep", "POST", "/Patient/$validate", lambda: raw(nested_extensions(300))),
    ("JSON Patch value 300 deep", "PATCH", "/Patient/{pid}", lambda: raw(
        '[{"op":"add","path":"/extension","value":[' + nested_extensions(300) + "]}]", JSON_PATCH)),
    ("X-Provenance 300 deep", "POST", "/Patient", lambda: {
        "json": {"resourceType": "Patient"}, "headers": {"X-Provenance": '{"a":' * 300 + "1" + "}" * 300}}),
    ("FHIRPath Patch path of 1,000 nested where()", "PATCH", "/Patient/{pid}",
     lambda: fhirpath_patch("Patient.name" + ".where(" * 1000 + "true" + ")" * 1000)),
    ("FHIRPath Patch index of 5,000 digits", "PATCH", "/Patient/{pid}",
     lambda: fhirpath_patch(f"Patient.name[{DIGITS}]")),
    ("FHIRPath Patch literal of 5,000 digits", "PATCH", "/Patient/{pid}",
     lambda: fhirpath_patch(f"Patient.name.where(use = {DIGITS})")),
    ("_filter of 2,000 nested parentheses", "GET", "/Patient?_filter=" + "(" * 2000 + "name eq x" + ")" * 2000, dict),
    ("SearchParameter of 2,000 chained where()", "POST", "/SearchParameter",
     lambda: search_parameter("odddeep", "Patient.name" + ".where(true)" * 2000)),
    ("SearchParameter of 1,000 nested parentheses", "POST", "/SearchParameter",
     lambda: search_parameter("oddparens", "(" * 1000 + "Patient.name" + ")" * 1000)),
    ("SearchParameter index of 5,000 digits", "POST", "/SearchParameter",
     lambda: search_parameter("oddindex", f"Patient.name[{DIGITS}]")),
]


@pytest.mark.parametrize("method,path,request_args", [pytest.param(m, p, a, id=i) for i, m, p, a in CASES])
def test_odd_input_is_never_a_500(server, http, patient_id, method, path, request_args):
    logged = len(server.log())
    response = http.request(method, path.replace("{pid}", patient_id), **request_args())
    assert response.status_code < 500, response.text[:500]
    body = response.json()
    if response.status_code >= 400:
        assert body["resourceType"] == "OperationOutcome" and body["issue"], body
        assert all(i["severity"] in ("error", "fatal") or i.get("diagnostics") for i in body["issue"]), body
    assert len(response.content) < 50_000, "an answer quoting the whole input back"
    new_log = logged_since(server, http, logged)
    assert "Traceback" not in new_log and "ERROR" not in new_log, new_log[-3000:]


def logged_since(server: RunningServer, http: httpx.Client, start: int) -> str:
    """The server's log from `start` up to a marker request's line (so the case's lines are in)."""
    marker = "odd-" + uuid.uuid4().hex
    http.get("/metadata", headers={"X-Request-Id": marker})
    deadline = time.monotonic() + 30
    while marker not in server.log()[start:] and time.monotonic() < deadline:
        time.sleep(0.05)
    text = server.log()[start:]
    assert marker in text, "the server's log is not where the tests read it"
    return text


# -- the valid values at the edges are stored and found --------------------------------------------
@pytest.mark.parametrize("when", EDGE_DATES)
def test_a_date_at_the_edge_of_time_is_stored_and_found(http, when):
    marker = uuid.uuid4().hex
    created = http.post("/Observation", json=observation(code={"coding": [{"system": "urn:odd", "code": marker}]},
                                                         effectiveDateTime=when))
    assert created.status_code == 201, created.text
    assert http.get(f"/Observation/{created.json()['id']}").json()["effectiveDateTime"] == when
    encoded = when.replace("+", "%2B")
    for query in (f"date={encoded}", f"date=eq{encoded}", f"date=ap{encoded}", "date=ge0001-01-01",
                  "date=le9999-12-31T23:59:59.999-14:00"):
        found = http.get(f"/Observation?code=urn:odd|{marker}&{query}")
        assert found.status_code == 200, found.text
        assert found.json()["total"] == 1, (query, found.json())


def test_dates_at_both_edges_sort_in_time_order(http):
    marker = uuid.uuid4().hex
    written = ["0001-01-01T00:00:00-14:00", "0999-06-15", "1974-12-25", "9999-12-31T23:59:59.999+14:00"]
    for when in reversed(written):
        response = http.post("/Observation", json=observation(
            code={"coding": [{"system": "urn:odd", "code": marker}]}, effectiveDateTime=when))
        assert response.status_code == 201, response.text
    found = http.get(f"/Observation?code=urn:odd|{marker}&_sort=date").json()
    assert [e["resource"]["effectiveDateTime"] for e in found["entry"]] == written
    before_1000 = http.get(f"/Observation?code=urn:odd|{marker}&date=lt1000").json()  # read on the keys
    assert sorted(e["resource"]["effectiveDateTime"] for e in before_1000["entry"]) == sorted(written[:2])
