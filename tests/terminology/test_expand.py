"""Expansion with the R4 core definitions: enumerations, whole hierarchical code systems, filters,
imports, excludes, text filter, paging, designations, status, and what cannot be expanded here."""

from __future__ import annotations

import pytest

from fhir_server.terminology import Terminology, TerminologyError

from .support import ACT_CODE, ENCOUNTER_VS, GENDER, GENDER_VS, LOINC, SNOMED, codes, concept_codes

ENCOUNTER_CODES = ["AMB", "EMER", "FLD", "HH", "IMP", "ACUTE", "NONAC", "OBSENC", "PRENC", "SS", "VR"]


def inline(*includes, exclude=(), **compose) -> dict:
    return {"resourceType": "ValueSet", "status": "active",
            "compose": {"include": list(includes), **({"exclude": list(exclude)} if exclude else {}), **compose}}


def test_enumerated_value_set_administrative_gender(term: Terminology):
    out = term.expand(GENDER_VS)
    assert out["resourceType"] == "ValueSet" and out["url"] == GENDER_VS
    expansion = out["expansion"]
    assert expansion["total"] == 4 and expansion["offset"] == 0
    assert expansion["identifier"].startswith("urn:uuid:") and expansion["timestamp"]
    assert [(c["system"], c["code"], c["display"]) for c in expansion["contains"]] == [
        (GENDER, "male", "Male"), (GENDER, "female", "Female"), (GENDER, "other", "Other"),
        (GENDER, "unknown", "Unknown")]
    assert {"name": "used-codesystem", "valueUri": f"{GENDER}|4.0.1"} in expansion["parameter"]
    assert "text" not in out  # the package's narrative does not describe an expansion


def test_whole_hierarchical_code_system_is_flattened_in_definition_order(term: Terminology, definitions):
    resource = definitions.resource(ACT_CODE)
    out = term.expand(inline({"system": ACT_CODE}))
    expected = concept_codes(resource)
    assert out["expansion"]["total"] == len(expected) > 1000
    assert codes(out) == expected
    items = {c["code"]: c for c in out["expansion"]["contains"]}
    assert "contains" not in items["IMP"]  # flat: ACUTE (nested under IMP) is listed on its own
    assert items["ACUTE"]["display"] == "inpatient acute"
    assert items["_ActEncounterCode"]["abstract"] is True  # notSelectable
    assert "abstract" not in items["IMP"]


def test_is_a_filter_with_exclude_of_the_root(term: Terminology):
    out = term.expand(ENCOUNTER_VS)  # is-a _ActEncounterCode, exclude _ActEncounterCode
    assert codes(out) == ENCOUNTER_CODES
    assert out["expansion"]["total"] == 11


@pytest.mark.parametrize("op, value, expected", [
    ("is-a", "IMP", ["IMP", "ACUTE", "NONAC"]),
    ("descendent-of", "IMP", ["ACUTE", "NONAC"]),
    ("descendent-of", "ACUTE", []),
    ("is-a", "ACUTE", ["ACUTE"]),
    ("generalizes", "ACUTE", ["_ActCareProvisionCode", "_ActEncounterCode", "IMP", "ACUTE"]),
    ("=", "IMP", ["IMP"]),
    ("in", "IMP,AMB,NOSUCH", ["AMB", "IMP"]),
    ("regex", "[A-Z]MB", ["AMB"]),
])
def test_concept_filters(term: Terminology, op, value, expected):
    vs = inline({"system": ACT_CODE, "filter": [{"property": "concept", "op": op, "value": value}]})
    found = codes(term.expand(vs))
    assert sorted(found) == sorted(expected)


def test_filters_of_one_include_are_anded(term: Terminology):
    vs = inline({"system": ACT_CODE, "filter": [{"property": "concept", "op": "is-a", "value": "_ActEncounterCode"},
                                                {"property": "concept", "op": "is-not-a", "value": "IMP"}]})
    assert codes(term.expand(vs)) == ["_ActEncounterCode", "AMB", "EMER", "FLD", "HH", "OBSENC", "PRENC", "SS", "VR"]


