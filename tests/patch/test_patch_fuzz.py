"""Fuzzed PATCH documents (hypothesis), JSON Patch and FHIRPath Patch, against the session server.

Whatever the document: never a 5xx; a refused patch changes nothing (same version, same
content); an accepted one stores exactly one new version, and that version is a valid resource
(`$validate` finds no error in it). Each case has a time limit (hypothesis `deadline`), so an
operation that made the server work without bound would fail the test rather than hang it.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .support import FHIR_JSON, fhirpath_patch, json_patch, new_id, put, read

# Derandomized by default (a CI failure is a regression, not a lucky draw); FHIR_FUZZ_EXAMPLES=1000 explores.
_DEEP = "FHIR_FUZZ_EXAMPLES" in os.environ
FUZZ = settings(deadline=timedelta(seconds=20), max_examples=int(os.environ.get("FHIR_FUZZ_EXAMPLES", "60")),
                derandomize=not _DEEP, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

BASELINE = {"resourceType": "Patient", "active": True, "gender": "female", "birthDate": "1970-01-01",
            "identifier": [{"system": "urn:fuzz", "value": "1"}],
            "name": [{"family": "Doe0", "given": ["Jane", "Q"]}, {"family": "Doe1", "use": "old"}],
            "telecom": [{"system": "phone", "value": "0102030405"}]}

_KEYS = ["family", "given", "text", "use", "value", "system", "url", "extension", "valueString", "start", "id",
         "resourceType", "div", "status"]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10 ** 12, 10 ** 12) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12) | st.sampled_from(["Doe", "old", "2020-01-01", "urn:x", "", " "]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(_KEYS) | st.text(max_size=5),
                                                                inner, max_size=3),
    max_leaves=8)
_POINTERS = st.sampled_from([
    "", "/", "/name", "/name/0", "/name/1", "/name/-", "/name/9", "/name/01", "/name/0/given", "/name/0/given/-",
    "/name/0/given/0", "/name/0/family", "/name/1/use", "/active", "/birthDate", "/gender", "/identifier",
    "/identifier/0/value", "/telecom/-", "/telecom/0", "/extension", "/extension/-", "/id", "/resourceType",
    "/meta", "/meta/versionId", "/text/div", "/a~1b", "/~2", "name", "/name/-1",
])
# Mostly well-formed (so that patches succeed often enough to test what they store), some not.
pointers = st.one_of(*[_POINTERS] * 7, st.text(max_size=8).map(lambda t: "/" + t))
fhir_values = st.sampled_from([True, False, "Doe", "old", "male", "2020-01-01", ["Ann"], {"family": "X"},
                               {"system": "urn:fuzz", "value": "2"}, {"family": "Y", "given": ["B"]}])
patch_values = st.one_of(fhir_values, fhir_values, json_values)
json_operations = st.fixed_dictionaries(
    {"op": st.sampled_from(["add", "add", "remove", "replace", "replace", "move", "copy", "test", "bogus"]),
     "path": pointers, "value": patch_values}, optional={"from": pointers})
_json_lists = st.lists(json_operations, min_size=1, max_size=3)
json_documents = st.one_of(_json_lists, _json_lists, _json_lists, _json_lists, st.lists(json_operations, max_size=8),
                           st.lists(json_operations | json_values, max_size=8), json_values)

_FHIRPATHS = st.sampled_from([
    "Patient", "Patient.name", "Patient.name[0]", "Patient.name[1]", "Patient.name[7]", "Patient.name.first()",
    "Patient.name.last()", "Patient.name.where(family='Doe0')", "Patient.name.where(use = 'old').given",
    "Patient.name[0].given", "Patient.active", "Patient.birthDate", "Patient.identifier", "Patient.deceased",
    "Patient.telecom", "Patient.telecom[0]", "Observation.status", "Patient.name.given.where(", "Patient..name",
    "Patient.name.exists()", "Patient.contact",
])
fhirpaths = st.one_of(_FHIRPATHS, _FHIRPATHS, _FHIRPATHS, st.text(max_size=15))
values = st.one_of(
    st.builds(lambda v: {"valueString": v}, st.text(max_size=10)),
    st.builds(lambda v: {"valueBoolean": v}, st.booleans()),
    st.builds(lambda v: {"valueInteger": v}, st.integers(-5, 5)),
    st.sampled_from([{"valueCode": "male"}, {"valueDate": "2001-02-03"}, {"valueDateTime": "2001-02-03T04:05:06Z"},
                     {"valueHumanName": {"family": "Added"}}, {"valueContactPoint": {"system": "email", "value": "a"}},
                     {"part": [{"name": "family", "valueString": "Parts"}]}, {"part": "x"}, {}]),
    json_values.map(lambda v: {"valueString": v}))


@st.composite
def fhirpath_operations(draw) -> dict[str, Any]:
    parts = [{"name": "type", "valueCode": draw(st.sampled_from(["add", "insert", "delete", "replace", "move", "x"]))},
             {"name": "path", "valueString": draw(fhirpaths)}]
    if draw(st.booleans()):
        parts.append({"name": "name", "valueString": draw(st.sampled_from(
            ["given", "family", "text", "active", "deceased", "telecom", "period", "use", "name", "nope"]))})
    if draw(st.integers(0, 4)):
        parts.append({"name": "value", **draw(values)})
    for key in ("index", "source", "destination"):
        if draw(st.booleans()):
            parts.append({"name": key, "valueInteger": draw(st.integers(-2, 5))})
    return {"name": "operation", "part": draw(st.permutations(parts))}


_fhirpath_lists = st.lists(fhirpath_operations(), max_size=4).map(
    lambda ops: {"resourceType": "Parameters", "parameter": ops})
fhirpath_documents = st.one_of(_fhirpath_lists, _fhirpath_lists, _fhirpath_lists,
                               json_values.map(lambda v: {"resourceType": "Parameters", "parameter": v}))


@pytest.fixture(scope="module")
def target() -> str:
    return f"Patient/{new_id('fuzz')}"


def _fresh(client, ref: str) -> dict[str, Any]:
    """The baseline stored again: every case starts from the same content."""
    return put(client, {**BASELINE, "id": ref.split("/")[1]})


def _check(client, ref: str, before: dict[str, Any], response) -> None:
    assert response.status_code < 500, response.text[:800]
    after = read(client, ref)
    if response.status_code != 200:
        assert response.json()["resourceType"] == "OperationOutcome", response.text[:500]
        assert after == before, (response.text[:500], before, after)
        return
    assert int(after["meta"]["versionId"]) == int(before["meta"]["versionId"]) + 1, after
    assert response.json() == after
    outcome = client.post("/Patient/$validate", json=after, headers={"Content-Type": FHIR_JSON})
    assert outcome.status_code == 200, outcome.text[:500]
    errors = [i for i in outcome.json()["issue"] if i["severity"] in ("error", "fatal")]
    assert not errors, (after, errors)


@FUZZ
@given(document=json_documents)
def test_fuzzed_json_patch(client, target, document):
    before = _fresh(client, target)
    _check(client, target, before, json_patch(client, f"/{target}", document))


@FUZZ
@given(document=fhirpath_documents)
def test_fuzzed_fhirpath_patch(client, target, document):
    before = _fresh(client, target)
    _check(client, target, before, fhirpath_patch(client, f"/{target}", document))
