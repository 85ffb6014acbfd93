"""Structural validation on write: 400 with an OperationOutcome whose issue.expression points at
the offending element, and nothing stored afterwards. R4 (not R4B) definitions."""

from __future__ import annotations

import copy

import httpx
import pytest

from .support import assert_outcome, body_of, exact, new_id

OBS = {"resourceType": "Observation", "status": "final", "code": {"text": "x"}}

# (case id, resource, issue code, expression)
INVALID = [
    ("unknown-element", {"resourceType": "Patient", "foo": 1}, "structure", "Patient.foo"),
    ("unknown-nested-element", {"resourceType": "Patient", "name": [{"family": "D", "foo": "x"}]},
     "structure", "Patient.name[0].foo"),
    ("unknown-choice-type", {"resourceType": "Patient", "deceasedString": "x"}, "structure", None),
    ("two-choice-variants", {"resourceType": "Patient", "deceasedBoolean": True, "deceasedDateTime": "2020"},
     "structure", None),
    ("bad-month", {"resourceType": "Patient", "birthDate": "1970-13-01"}, "value", "Patient.birthDate"),
    ("bad-day", {"resourceType": "Patient", "birthDate": "1970-02-30"}, "value", "Patient.birthDate"),
    ("instant-without-zone", {**OBS, "issued": "2020-01-01T10:00:00"}, "value", "Observation.issued"),
    ("instant-without-time", {**OBS, "issued": "2020-01-01"}, "value", "Observation.issued"),
    ("datetime-with-time-without-zone", {**OBS, "effectiveDateTime": "2020-01-01T10:00:00"}, "value",
     "Observation.effectiveDateTime"),
    ("id-typed-element-bad-chars", {"resourceType": "MessageHeader", "eventCoding": {"code": "x"},
                                    "source": {"endpoint": "http://x"},
                                    "response": {"identifier": "bad$id", "code": "ok"}},
     "value", "MessageHeader.response.identifier"),
    ("id-typed-element-too-long", {"resourceType": "ImagingStudy", "status": "available",
                                   "subject": {"reference": "Patient/x"},
                                   "series": [{"uid": "1" * 65, "modality": {"code": "CT"}}]},
     "value", "ImagingStudy.series[0].uid"),
    ("valueId-bad-chars", {"resourceType": "Patient", "extension": [{"url": "http://x", "valueId": "a b"}]},
     "value", "Patient.extension[0].valueId"),
    ("boolean-as-string", {"resourceType": "Patient", "active": "true"}, "value", "Patient.active"),
    ("boolean-as-number", {"resourceType": "Patient", "active": 1}, "value", "Patient.active"),
    ("decimal-as-string", {**OBS, "valueQuantity": {"value": "1.5"}}, "value", "Observation.valueQuantity.value"),
    ("integer-as-float", {"resourceType": "Patient", "multipleBirthInteger": 2.5}, "value",
     "Patient.multipleBirthInteger"),
    ("integer-as-string", {"resourceType": "Patient", "multipleBirthInteger": "2"}, "value",
     "Patient.multipleBirthInteger"),
    ("integer-out-of-range", {"resourceType": "Patient", "multipleBirthInteger": 2147483648}, "value",
     "Patient.multipleBirthInteger"),
    ("unsignedInt-negative", {"resourceType": "Patient", "photo": [{"size": -1}]}, "value", "Patient.photo[0].size"),
    ("code-with-leading-space", {"resourceType": "Patient", "gender": " male"}, "value", "Patient.gender"),
    ("uri-with-space", {"resourceType": "Patient", "implicitRules": "http://a b"}, "value", "Patient.implicitRules"),
    ("string-for-complex", {"resourceType": "Patient", "name": ["Durand"]}, "structure", "Patient.name[0]"),
    ("array-for-max-1", {"resourceType": "Patient", "gender": ["male"]}, "structure", "Patient.gender"),
    ("array-for-max-1-complex", {"resourceType": "Patient", "maritalStatus": [{"text": "x"}]}, "structure",
     "Patient.maritalStatus"),
    ("object-for-repeating", {"resourceType": "Patient", "name": {"family": "D"}}, "structure", "Patient.name"),
    ("string-for-repeating-primitive", {"resourceType": "Patient", "name": [{"given": "Anne"}]}, "structure",
     "Patient.name[0].given"),
    ("empty-string", {"resourceType": "Patient", "gender": ""}, "value", "Patient.gender"),
    ("empty-string-in-array", {"resourceType": "Patient", "name": [{"given": [""]}]}, "value",
     "Patient.name[0].given[0]"),
    ("empty-array", {"resourceType": "Patient", "name": []}, "structure", "Patient.name"),
    ("empty-object", {"resourceType": "Patient", "name": [{}]}, "structure", "Patient.name[0]"),
    ("null-value", {"resourceType": "Patient", "birthDate": None}, "structure", "Patient.birthDate"),
    ("null-in-array", {"resourceType": "Patient", "name": [{"given": ["a", None]}]}, "structure",
     "Patient.name[0].given[1]"),
    ("bad-primitive-extension", {"resourceType": "Patient", "birthDate": "1970",
                                 "_birthDate": {"extension": [{"url": "http://x", "valueBoolean": "yes"}]}},
     "value", "Patient.birthDate.extension[0].valueBoolean"),
    ("bad-contained", {"resourceType": "Patient", "contained": [{"resourceType": "Patient", "birthDate": "1970-13"}]},
     "value", "Patient.contained[0].birthDate"),
    ("bad-bundle-entry", {"resourceType": "Bundle", "type": "collection",
                          "entry": [{"resource": {"resourceType": "Patient", "active": 1}}]},
     "value", "Bundle.entry[0].resource.active"),
    ("narrative-without-xhtml-namespace", {"resourceType": "Patient", "text": {"status": "generated",
                                                                              "div": "<div>x</div>"}},
     "value", "Patient.text.div"),
    ("r4b-shape-of-evidence", {"resourceType": "Evidence", "status": "draft",
                               "exposureBackground": {"reference": "EvidenceVariable/x"},
                               "variableDefinition": [{"variableRole": {"text": "x"}}]},
     "structure", "Evidence.variableDefinition"),
]