def test_is_not_a_from_the_package(term: Terminology, definitions):
    url = "http://hl7.org/fhir/ValueSet/patient-contactrelationship"  # v2-0131 is-not-a O
    system = "http://terminology.hl7.org/CodeSystem/v2-0131"
    out = term.expand(url)
    every = concept_codes(definitions.resource(system))
    assert "O" in every and "O" not in codes(out)
    assert codes(out) == [c for c in every if c != "O"]


def test_descendent_of_from_the_package(term: Terminology):
    out = term.expand("http://hl7.org/fhir/ValueSet/inactive")  # descendent-of _ActMoodPredicate (v3-ActMood)
    found = codes(out)
    assert "_ActMoodPredicate" not in found
    assert {"CRT", "EXPEC", "GOL", "RSK", "OPT"} <= set(found)
    # the package also carries an (illustrative) expansion: the compose is what counts
    assert out["expansion"]["identifier"] != "urn:uuid:46c00b3f-003a-4f31-9d4b-ea2de58b2a99"


def test_property_filter_on_a_code_system_property(term: Terminology):
    vs = inline({"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality",
                 "filter": [{"property": "status", "op": "=", "value": "retired"}]})
    assert set(codes(term.expand(vs))) == {"_ConfidentialityByAccessKind", "B", "D", "I", "_ConfidentialityByInfoType",
                                           "ETH", "HIV", "PSY", "SDV", "_ConfidentialityModifiers", "C", "S", "T"}
    vs = inline({"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality",
                 "filter": [{"property": "parent", "op": "=", "value": "_ConfidentialityModifiers"}]})
    assert codes(term.expand(vs)) == ["C", "S", "T"]


def test_unknown_filter_property_is_refused_not_guessed(term: Terminology):
    with pytest.raises(TerminologyError, match="acme-plasma"):
        term.expand("http://hl7.org/fhir/ValueSet/example-filter")
    vs = inline({"system": ACT_CODE, "filter": [{"property": "concept", "op": "nearby", "value": "IMP"}]})
    with pytest.raises(TerminologyError, match="nearby"):
        term.expand(vs)


def pairs(expanded: dict) -> set[tuple[str, str]]:
    return {(c["system"], c["code"]) for c in expanded["expansion"].get("contains", ())}


def test_value_set_imports_are_unioned_across_includes(term: Terminology):
    out = term.expand("http://hl7.org/fhir/ValueSet/event-or-request-resource-types")
    events = pairs(term.expand("http://hl7.org/fhir/ValueSet/event-resource-types"))
    requests = pairs(term.expand("http://hl7.org/fhir/ValueSet/request-resource-types"))
    assert pairs(out) == events | requests
    assert out["expansion"]["total"] == len(events | requests)
    assert codes(out).count("Task") == 2  # one code in two systems is two concepts


def test_value_set_import_intersects_with_the_include_system_part(term: Terminology):
    vs = inline({"system": ACT_CODE, "concept": [{"code": "IMP"}, {"code": "AMB"}, {"code": "CASH"}],
                 "valueSet": [ENCOUNTER_VS]})
    assert codes(term.expand(vs)) == ["IMP", "AMB"]
    inpatient = inline({"system": ACT_CODE, "filter": [{"property": "concept", "op": "is-a", "value": "IMP"}]})
    term_url = "http://terminology.hl7.org/ValueSet/v3-ActEncounterCode"
    both = inline({"valueSet": [term_url, "http://hl7.org/fhir/ValueSet/event-resource-types"]})
    assert codes(term.expand(both)) == []  # nothing in common
    assert codes(term.expand(inline({"valueSet": [term_url], "system": ACT_CODE,
                                     "filter": inpatient["compose"]["include"][0]["filter"]}))) == ["IMP", "ACUTE", "NONAC"]


def test_excludes(term: Terminology):
    vs = inline({"system": ACT_CODE, "filter": [{"property": "concept", "op": "is-a", "value": "IMP"}]},
                exclude=[{"system": ACT_CODE, "concept": [{"code": "NONAC"}]}])
    assert codes(term.expand(vs)) == ["IMP", "ACUTE"]
    vs = inline({"valueSet": [ENCOUNTER_VS]}, exclude=[{"valueSet": [ENCOUNTER_VS]}])
    assert codes(term.expand(vs)) == [] and term.expand(vs)["expansion"]["total"] == 0
    out = term.expand("http://hl7.org/fhir/ValueSet/encounter-participant-type")
    assert out["expansion"]["total"] == len(codes(out)) > 0


