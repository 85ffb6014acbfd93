"""The terminology operations over HTTP on a real server: $expand, $validate-code (ValueSet and
CodeSystem), $lookup, $subsumes; package and stored ValueSets/CodeSystems; errors."""

from __future__ import annotations

import uuid

import pytest

from .support import ACT_CODE, ENCOUNTER_VS, GENDER, GENDER_VS, SNOMED

CLINICAL_FINDINGS = "http://hl7.org/fhir/ValueSet/clinical-findings"


def uid() -> str:
    return uuid.uuid4().hex[:12]


def params(body: dict) -> dict:
    """Parameters → {name: value} for the parameters with a value (first of each name)."""
    assert body["resourceType"] == "Parameters", body
    out: dict = {}
    for p in body["parameter"]:
        for key, value in p.items():
            if key.startswith("value"):
                out.setdefault(p["name"], value)
    return out


def all_named(body: dict, name: str) -> list:
    return [p for p in body["parameter"] if p["name"] == name]


def expanded_codes(body: dict) -> list[str]:
    return [c["code"] for c in body["expansion"].get("contains", ())]


def parameters(*items) -> dict:
    return {"resourceType": "Parameters", "parameter": list(items)}


def issue(response) -> str:
    body = response.json()
    assert body["resourceType"] == "OperationOutcome", body
    return " ".join(i.get("diagnostics", "") for i in body["issue"])


# -- $expand -------------------------------------------------------------------------------------
def test_expand_by_url(client):
    r = client.get("/ValueSet/$expand", params={"url": GENDER_VS})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["resourceType"] == "ValueSet" and body["url"] == GENDER_VS
    assert body["expansion"]["total"] == 4 and body["expansion"]["offset"] == 0
    assert expanded_codes(body) == ["male", "female", "other", "unknown"]


def test_expand_filter_and_paging(client):
    r = client.get("/ValueSet/$expand", params={"url": ENCOUNTER_VS, "offset": "2", "count": "3"})
    assert r.status_code == 200, r.text
    full = expanded_codes(client.get("/ValueSet/$expand", params={"url": ENCOUNTER_VS}).json())
    assert len(full) == 11
    assert r.json()["expansion"]["total"] == 11 and r.json()["expansion"]["offset"] == 2
    assert expanded_codes(r.json()) == full[2:5]
    r = client.get("/ValueSet/$expand", params={"url": ENCOUNTER_VS, "filter": "inpatient"})
    assert expanded_codes(r.json()) == ["IMP", "ACUTE", "NONAC"] and r.json()["expansion"]["total"] == 3


def test_expand_post_parameters(client):
    body = parameters({"name": "url", "valueUri": "http://terminology.hl7.org/ValueSet/v2-0164"},
                      {"name": "count", "valueInteger": 2}, {"name": "includeDesignations", "valueBoolean": True})
    r = client.post("/ValueSet/$expand", json=body)
    assert r.status_code == 200, r.text
    contains = r.json()["expansion"]["contains"]
    assert len(contains) == 2 and contains[0]["code"] == "AP"
    assert "Applikator" in [d["value"] for d in contains[0]["designation"]]
    assert r.json()["expansion"]["total"] > 2


def test_expand_inline_value_set(client):
    vs = {"resourceType": "ValueSet", "status": "active", "compose": {"include": [
        {"system": ACT_CODE, "filter": [{"property": "concept", "op": "is-a", "value": "IMP"}]}]}}
    r = client.post("/ValueSet/$expand", json=parameters({"name": "valueSet", "resource": vs}))
    assert r.status_code == 200, r.text
    assert expanded_codes(r.json()) == ["IMP", "ACUTE", "NONAC"]


