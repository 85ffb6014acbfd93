"""Hostile input: fuzzed bodies, ids, headers and search parameters (hypothesis), MongoDB operator
injection, deep nesting, huge strings, and the server's memory under all of it.

Whatever is sent, the answer is never a 500 and never shows a stack trace or internals: it is a
FHIR JSON OperationOutcome or Bundle (or the resource written, or nothing for 204/304 and
`Prefer: return=minimal`). A value that looks like a MongoDB query (`{"$ne": null}`, `$where`,
`$regex`…) is only ever text: it matches what a non-matching control value matches. One
dedicated server takes all of it; its resident memory is read from /proc before and after.
Bugs the fuzzing found are pinned by their own tests below (64-bit integers, odd identifiers,
deep JSON Patch values, documents past MongoDB's limit, outcomes of many errors).
"""

from __future__ import annotations

import json
import os
import re
import urllib.parse
import uuid
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .support import FHIR_JSON, JSON_PATCH, LEAK_RE, client, new_id, rss_bytes, start_server, system

# The default run is small and derandomized (the same examples every time: a CI failure is a
# regression, not a lucky draw); FHIR_FUZZ_EXAMPLES=1000 explores more, with fresh random examples.
_DEEP = "FHIR_FUZZ_EXAMPLES" in os.environ
FUZZ = settings(deadline=None, max_examples=int(os.environ.get("FHIR_FUZZ_EXAMPLES", "60")), derandomize=not _DEEP,
                database=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
MB = 1024 * 1024


@pytest.fixture(scope="module")
def server(tmp_path_factory, r4_examples):
    running = start_server(tmp_path_factory.mktemp("hostile"))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def http(server):
    with client(server, timeout=180) as c:
        yield c


@pytest.fixture(scope="module")
def seeded(http) -> dict[str, Any]:
    """Resources every search could match if an operator got through: five Patients, a
    Practitioner, Observations."""
    sys_ = system()
    practitioner = http.post("/Practitioner", json={"resourceType": "Practitioner", "name": [{"family": "Hostile"}]})
    assert practitioner.status_code == 201
    patients = []
    for i in range(5):
        response = http.post("/Patient", json={
            "resourceType": "Patient", "identifier": [{"system": sys_, "value": str(i)}],
            "name": [{"family": f"Hostile{i}", "given": ["Eve"]}], "gender": "female", "birthDate": "1970-01-01",
            "telecom": [{"system": "email", "value": f"eve{i}@example.org"}], "address": [{"city": "Paris"}],
            "generalPractitioner": [{"reference": f"Practitioner/{practitioner.json()['id']}"}]})
        assert response.status_code == 201, response.text
        patients.append(response.json())
        observation = http.post("/Observation", json={
            "resourceType": "Observation", "status": "final", "subject": {"reference": f"Patient/{patients[-1]['id']}"},
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
            "effectiveDateTime": "2024-01-01T10:00:00Z",
            "valueQuantity": {"value": 70 + i, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"}})
        assert observation.status_code == 201, observation.text
    return {"system": sys_, "patients": patients}


def assert_sane(response: httpx.Response, allowed: tuple[str, ...] = ("OperationOutcome", "Bundle")) -> Any:
    """No 5xx, no internals in the body, a FHIR JSON body of an allowed type (a 2xx may also be
    the resource written, or empty)."""
    what = f"{response.request.method} {str(response.request.url)[:300]} → {response.status_code}"
    assert response.status_code < 500, f"{what}: {response.text[:800]}"
    if response.status_code in (301, 302, 307, 308):  # the framework's trailing-slash redirect
        assert response.headers.get("location"), what
        return None
    if not response.content:
        assert response.status_code in (200, 201, 204, 304) or response.request.method == "HEAD", what
        return None
    text = response.text
    assert not LEAK_RE.search(text), f"{what}: internals in the body: {text[:800]}"
    content_type = response.headers.get("content-type", "")
    assert content_type.startswith((FHIR_JSON, "application/json")), f"{what}: content-type {content_type!r}"
    body = response.json()
    assert isinstance(body, dict) and isinstance(body.get("resourceType"), str), f"{what}: {text[:300]}"
    if response.status_code >= 400:
        assert body["resourceType"] == "OperationOutcome", f"{what}: {text[:300]}"
        assert body.get("issue") and all(i.get("severity") and i.get("code") for i in body["issue"]), body
    elif body["resourceType"] not in allowed:
        assert 200 <= response.status_code < 300, what
    return body


# -- strategies ------------------------------------------------------------------------------------
SPECIAL_STRINGS = ["\x00", "\ud800", "\udfff\ud800", "a\x00b", "\u202e\u0000", "💥" * 100, "Ω" * 5000,
                   '{"$ne": null}', '{"$gt": ""}', "$where", "this.a == 1", "'; return true; var x='",
                   ".*", "^", "\\", "../../etc/passwd", "%00", "%", "&", "=", "|", "$", "x" * 20000, ""]
SPECIAL_NUMBERS = ["1e400", "-1e400", "1e-400", "-0", "1E+999", "123456789012345678901234567890.5",
                   "0.0000000000000000000000000000001", "9223372036854775807", "-9223372036854775808"]
URL_STRINGS = [v for v in SPECIAL_STRINGS if "\ud800" not in v and "\udfff" not in v]  # a URL is UTF-8
scalars = (st.none() | st.booleans() | st.integers()
           | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=30)
           | st.sampled_from(SPECIAL_STRINGS))
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=12) | st.sampled_from(["$where", "$ne", "$gt", "_id",
                                                                                    "resourceType", "id", "meta"]),
                                             inner, max_size=4), max_leaves=25)