MISSING = [
    ("missing-status", {"resourceType": "Observation", "code": {"text": "x"}}, "Observation.status"),
    ("missing-code", {"resourceType": "Observation", "status": "final"}, "Observation.code"),
    ("missing-extension-url", {"resourceType": "Patient", "extension": [{"valueString": "x"}]},
     "Patient.extension[0].url"),
    ("missing-link-other", {"resourceType": "Patient", "link": [{"type": "seealso"}]}, "Patient.link[0].other"),
]


def _newest_history_entry(client, type_):
    # _since keeps clear of the type-history bug on short histories (see test_history.py)
    r = client.get(f"/{type_}/_history", params={"_count": "1", "_since": "2000-01-01T00:00:00Z"})
    assert r.status_code == 200
    entries = r.json().get("entry", [])
    return (entries[0]["fullUrl"], entries[0]["response"]["etag"]) if entries else None


def _check_rejected(client, resource, code, expression):
    type_ = resource["resourceType"]
    before = _newest_history_entry(client, type_)
    assert_outcome(client.post(f"/{type_}", json=resource), 400, code, expression)
    assert _newest_history_entry(client, type_) == before
    id_ = new_id("inv")
    with_id = {"resourceType": type_, "id": id_, **{k: v for k, v in resource.items() if k != "resourceType"}}
    assert_outcome(client.put(f"/{type_}/{id_}", json=with_id), 400, code, expression)
    assert_outcome(client.get(f"/{type_}/{id_}"), 404, "not-found")
    assert_outcome(client.get(f"/{type_}/{id_}/_history"), 404, "not-found")
    assert _newest_history_entry(client, type_) == before


@pytest.mark.parametrize("resource,code,expression", [c[1:] for c in INVALID], ids=[c[0] for c in INVALID])
def test_invalid_resource_is_rejected_and_not_stored(client, resource, code, expression):
    _check_rejected(client, resource, code, expression)


@pytest.mark.parametrize("resource,expression", [c[1:] for c in MISSING], ids=[c[0] for c in MISSING])
def test_missing_required_element_is_rejected_at_its_own_path(client, resource, expression):
    _check_rejected(client, resource, "required", expression)


def test_rejected_update_leaves_the_current_version(client):
    id_ = new_id("inv")
    good = {"resourceType": "Patient", "id": id_, "birthDate": "1970-01-01"}
    assert client.put(f"/Patient/{id_}", json=good).status_code == 201
    bad = {**good, "birthDate": "1970-13-01"}
    assert_outcome(client.put(f"/Patient/{id_}", json=bad), 400, "value", "Patient.birthDate")
    current = client.get(f"/Patient/{id_}")
    assert current.json()["meta"]["versionId"] == "1" and current.json()["birthDate"] == "1970-01-01"
    assert client.get(f"/Patient/{id_}/_history").json()["total"] == 1


def test_every_problem_is_reported(client):
    r = client.post("/Patient", json={"resourceType": "Patient", "foo": 1, "active": "yes",
                                      "birthDate": "1970-13-01"})
    outcome = assert_outcome(r, 400)
    assert sorted(i["expression"][0] for i in outcome["issue"]) == \
        ["Patient.active", "Patient.birthDate", "Patient.foo"]