@pytest.mark.parametrize("query", [
    {}, {"url": GENDER_VS, "count": "abc"}, {"url": GENDER_VS, "offset": "-1"},
    {"url": GENDER_VS, "activeOnly": "yes"}, {"url": GENDER_VS, "system-version": "http://x|1"},
    {"url": GENDER_VS, "valueSet": "{}"},
])
def test_expand_bad_requests_are_400(client, query):
    r = client.get("/ValueSet/$expand", params=query)
    assert r.status_code == 400, r.text
    assert issue(r)


def test_expand_contradictory_or_malformed_bodies_are_400(client):
    vs = {"resourceType": "ValueSet", "status": "active", "compose": {"include": [{"system": GENDER}]}}
    both = parameters({"name": "url", "valueUri": GENDER_VS}, {"name": "valueSet", "resource": vs})
    assert client.post("/ValueSet/$expand", json=both).status_code == 400
    twice = parameters({"name": "url", "valueUri": GENDER_VS}, {"name": "url", "valueUri": GENDER_VS})
    assert client.post("/ValueSet/$expand", json=twice).status_code == 400
    assert client.post("/ValueSet/$expand", json=vs).status_code == 400  # not a Parameters
    wrong_type = parameters({"name": "url", "valueUri": GENDER_VS}, {"name": "count", "valueString": "3"})
    assert client.post("/ValueSet/$expand", json=wrong_type).status_code == 400


def test_expand_unknown_value_set_is_404(client):
    r = client.get("/ValueSet/$expand", params={"url": f"http://example.org/{uid()}/ValueSet/none"})
    assert r.status_code == 404, r.text
    assert client.get(f"/ValueSet/{uid()}/$expand").status_code == 404


def test_expand_what_cannot_be_expanded_here_is_422_saying_why(client):
    r = client.get("/ValueSet/$expand", params={"url": CLINICAL_FINDINGS})
    assert r.status_code == 422, r.text
    text = issue(r)
    assert SNOMED in text and "not-present" in text
    r = client.get("/ValueSet/$expand", params={"url": "http://hl7.org/fhir/ValueSet/ucum-units"})
    assert r.status_code == 422 and "unitsofmeasure" in issue(r)


# -- stored ValueSets and CodeSystems ------------------------------------------------------------
@pytest.fixture
def stored(client):
    """A CodeSystem (case-insensitive, Root > Mid > Leaf nested, Other under Root by `parent`, Old
    retired, a `colour` property) and ValueSets over it, written through the API."""
    url = f"http://example.org/{uid()}/CodeSystem/shapes"
    cs = {"resourceType": "CodeSystem", "url": url, "version": "1", "status": "active", "content": "complete",
          "caseSensitive": False, "hierarchyMeaning": "is-a",
          "property": [{"code": "colour", "type": "string"},
                       {"code": "status", "uri": "http://hl7.org/fhir/concept-properties#status", "type": "code"}],
          "concept": [
              {"code": "Root", "display": "Root shape", "concept": [
                  {"code": "Mid", "display": "Middle shape", "concept": [
                      {"code": "Leaf", "display": "Leaf shape", "property": [{"code": "colour", "valueString": "green"}]}]}]},
              {"code": "Old", "display": "Old shape", "property": [{"code": "status", "valueCode": "retired"}]},
              {"code": "Other", "display": "Other shape",
               "property": [{"code": "parent", "valueCode": "Root"}, {"code": "colour", "valueString": "red"}]}]}
    r = client.post("/CodeSystem", json=cs)
    assert r.status_code == 201, r.text
    cs_id = r.json()["id"]
    vs_url = f"http://example.org/{uid()}/ValueSet/all-shapes"
    r = client.post("/ValueSet", json={"resourceType": "ValueSet", "url": vs_url, "status": "active",
                                       "compose": {"include": [{"system": url}]}})
    assert r.status_code == 201, r.text
    return {"url": url, "cs": cs, "cs_id": cs_id, "vs_url": vs_url, "vs_id": r.json()["id"]}