BASE_RESOURCES = [
    {"resourceType": "Patient", "identifier": [{"system": "urn:fuzz", "value": "1"}],
     "name": [{"family": "Doe", "given": ["Jane"]}], "gender": "female", "birthDate": "1970-01-01",
     "telecom": [{"system": "phone", "value": "0102030405"}], "address": [{"city": "Paris", "postalCode": "75001"}],
     "generalPractitioner": [{"reference": "Practitioner/p1"}], "multipleBirthInteger": 2,
     "extension": [{"url": "http://example.org/x", "valueDecimal": 1.5}]},
    {"resourceType": "Observation", "status": "final", "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
     "subject": {"reference": "Patient/x"}, "effectiveDateTime": "2020-01-01T00:00:00Z",
     "valueQuantity": {"value": 72, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"},
     "component": [{"code": {"text": "c"}, "valueString": "v"}]},
    {"resourceType": "Task", "status": "requested", "intent": "order", "for": {"reference": "Patient/x"},
     "authoredOn": "2024-01-01T00:00:00+01:00", "input": [{"type": {"text": "t"}, "valueInteger": 1}]},
]


def _paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            out.extend(_paths(item, prefix + (key,)))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            out.extend(_paths(item, prefix + (i,)))
    return out


@st.composite
def mutated_resources(draw) -> str:
    """A valid resource with a few random changes (values replaced by anything, wrong types,
    keys removed or added, lists unwrapped); returned as JSON text, sometimes with a special
    number literal spliced in."""
    resource = json.loads(json.dumps(draw(st.sampled_from(BASE_RESOURCES))))
    for _ in range(draw(st.integers(1, 4))):
        paths = [p for p in _paths(resource) if p]
        path = draw(st.sampled_from(paths))
        parent = resource
        for key in path[:-1]:
            parent = parent[key]
        key = path[-1]
        action = draw(st.sampled_from(["replace", "delete", "add", "wrap", "unwrap"]))
        if action == "replace":
            parent[key] = draw(json_values)
        elif action == "delete" and isinstance(parent, dict):
            del parent[key]
        elif action == "add" and isinstance(parent, dict):
            parent[draw(st.text(max_size=10) | st.sampled_from(["$set", "_id", "id", "meta", "contained"]))] = \
                draw(json_values)
        elif action == "wrap":
            parent[key] = [parent[key]]
        elif action == "unwrap" and isinstance(parent[key], list) and parent[key]:
            parent[key] = parent[key][0]
    text = json.dumps(resource)
    if draw(st.booleans()):
        literal = draw(st.sampled_from(SPECIAL_NUMBERS))
        text = re.sub(r"(:\s*)(-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)(?=[,}\]])", lambda m: m.group(1) + literal, text,
                      count=1)
    return text


header_text = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF, blacklist_characters="\x7f"),
                      max_size=60).map(lambda v: v.strip(" \t"))  # HTTP trims them: so does the client