VALID = [
    ("medicinal-product", {"resourceType": "MedicinalProduct", "name": [{"productName": "Paracetamol"}]}),
    ("medicinal-product-ingredient", {"resourceType": "MedicinalProductIngredient",
                                      "role": {"coding": [{"system": "http://example.org", "code": "ActiveBase"}]}}),
    ("effect-evidence-synthesis", {"resourceType": "EffectEvidenceSynthesis", "status": "draft",
                                   "population": {"reference": "EvidenceVariable/p"},
                                   "exposure": {"reference": "EvidenceVariable/e"},
                                   "exposureAlternative": {"reference": "EvidenceVariable/a"},
                                   "outcome": {"reference": "EvidenceVariable/o"}}),
    ("r4-evidence", {"resourceType": "Evidence", "status": "draft",
                     "exposureBackground": {"reference": "EvidenceVariable/x"}}),
    ("primitive-extension-only", {"resourceType": "Patient",
                                  "_birthDate": {"extension": [{"url": "http://x", "valueBoolean": True}]}}),
    ("aligned-nulls", {"resourceType": "Patient", "name": [{"given": ["a", None], "_given": [None, {
        "id": "g", "extension": [{"url": "http://example.org/x", "valueString": "y"}]}]}]}),
    ("dates-of-every-precision", {**OBS, "effectiveDateTime": "2020", "issued": "2020-01-01T10:00:00.123+02:00",
                                  "valuePeriod": {"start": "2020-01", "end": "2020-01-02T10:00:00Z"}}),
    ("leap-day", {"resourceType": "Patient", "birthDate": "2000-02-29"}),
    ("xhtml-narrative", {"resourceType": "Patient", "text": {
        "status": "generated", "div": '<div xmlns="http://www.w3.org/1999/xhtml"><p>Anne <b>Durand</b></p></div>'}}),
    ("contained-and-bundle", {"resourceType": "Bundle", "type": "collection", "entry": [
        {"fullUrl": "urn:uuid:5b1c4e4e-2a5b-4a4e-9d4c-0a1b2c3d4e5f",
         "resource": {"resourceType": "Patient", "contained": [{"resourceType": "Practitioner", "id": "p1"}],
                      "generalPractitioner": [{"reference": "#p1"}]}}]}),
]


@pytest.fixture(scope="module")
def evidence_variables(base_url):
    """The EvidenceVariables the evidence cases refer to: references must resolve (referential
    integrity)."""
    with httpx.Client(base_url=base_url, timeout=60) as http:
        for id_ in ("p", "e", "a", "o", "x"):
            r = http.put(f"/EvidenceVariable/{id_}", json={
                "resourceType": "EvidenceVariable", "id": id_, "status": "draft",
                "characteristic": [{"definitionCodeableConcept": {"text": id_}}]})
            assert r.status_code in (200, 201), r.text


@pytest.mark.parametrize("resource", [c[1] for c in VALID], ids=[c[0] for c in VALID])
def test_valid_resource_is_stored_as_sent(client, resource, evidence_variables):
    r = client.post(f"/{resource['resourceType']}", json=resource)
    assert r.status_code == 201, r.text
    got = client.get(f"/{resource['resourceType']}/{r.json()['id']}")
    assert got.status_code == 200
    stored = copy.deepcopy(body_of(got))
    assert stored.pop("id") == r.json()["id"]
    assert set(stored.pop("meta")) == {"versionId", "lastUpdated"}
    assert exact(stored) == exact(resource)


def test_r4b_only_types_are_unknown(client):
    for type_ in ("Citation", "SubscriptionTopic", "MedicinalProductDefinition", "Ingredient"):
        assert_outcome(client.post(f"/{type_}", json={"resourceType": type_, "status": "draft"}), 404,
                       "not-supported")


def test_decimal_precision_is_kept(client):
    id_ = new_id("dec")
    raw = (f'{{"resourceType":"Observation","id":"{id_}","status":"final","code":{{"text":"x"}},'
           f'"valueQuantity":{{"value":1.50}},'
           f'"component":[{{"code":{{"text":"a"}},"valueQuantity":{{"value":100.000}}}},'
           f'{{"code":{{"text":"b"}},"valueQuantity":{{"value":1e2}}}},'
           f'{{"code":{{"text":"c"}},"valueQuantity":{{"value":-0.0}}}},'
           f'{{"code":{{"text":"d"}},"valueQuantity":{{"value":3}}}},'
           f'{{"code":{{"text":"e"}},"valueQuantity":{{"value":12345678901234567890.123456789}}}}]}}').encode()
    assert client.put(f"/Observation/{id_}", content=raw,
                      headers={"Content-Type": "application/fhir+json"}).status_code == 201
    got = client.get(f"/Observation/{id_}")
    assert b'"valueQuantity":{"value":1.50}' in got.content
    values = [c["valueQuantity"]["value"] for c in body_of(got)["component"]]
    assert [exact(v) for v in values] == [("decimal", "100.000"), ("decimal", "1e2"), ("decimal", "-0.0"),
                                         ("int", 3), ("decimal", "12345678901234567890.123456789")]
    assert exact(body_of(got)["valueQuantity"]["value"]) == ("decimal", "1.50")
    # also in the history and in vread
    assert b'"value":1.50' in client.get(f"/Observation/{id_}/_history/1").content
    assert b'"value":1.50' in client.get(f"/Observation/{id_}/_history").content