def test_expand_a_stored_value_set_by_id_and_by_url(client, stored):
    r = client.get(f"/ValueSet/{stored['vs_id']}/$expand")
    assert r.status_code == 200, r.text
    assert expanded_codes(r.json()) == ["Root", "Mid", "Leaf", "Old", "Other"]
    r = client.get("/ValueSet/$expand", params={"url": stored["vs_url"], "activeOnly": "true"})
    assert expanded_codes(r.json()) == ["Root", "Mid", "Leaf", "Other"]
    r = client.post(f"/ValueSet/{stored['vs_id']}/$expand", json=parameters({"name": "filter", "valueString": "mid"}))
    assert expanded_codes(r.json()) == ["Mid"]
    r = client.get(f"/ValueSet/{stored['vs_id']}/$expand", params={"url": GENDER_VS})
    assert r.status_code == 400, r.text  # the instance and the url disagree


def test_filters_over_a_stored_code_system(client, stored):
    def expand(*filters):
        vs = {"resourceType": "ValueSet", "status": "active",
              "compose": {"include": [{"system": stored["url"], "filter": list(filters)}]}}
        r = client.post("/ValueSet/$expand", json=parameters({"name": "valueSet", "resource": vs}))
        assert r.status_code == 200, r.text
        return expanded_codes(r.json())

    assert expand({"property": "concept", "op": "is-a", "value": "Root"}) == ["Root", "Mid", "Leaf", "Other"]
    assert expand({"property": "concept", "op": "descendent-of", "value": "root"}) == ["Mid", "Leaf", "Other"]
    assert expand({"property": "concept", "op": "is-not-a", "value": "Mid"}) == ["Root", "Old", "Other"]
    assert expand({"property": "colour", "op": "=", "value": "green"}) == ["Leaf"]
    assert expand({"property": "colour", "op": "regex", "value": "gr.*|r.d"}) == ["Leaf", "Other"]
    assert expand({"property": "colour", "op": "exists", "value": "false"}) == ["Root", "Mid", "Old"]
    assert expand({"property": "status", "op": "=", "value": "retired"}) == ["Old"]
    assert expand({"property": "parent", "op": "=", "value": "Root"}) == ["Mid", "Other"]


def test_stored_code_system_changes_are_seen_by_the_next_expansion(client, stored):
    before = client.get(f"/ValueSet/{stored['vs_id']}/$expand").json()
    assert "New" not in expanded_codes(before)
    cs = {**stored["cs"], "id": stored["cs_id"], "concept": stored["cs"]["concept"] + [{"code": "New", "display": "New"}]}
    r = client.put(f"/CodeSystem/{stored['cs_id']}", json=cs)
    assert r.status_code == 200, r.text
    after = client.get(f"/ValueSet/{stored['vs_id']}/$expand").json()
    assert expanded_codes(after) == expanded_codes(before) + ["New"]
    assert client.delete(f"/ValueSet/{stored['vs_id']}").status_code in (200, 204)
    assert client.get(f"/ValueSet/{stored['vs_id']}/$expand").status_code == 410
    assert client.get("/ValueSet/$expand", params={"url": stored["vs_url"]}).status_code == 404


def test_import_cycle_is_422(client):
    a, b = f"http://example.org/{uid()}/ValueSet/a", f"http://example.org/{uid()}/ValueSet/b"
    for url, other in ((a, b), (b, a)):
        r = client.post("/ValueSet", json={"resourceType": "ValueSet", "url": url, "status": "active",
                                           "compose": {"include": [{"valueSet": [other]}]}})
        assert r.status_code == 201, r.text
    r = client.get("/ValueSet/$expand", params={"url": a})
    assert r.status_code == 422 and "imports itself" in issue(r)