HEADER_NAMES = ["Prefer", "If-Match", "If-None-Match", "If-None-Exist", "If-Modified-Since", "Accept", "Content-Type"]
header_values = {
    "Prefer": st.sampled_from(["return=minimal", "return=representation", "return=OperationOutcome",
                               "handling=strict", "handling=lenient", "respond-async", "return=", "=;=,;"]) | header_text,
    "If-Match": st.sampled_from(['W/"1"', 'W/"0"', '"1"', "*", 'W/"-1"', 'W/"99999999999999999999"', 'W/""']) | header_text,
    "If-None-Match": st.sampled_from(['W/"1"', "*", 'W/"x"']) | header_text,
    "If-None-Exist": st.sampled_from(['identifier={"$ne": null}', "family:missing=false", "_id=x", "&&&", "=", "x"])
    | header_text,
    "If-Modified-Since": st.sampled_from(["Mon, 01 Jan 2024 00:00:00 GMT", "yesterday", "Mon, 99 Foo 9999"]) | header_text,
    "Accept": st.sampled_from(["application/fhir+json", "application/fhir+xml", "*/*", "text/html", "image/png",
                               "application/fhir+json;q=0", "application/json, text/*"]) | header_text,
    "Content-Type": st.sampled_from(["application/fhir+json", "application/json-patch+json", "text/plain",
                                     "application/x-www-form-urlencoded", "multipart/form-data; boundary=x",
                                     "application/fhir+json; charset=latin-1", "application/fhir+xml"]) | header_text,
}
headers_strategy = st.fixed_dictionaries({}, optional={name: header_values[name] for name in HEADER_NAMES})

PARAM_NAMES = ["family", "given", "name", "identifier", "gender", "birthdate", "address", "telecom", "email",
               "general-practitioner", "_id", "_lastUpdated", "_count", "_sort", "_include", "_revinclude",
               "_elements", "_summary", "_total", "_has:Observation:subject:code", "general-practitioner:Practitioner.name",
               "family:exact", "family:contains", "family:missing", "identifier:of-type", "identifier:text",
               "birthdate:missing", "_text", "_content", "_filter", "_query", "_page", "_format", "_pretty",
               "$where", '{"$gt": ""}', "family[$ne]", "family.$ne", "", "=", "&"]
INJECTIONS = ['{"$ne": null}', '{"$gt": ""}', '{"$regex": ".*"}', '{"$where": "1 == 1"}', '{"$exists": true}',
              '{"$in": ["Hostile0"]}', "[$ne]=1", "$ne", ".*", "^H", "Hostile0|Hostile1", "this.family", "'||'1'=='1",
              "*", "%", "ge0001-01-01' || true", "ne\x00", "sys|{\"$ne\": null}"]
param_values = (st.text(max_size=40) | st.sampled_from(INJECTIONS) | st.sampled_from(URL_STRINGS)
                | st.sampled_from(["eq2020", "ge", "lt9999-99-99", "ap1e400", "-1", "99999999999999999999", "0",
                                   "a" * 5000, "urn:x|", "|", "|x", "Patient/", ":", "Patient?x=1"]))
params_strategy = st.lists(st.tuples(st.sampled_from(PARAM_NAMES) | st.text(max_size=20), param_values),
                           min_size=1, max_size=4).filter(  # httpx refuses a query past 64 KiB
    lambda params: len(urllib.parse.urlencode(params)) < 60_000)