def test_excluding_an_external_system_absent_from_the_result_does_not_need_it(term: Terminology):
    vs = inline({"system": GENDER}, exclude=[{"system": SNOMED, "filter": [
        {"property": "concept", "op": "is-a", "value": "404684003"}]}])
    assert codes(term.expand(vs)) == ["male", "female", "other", "unknown"]


def test_filter_text(term: Terminology):
    assert codes(term.expand(GENDER_VS, filter="fem")) == ["female"]
    assert codes(term.expand(GENDER_VS, filter="FEMALE")) == ["female"]
    out = term.expand(ENCOUNTER_VS, filter="inpatient")  # displays 'inpatient encounter', 'inpatient acute'…
    assert codes(out) == ["IMP", "ACUTE", "NONAC"]
    assert out["expansion"]["total"] == 3
    assert {"name": "filter", "valueString": "inpatient"} in out["expansion"]["parameter"]
    assert codes(term.expand(ENCOUNTER_VS, filter="non inp")) == ["NONAC"]  # every word, any order
    assert codes(term.expand(ENCOUNTER_VS, filter="zzz")) == []


def test_paging_keeps_total_and_offset(term: Terminology):
    full = codes(term.expand(ENCOUNTER_VS))
    page = term.expand(ENCOUNTER_VS, offset=2, count=3)
    assert page["expansion"]["total"] == 11 and page["expansion"]["offset"] == 2
    assert codes(page) == full[2:5]
    last = term.expand(ENCOUNTER_VS, offset=9, count=5)
    assert codes(last) == full[9:]
    assert codes(term.expand(ENCOUNTER_VS, offset=20)) == []
    only_total = term.expand(ENCOUNTER_VS, count=0)
    assert only_total["expansion"]["total"] == 11 and "contains" not in only_total["expansion"]
    filtered = term.expand(ENCOUNTER_VS, filter="inpatient", offset=1, count=1)
    assert codes(filtered) == ["ACUTE"] and filtered["expansion"]["total"] == 3


def test_designations(term: Terminology):
    url = "http://terminology.hl7.org/ValueSet/v2-0164"
    plain = {c["code"]: c for c in term.expand(url)["expansion"]["contains"]}
    assert "designation" not in plain["AP"]
    rich = {c["code"]: c for c in term.expand(url, include_designations=True)["expansion"]["contains"]}
    assert {"language": "de", "value": "Applikator"} in [
        {"language": d.get("language"), "value": d["value"]} for d in rich["AP"]["designation"]]
    # the text filter reads designations too
    assert "AP" in codes(term.expand(url, filter="applikator"))


def test_active_only_and_inactive_flags(term: Terminology, definitions):
    vs = inline({"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"})
    every = term.expand(vs)
    flagged = {c["code"] for c in every["expansion"]["contains"] if c.get("inactive")}
    retired = set()

    def walk(concepts):
        for c in concepts or ():
            if any(p["code"] == "status" and p.get("valueCode") == "retired" for p in c.get("property", ())):
                retired.add(c["code"])
            walk(c.get("concept"))

    walk(definitions.resource("http://terminology.hl7.org/CodeSystem/v3-Confidentiality")["concept"])
    assert flagged == retired and len(retired) == 13
    active = term.expand(vs, active_only=True)
    assert active["expansion"]["total"] == every["expansion"]["total"] - 13
    assert not set(codes(active)) & retired
    no_inactive = inline({"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"}, inactive=False)
    assert codes(term.expand(no_inactive)) == codes(active)