# -- $validate-code ------------------------------------------------------------------------------
def test_valueset_validate_code(client):
    r = client.get("/ValueSet/$validate-code", params={"url": GENDER_VS, "system": GENDER, "code": "female"})
    assert r.status_code == 200, r.text
    assert params(r.json()) == {"result": True, "display": "Female"}
    r = client.get("/ValueSet/$validate-code",
                   params={"url": GENDER_VS, "system": GENDER, "code": "female", "display": "Femme"})
    out = params(r.json())
    assert out["result"] is False and "Femme" in out["message"]
    r = client.get("/ValueSet/$validate-code", params={"url": ENCOUNTER_VS, "system": ACT_CODE, "code": "CASH"})
    assert params(r.json())["result"] is False


def test_valueset_validate_code_post(client):
    coding = parameters({"name": "url", "valueUri": ENCOUNTER_VS},
                        {"name": "coding", "valueCoding": {"system": ACT_CODE, "code": "ACUTE"}})
    r = client.post("/ValueSet/$validate-code", json=coding)
    assert r.status_code == 200, r.text
    assert params(r.json()) == {"result": True, "display": "inpatient acute"}
    concept = parameters({"name": "url", "valueUri": GENDER_VS}, {"name": "codeableConcept", "valueCodeableConcept": {
        "coding": [{"system": "http://example.org/local", "code": "F"}, {"system": GENDER, "code": "female"}]}})
    assert params(client.post("/ValueSet/$validate-code", json=concept).json())["result"] is True


def test_valueset_validate_code_errors(client):
    assert client.get("/ValueSet/$validate-code", params={"url": GENDER_VS, "code": "male"}).status_code == 400
    assert client.get("/ValueSet/$validate-code", params={"url": GENDER_VS}).status_code == 400
    r = client.get("/ValueSet/$validate-code", params={"url": f"http://example.org/{uid()}", "system": GENDER,
                                                       "code": "male"})
    assert r.status_code == 404
    r = client.get("/ValueSet/$validate-code", params={"url": CLINICAL_FINDINGS, "system": SNOMED, "code": "22298006"})
    assert r.status_code == 422 and SNOMED in issue(r)
    both = parameters({"name": "url", "valueUri": GENDER_VS}, {"name": "code", "valueCode": "male"},
                      {"name": "coding", "valueCoding": {"system": GENDER, "code": "male"}})
    assert client.post("/ValueSet/$validate-code", json=both).status_code == 400


def test_validate_code_on_stored_resources(client, stored):
    r = client.get(f"/ValueSet/{stored['vs_id']}/$validate-code", params={"system": stored["url"], "code": "leaf"})
    assert r.status_code == 200, r.text
    out = params(r.json())
    assert out["result"] is True and out["display"] == "Leaf shape" and "'Leaf'" in out["message"]  # case-insensitive
    r = client.get(f"/CodeSystem/{stored['cs_id']}/$validate-code", params={"code": "OTHER", "display": "other SHAPE"})
    assert params(r.json())["result"] is True
    r = client.get(f"/CodeSystem/{stored['cs_id']}/$validate-code", params={"code": "Nope"})
    assert params(r.json())["result"] is False


def test_codesystem_validate_code(client):
    r = client.get("/CodeSystem/$validate-code", params={"url": ACT_CODE, "code": "IMP"})
    assert r.status_code == 200, r.text
    assert params(r.json()) == {"result": True, "display": "inpatient encounter"}
    r = client.post("/CodeSystem/$validate-code",
                    json=parameters({"name": "coding", "valueCoding": {"system": GENDER, "code": "xx"}}))
    out = params(r.json())
    assert out["result"] is False and "'xx'" in out["message"]
    cs = {"resourceType": "CodeSystem", "url": "http://example.org/inline", "status": "active", "content": "complete",
          "concept": [{"code": "a", "display": "A"}]}
    r = client.post("/CodeSystem/$validate-code", json=parameters({"name": "codeSystem", "resource": cs},
                                                                  {"name": "code", "valueCode": "a"}))
    assert params(r.json()) == {"result": True, "display": "A"}
    r = client.get("/CodeSystem/$validate-code", params={"url": f"http://example.org/{uid()}", "code": "a"})
    assert r.status_code == 404
    r = client.get("/CodeSystem/$validate-code", params={"url": SNOMED, "code": "22298006"})
    assert r.status_code == 422