# -- fuzzing ---------------------------------------------------------------------------------------
@FUZZ
@given(body=json_values)
def test_random_json_bodies(http, body):
    text = json.dumps(body)
    for method, url, content_type in (("POST", "/Patient", FHIR_JSON), ("PUT", "/Patient/fuzz-body", FHIR_JSON),
                                      ("PATCH", "/Patient/fuzz-body", JSON_PATCH), ("POST", "/Observation/$validate", FHIR_JSON)):
        assert_sane(http.request(method, url, content=text, headers={"Content-Type": content_type}),
                    ("OperationOutcome", "Bundle", "Patient"))
    assert_sane(http.post(str(http.base_url).rstrip("/"), content=text, headers={"Content-Type": FHIR_JSON}))


@FUZZ
@given(text=mutated_resources())
def test_mutated_valid_resources(http, text):
    found = re.search(r'"resourceType": "([A-Za-z]+)"', text)
    resource_type = found.group(1) if found else None
    type_ = resource_type if isinstance(resource_type, str) and resource_type.isalpha() else "Patient"
    allowed = ("OperationOutcome", "Bundle", type_)
    assert_sane(http.post(f"/{type_}", content=text, headers={"Content-Type": FHIR_JSON}), allowed)
    assert_sane(http.post(f"/{type_}/$validate", content=text, headers={"Content-Type": FHIR_JSON}), allowed)
    if not text.startswith("{") or text == "{}":
        return
    # composed as text: the special number literals must reach the server as they are
    with_id = '{"id": "fuzz-mutated", ' + text[1:]
    assert_sane(http.put(f"/{type_}/fuzz-mutated", content=with_id, headers={"Content-Type": FHIR_JSON}), allowed)
    bundle = ('{"resourceType": "Bundle", "type": "transaction", "entry": [{"fullUrl": "urn:uuid:' + str(uuid.uuid4())
              + '", "resource": ' + text + ', "request": {"method": "POST", "url": "' + type_ + '"}}]}')
    assert_sane(http.post(str(http.base_url).rstrip("/"), content=bundle, headers={"Content-Type": FHIR_JSON}))
    patch = '[{"op": "add", "path": "/extension", "value": ' + text + "}]"
    assert_sane(http.patch(f"/{type_}/fuzz-mutated", content=patch, headers={"Content-Type": JSON_PATCH}), allowed)


@FUZZ
@given(data=st.binary(max_size=300))
def test_random_bytes_bodies(http, data):
    assert_sane(http.post("/Patient", content=data, headers={"Content-Type": FHIR_JSON}), ("OperationOutcome", "Patient"))
    assert_sane(http.post(str(http.base_url).rstrip("/"), content=data, headers={"Content-Type": FHIR_JSON}))
    assert_sane(http.post("/Patient/_search", content=data,
                          headers={"Content-Type": "application/x-www-form-urlencoded"}))


@FUZZ
@given(id_=st.text(max_size=80) | st.sampled_from(URL_STRINGS + ["..", ".", "$everything", "_history", "_search",
                                                                      "a" * 65, "a" * 64, "%2F", "1 OR 1=1"]),
       version=st.text(max_size=10))
def test_fuzzed_ids(http, id_, version):
    quoted, qversion = urllib.parse.quote(id_, safe=""), urllib.parse.quote(version, safe="")
    allowed = ("OperationOutcome", "Bundle", "Patient", "Parameters")
    assert_sane(http.get(f"/Patient/{quoted}"), allowed)
    assert_sane(http.get(f"/Patient/{quoted}/_history/{qversion}"), allowed)
    assert_sane(http.get(f"/Patient/{quoted}/_history"), allowed)
    assert_sane(http.put(f"/Patient/{quoted}", json={"resourceType": "Patient", "id": id_}), allowed)
    assert_sane(http.delete(f"/Patient/{quoted}"), allowed)
    assert_sane(http.patch(f"/Patient/{quoted}", content=b"[]", headers={"Content-Type": JSON_PATCH}), allowed)
    assert_sane(http.post(str(http.base_url).rstrip("/"), json={"resourceType": "Bundle", "type": "batch", "entry": [
        {"request": {"method": "GET", "url": f"Patient/{quoted}"}},
        {"request": {"method": "PUT", "url": f"Patient/{id_}"}, "resource": {"resourceType": "Patient", "id": id_}},
        {"request": {"method": "DELETE", "url": f"Patient/{id_}"}}]}))