def test_a_value_set_with_only_an_expansion_is_used_as_is(term: Terminology):
    vs = {"resourceType": "ValueSet", "status": "active", "expansion": {
        "timestamp": "2020-01-01T00:00:00Z",
        "contains": [{"system": "http://example.org/a", "code": "x", "display": "Ex"},
                     {"system": "http://example.org/a", "code": "grp", "abstract": True,
                      "contains": [{"system": "http://example.org/a", "code": "y"}]}]}}
    out = term.expand(vs)
    assert codes(out) == ["x", "grp", "y"] and out["expansion"]["total"] == 3
    assert term.contains(vs, "http://example.org/a", "y") is True
    assert term.contains(vs, "http://example.org/a", "z") is False
    partial = {**vs, "expansion": {**vs["expansion"], "total": 50}}
    with pytest.raises(TerminologyError, match="only part"):
        term.expand(partial)


def test_code_system_whose_url_carries_a_version_bar(term: Terminology):
    out = term.expand("http://terminology.hl7.org/ValueSet/v2-2.1-0006")
    assert out["expansion"]["total"] == 9
    assert out["expansion"]["contains"][0]["system"] == "http://terminology.hl7.org/CodeSystem/v2-0006|2.1"


def test_snomed_value_set_cannot_be_expanded(term: Terminology):
    with pytest.raises(TerminologyError) as info:
        term.expand("http://hl7.org/fhir/ValueSet/clinical-findings")
    assert SNOMED in str(info.value) and "not-present" in str(info.value)
    assert info.value.code == "not-supported"


def test_loinc_and_other_external_systems_cannot_be_expanded(term: Terminology):
    with pytest.raises(TerminologyError, match="loinc.org.* not held here"):
        term.expand("http://hl7.org/fhir/ValueSet/doc-typecodes")
    with pytest.raises(TerminologyError, match="urn:ietf:bcp:47"):
        term.expand("http://hl7.org/fhir/ValueSet/all-languages")
    with pytest.raises(TerminologyError, match="urn:ietf:bcp:13"):
        term.expand("http://hl7.org/fhir/ValueSet/mimetypes")
    # the common languages are enumerated: those expand
    assert "fr-FR" in codes(term.expand("http://hl7.org/fhir/ValueSet/languages"))
    with pytest.raises(TerminologyError, match="unitsofmeasure"):
        term.expand("http://hl7.org/fhir/ValueSet/ucum-units")


def test_incomplete_code_systems_are_not_expanded_as_if_whole(term: Terminology):
    with pytest.raises(TerminologyError, match="content 'example'"):
        term.expand("http://hl7.org/fhir/ValueSet/service-type")
    with pytest.raises(TerminologyError, match="content 'fragment'"):
        term.expand(inline({"system": "http://terminology.hl7.org/CodeSystem/insurance-plan-type"}))


def test_enumerated_codes_of_an_external_system_expand_from_the_enumeration(term: Terminology):
    vs = inline({"system": LOINC, "concept": [{"code": "8480-6", "display": "Systolic blood pressure"}]})
    out = term.expand(vs)
    assert out["expansion"]["contains"] == [{"system": LOINC, "code": "8480-6", "display": "Systolic blood pressure"}]


def test_unknown_value_set(term: Terminology):
    with pytest.raises(TerminologyError) as info:
        term.expand("http://example.org/ValueSet/none")
    assert info.value.code == "not-found"
    assert term.valueset("http://example.org/ValueSet/none") is None
    with pytest.raises(TerminologyError, match="imported by"):
        term.expand(inline({"valueSet": ["http://example.org/ValueSet/none"]}))


def test_version_in_canonical(term: Terminology):
    assert term.valueset(f"{GENDER_VS}|4.0.1")["version"] == "4.0.1"
    assert term.codesystem(f"{GENDER}|4.0.1")["url"] == GENDER
    assert codes(term.expand(f"{GENDER_VS}|4.0.1")) == ["male", "female", "other", "unknown"]


def test_expansions_are_cached_and_answers_stay_the_same(term: Terminology):
    first = term.expand(ENCOUNTER_VS)
    second = term.expand(ENCOUNTER_VS)
    assert codes(first) == codes(second)
    assert first["expansion"]["identifier"] != second["expansion"]["identifier"]  # each answer its own
    second["expansion"]["contains"].clear()  # callers may change what they got
    assert codes(term.expand(ENCOUNTER_VS)) == ENCOUNTER_CODES