# -- $lookup, $subsumes --------------------------------------------------------------------------
def test_lookup(client):
    r = client.get("/CodeSystem/$lookup", params={"system": ACT_CODE, "code": "IMP"})
    assert r.status_code == 200, r.text
    body = r.json()
    out = params(body)
    assert out["name"] == "v3 Code System ActCode" and out["display"] == "inpatient encounter"
    assert out["version"] == "2018-08-12"
    props = [{part["name"]: next(v for k, v in part.items() if k.startswith("value")) for part in p["part"]}
             for p in all_named(body, "property")]
    assert {"code": "parent", "value": "_ActEncounterCode"} in props
    assert {"code": "child", "value": "ACUTE"} in props
    r = client.get("/CodeSystem/$lookup", params=[("system", ACT_CODE), ("code", "IMP"), ("property", "child"),
                                                  ("property", "inactive")])
    assert {p["part"][0]["valueCode"] for p in all_named(r.json(), "property")} == {"child", "inactive"}


def test_lookup_post_coding_and_designations(client):
    r = client.post("/CodeSystem/$lookup", json=parameters(
        {"name": "coding", "valueCoding": {"system": "http://terminology.hl7.org/CodeSystem/v2-0164", "code": "AP"}}))
    assert r.status_code == 200, r.text
    designations = all_named(r.json(), "designation")
    values = [next(part["valueString"] for part in d["part"] if part["name"] == "value") for d in designations]
    assert "Applikator" in values
    assert any(part == {"name": "language", "valueCode": "de"} for d in designations for part in d["part"])


def test_lookup_errors(client):
    assert client.get("/CodeSystem/$lookup", params={"system": ACT_CODE, "code": "NOSUCH"}).status_code == 404
    assert client.get("/CodeSystem/$lookup", params={"system": f"http://example.org/{uid()}",
                                                     "code": "x"}).status_code == 404
    r = client.get("/CodeSystem/$lookup", params={"system": SNOMED, "code": "22298006"})
    assert r.status_code == 422 and "not-present" in issue(r)
    assert client.get("/CodeSystem/$lookup", params={"system": ACT_CODE}).status_code == 400
    assert client.get("/CodeSystem/$lookup", params={"system": GENDER, "code": "male",
                                                     "version": "9.9"}).status_code == 404


def test_subsumes(client, stored):
    r = client.get("/CodeSystem/$subsumes", params={"system": ACT_CODE, "codeA": "IMP", "codeB": "ACUTE"})
    assert r.status_code == 200, r.text
    assert params(r.json()) == {"outcome": "subsumes"}
    r = client.get(f"/CodeSystem/{stored['cs_id']}/$subsumes", params={"codeA": "Leaf", "codeB": "Root"})
    assert params(r.json()) == {"outcome": "subsumed-by"}
    assert client.get("/CodeSystem/$subsumes", params={"system": ACT_CODE, "codeA": "IMP"}).status_code == 400
    assert client.get("/CodeSystem/$subsumes", params={"system": ACT_CODE, "codeA": "IMP",
                                                       "codeB": "NOSUCH"}).status_code == 404


def test_operations_are_in_the_capability_statement(client):
    resources = {r["type"]: r for r in client.get("/metadata").json()["rest"][0]["resource"]}
    assert {op["name"] for op in resources["ValueSet"]["operation"]} >= {"expand", "validate-code"}
    assert {op["name"] for op in resources["CodeSystem"]["operation"]} >= {"lookup", "validate-code", "subsumes"}
    assert "expand" not in {op["name"] for op in resources["Patient"]["operation"]}