@FUZZ
@given(headers=headers_strategy, body_kind=st.sampled_from(["resource", "patch", "none"]))
def test_fuzzed_headers(http, seeded, headers, body_kind):
    target = new_id("hdr")
    assert http.put(f"/Patient/{target}", json={"resourceType": "Patient", "id": target}).status_code == 201
    body = {"resource": json.dumps({"resourceType": "Patient", "id": target, "active": True}),
            "patch": '[{"op": "add", "path": "/active", "value": true}]', "none": ""}[body_kind]
    allowed = ("OperationOutcome", "Bundle", "Patient")
    for method, url in (("GET", f"/Patient/{target}"), ("PUT", f"/Patient/{target}"), ("PATCH", f"/Patient/{target}"),
                        ("POST", "/Patient"), ("GET", "/Patient"), ("DELETE", f"/Patient/{target}"),
                        ("HEAD", f"/Patient/{target}"), ("GET", "/metadata")):
        content = body if method in ("PUT", "PATCH", "POST") else None
        response = http.request(method, url, content=content,
                                headers={k: v.encode("latin-1") for k, v in headers.items()})
        assert_sane(response, allowed + ("CapabilityStatement",))
    # the seeded resources are untouched whatever the headers said
    first = seeded["patients"][0]
    assert http.get(f"/Patient/{first['id']}").json()["meta"]["versionId"] == "1"


@FUZZ
@given(params=params_strategy, type_=st.sampled_from(["Patient", "Observation", None]), form=st.booleans())
def test_fuzzed_search_parameters(http, seeded, params, type_, form):
    url = f"/{type_}" if type_ else ""
    if form:
        response = http.post(f"{url}/_search", content=urllib.parse.urlencode(params),
                             headers={"Content-Type": "application/x-www-form-urlencoded"})
    else:
        response = http.get(f"{str(http.base_url).rstrip('/')}{url}", params=params)
    assert_sane(response)
    strict = http.get(f"{str(http.base_url).rstrip('/')}{url}", params=params, headers={"Prefer": "handling=strict"})
    assert_sane(strict)


@pytest.mark.parametrize("literal", ["-9223372036854775809", "123456789012345678901234567890"])
def test_integer_literals_beyond_64_bits_in_a_decimal(server, literal):
    with client(server) as http:  # its own connection: after a 500 the server drops it
        body = ('{"resourceType": "Observation", "status": "final", "code": {"text": "big"}, '
                '"valueQuantity": {"value": ' + literal + "}}")
        response = http.post("/Observation", content=body, headers={"Content-Type": FHIR_JSON})
        assert_sane(response, ("OperationOutcome", "Observation"))
        assert response.status_code in (201, 400), response.text
        if response.status_code == 201:  # kept exactly, as decimals are
            assert literal in http.get(f"/Observation/{response.json()['id']}").text


@pytest.mark.parametrize("identifier", ['[{"system": ["urn:x"], "value": "1"}]', '[{"system": {"a": 1}, "value": "1"}]',
                                        '[{"system": [], "value": "1"}]', "5", "true"])
def test_ins_check_on_odd_identifiers(server, identifier):
    with client(server) as http:  # its own connection: after a 500 the server drops it
        response = http.post("/Patient", content='{"resourceType": "Patient", "identifier": ' + identifier + "}",
                             headers={"Content-Type": FHIR_JSON})
        assert_sane(response, ("OperationOutcome",))
        assert response.status_code == 400, response.text


# -- operator injection ----------------------------------------------------------------------------
INJECTED_PARAMS = ["family", "given", "name", "identifier", "gender", "birthdate", "address", "telecom", "email",
                   "general-practitioner", "_id", "_lastUpdated", "family:exact", "family:contains", "address-city",
                   "general-practitioner:Practitioner.name", "_has:Observation:subject:code"]


def _total(response: httpx.Response) -> int | None:
    """The number of matches of a 200 searchset, None for a 4xx refusal."""
    body = assert_sane(response)
    if response.status_code >= 400:
        return None
    assert response.status_code == 200 and body["type"] == "searchset", body
    return len([e for e in body.get("entry", []) if e.get("search", {}).get("mode", "match") == "match"])


@pytest.mark.parametrize("param", INJECTED_PARAMS)
def test_operator_values_are_text(http, seeded, param):
    """Each injected value finds what a value matching nothing finds (nothing), through GET and
    POST _search; the refusal of a value (400) is fine too."""
    control = _total(http.get("/Patient", params={param: f"zz-nomatch-{uuid.uuid4().hex}"}))
    everything = _total(http.get("/Patient", params={"_count": "1000"}))
    assert everything >= 5 and control in (0, None)
    for value in INJECTIONS:
        for response in (http.get("/Patient", params={param: value}),
                         http.post("/Patient/_search", data={param: value})):
            total = _total(response)
            assert total in (None, control or 0), f"{param}={value!r} matched {total} Patients (control: {control})"


@pytest.mark.parametrize("name", ["$where", '{"$gt": ""}', "family[$ne]", "family.$ne", "$or", "_id.$gt",
                                  "family:$regex", "__proto__"])
def test_operator_parameter_names_are_unknown_parameters(http, seeded, name):
    """An operator as a parameter NAME is at most an unknown (or malformed) parameter: lenient
    handling finds no more than without it, strict handling refuses it or finds no more."""
    family = "Hostile0"
    control = _total(http.get("/Patient", params={"family": family, "zz-unknown": "1"}))
    assert control == 1
    for prefer in ("handling=lenient", "handling=strict"):
        response = http.get("/Patient", params={"family": family, name: '{"$ne": null}'}, headers={"Prefer": prefer})
        total = _total(response)
        assert total is None or total <= control, f"{name}: {total} matches ({prefer}), control {control}"
        if prefer == "handling=strict" and name in ("$where", "$or", "__proto__", '{"$gt": ""}'):
            assert response.status_code == 400, f"{name} accepted under strict handling: {response.text[:300]}"


@pytest.mark.parametrize("value", ['{"$ne": null}', '{"$gt": ""}', '{"$regex": "Hostile"}', ".*", "$where"])
def test_operator_values_in_conditional_writes_match_nothing(http, seeded, value):
    patients = seeded["patients"]
    query = urllib.parse.urlencode({"family": value})
    # conditional create: nothing matches, so it creates (201) — never "200, it exists" for a seeded one
    created = http.post("/Patient", json={"resourceType": "Patient"}, headers={"If-None-Exist": query})
    assert_sane(created, ("OperationOutcome", "Patient"))
    assert created.status_code in (201, 400), created.text
    if created.status_code == 201:
        assert created.json()["id"] not in {p["id"] for p in patients}
    # conditional update: creates or refuses; never updates a seeded one
    updated = http.put(f"/Patient?{query}", json={"resourceType": "Patient", "active": False})
    assert_sane(updated, ("OperationOutcome", "Patient"))
    assert updated.status_code in (201, 400, 412), updated.text
    # conditional patch and delete: nothing to patch / delete
    patched = http.patch(f"/Patient?{query}", content=b'[{"op":"add","path":"/active","value":false}]',
                         headers={"Content-Type": JSON_PATCH})
    assert_sane(patched, ("OperationOutcome", "Patient"))
    assert patched.status_code in (400, 404, 412), patched.text
    assert_sane(http.delete(f"/Patient?{query}"), ("OperationOutcome",))
    # a conditional reference in a transaction resolves to nothing
    ref = http.post(str(http.base_url).rstrip("/"), json={"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": f"urn:uuid:{uuid.uuid4()}", "request": {"method": "POST", "url": "Observation"},
         "resource": {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                      "subject": {"reference": f"Patient?{query}"}}}]})
    assert_sane(ref)
    assert ref.status_code in (400, 404, 412), ref.text
    for patient in patients:
        current = http.get(f"/Patient/{patient['id']}")
        assert current.status_code == 200 and current.json() == patient, "a seeded Patient was changed"


@pytest.mark.parametrize("body", [
    {"resourceType": "Patient", "id": {"$gt": ""}},
    {"resourceType": {"$ne": None}},
    {"resourceType": "Patient", "$set": {"active": True}},
    {"resourceType": "Patient", "_id": "x"},
    {"resourceType": "Patient", "meta": {"versionId": {"$inc": 1}}},
    {"resourceType": "Patient", "name": [{"family": {"$where": "1"}}]},
    {"resourceType": "Patient", "identifier": [{"system": "urn:x", "value": {"$ne": None}}]},
    {"resourceType": "Patient", "telecom": [{"system": {"$ne": None}, "value": "1"}]},
])
def test_operator_objects_in_bodies(http, seeded, body):
    for response in (http.post("/Patient", json=body),
                     http.put(f"/Patient/{seeded['patients'][0]['id']}", json=body)):
        assert_sane(response, ("OperationOutcome", "Patient"))
        assert response.status_code in (400, 422) or (response.status_code == 201 and "meta" in body), response.text
    assert http.get(f"/Patient/{seeded['patients'][0]['id']}").json() == seeded["patients"][0]


# -- size and depth --------------------------------------------------------------------------------
def _nested(kind: str, depth: int) -> str:
    if kind == "arrays":
        return "[" * depth + "]" * depth
    if kind == "objects":
        return '{"a":' * depth + "1" + "}" * depth
    # extensions, each with the next one inside: a valid shape all the way down
    return '{"url":"http://x"' + ',"extension":[{"url":"http://x"' * depth + ',"valueString":"x"' + "}]" * depth + "}"


ROUTES = ["resource", "in-resource", "patch", "transaction"]
DEEP = [pytest.param(kind, depth, route, id=f"{kind}-{depth}-{route}")
        for kind, depths in (("arrays", (10_000, 900)), ("objects", (10_000, 900)), ("extensions", (10_000, 300)))
        for depth in depths for route in ROUTES]


@pytest.mark.parametrize("kind,depth,route", DEEP)
def test_deep_nesting_is_refused(server, kind, depth, route):
    inner = _nested(kind, depth)
    method, url, content_type, text = {
        "resource": ("POST", "/Patient", FHIR_JSON, inner),
        "in-resource": ("POST", "/Patient", FHIR_JSON, '{"resourceType":"Patient","extension":[' + inner + "]}"),
        "patch": ("PATCH", "/Patient/deep", JSON_PATCH, '[{"op":"add","path":"/extension","value":[' + inner + "]}]"),
        "transaction": ("POST", "", FHIR_JSON,
                        '{"resourceType":"Bundle","type":"transaction","entry":[{"request":{"method":"POST",'
                        '"url":"Patient"},"resource":{"resourceType":"Patient","extension":[' + inner + "]}}]}"),
    }[route]
    with client(server) as http:  # its own connection: after a 500 the server drops it
        assert http.put("/Patient/deep", json={"resourceType": "Patient", "id": "deep"}).status_code in (200, 201)
        target = url or str(http.base_url).rstrip("/")
        response = http.request(method, target, content=text.encode(), headers={"Content-Type": content_type})
        assert_sane(response)
        assert 400 <= response.status_code < 500, f"{method} {url} nested {kind} ×{depth}: {response.status_code}"


@pytest.mark.parametrize("case", [
    "one 5 MB string",
    "5 MB narrative",
    "one 15 MB string",
    "17 MB body",
    "15 MB in 30 strings",
    "300,000 identifiers",
])
def test_huge_bodies_are_refused_with_a_clear_4xx(http, case):
    bodies = {
        "one 5 MB string": lambda: {"resourceType": "Patient", "name": [{"family": "x" * (5 * MB)}]},
        "5 MB narrative": lambda: {"resourceType": "Patient", "text": {
            "status": "generated", "div": '<div xmlns="http://www.w3.org/1999/xhtml">' + "x" * (5 * MB) + "</div>"}},
        "one 15 MB string": lambda: {"resourceType": "Patient", "name": [{"family": "x" * (15 * MB)}]},
        "17 MB body": lambda: {"resourceType": "Patient", "name": [{"family": "x" * (17 * MB)}]},
        "15 MB in 30 strings": lambda: {"resourceType": "Patient", "name": [{"family": "x" * (MB // 2)}] * 30},
        "300,000 identifiers": lambda: {"resourceType": "Patient",
                                        "identifier": [{"value": str(i)} for i in range(300_000)]},
    }
    response = http.post("/Patient", content=json.dumps(bodies[case]()), headers={"Content-Type": FHIR_JSON})
    assert_sane(response, ("OperationOutcome", "Patient"))
    # FHIR caps strings at 1 MB, not the xhtml of a narrative: a 5 MB one may be stored
    accepted = (201, 400, 413, 422) if case == "5 MB narrative" else (400, 413, 422)
    assert response.status_code in accepted, f"{case}: {response.status_code} {response.text[:300]}"


def test_outcome_of_a_body_with_many_errors_stays_small(http):
    body = json.dumps({"resourceType": "Patient", **{f"k{i}": i for i in range(20_000)}})
    response = http.post("/Patient", content=body, headers={"Content-Type": FHIR_JSON})
    assert_sane(response, ("OperationOutcome",))
    assert response.status_code == 400
    assert len(response.content) <= max(MB, 2 * len(body)), f"{len(body)} bytes in, {len(response.content)} out"


def test_memory_stays_bounded_under_hostile_requests(server, http):
    """The server's resident memory after a batch of large and hostile requests stays within
    300 MB of what it was before (read from /proc; the bound is generous on purpose)."""
    pid = server.process.pid
    for _ in range(3):  # warm caches first: what is measured is growth, not first use
        http.post("/Patient", content=json.dumps({"resourceType": "Patient", "name": [{"family": "x" * (MB + 1)}]}),
                  headers={"Content-Type": FHIR_JSON})
    before = rss_bytes(pid)
    base = str(http.base_url).rstrip("/")
    for _ in range(8):
        assert_sane(http.post("/Patient", content=json.dumps({"resourceType": "Patient",
                                                               "name": [{"family": "x" * (5 * MB)}]}),
                              headers={"Content-Type": FHIR_JSON}))
        assert_sane(http.post("/Patient", content=("[" * 10_000 + "]" * 10_000).encode(),
                              headers={"Content-Type": FHIR_JSON}))
        assert_sane(http.post(base, content=('{"resourceType":"Bundle","type":"batch","entry":['
                                             + ",".join(['{"request":{"method":"GET","url":"Patient?family=zz-nomatch"}}'] * 200)
                                             + "]}").encode(), headers={"Content-Type": FHIR_JSON}))
        assert_sane(http.get("/Patient", params={"family": "é" * 5000, "_count": "1000"}))
        assert_sane(http.post("/Patient", content=json.dumps({"resourceType": "Patient", **{f"k{j}": j
                                                                                           for j in range(2000)}}),
                              headers={"Content-Type": FHIR_JSON}))
        assert_sane(http.post("/Patient", content=b"\xff" * MB, headers={"Content-Type": FHIR_JSON}))
    after = rss_bytes(pid)
    assert after - before < 300 * MB, f"RSS grew from {before // MB} MB to {after // MB} MB"
