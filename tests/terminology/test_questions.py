"""contains, validate_code, lookup, subsumes and hierarchy on the R4 core definitions, and FR Core
value sets through the same API."""

from __future__ import annotations

import pytest

from fhir_server.terminology import Terminology, TerminologyError

from .support import ACT_CODE, ENCOUNTER_VS, GENDER, GENDER_VS, LOINC, SNOMED, codes

CONFIDENTIALITY = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
V2_0164 = "http://terminology.hl7.org/CodeSystem/v2-0164"


# -- contains ------------------------------------------------------------------------------------
def test_contains_enumerated_and_filtered(term: Terminology):
    assert term.contains(GENDER_VS, GENDER, "male") is True
    assert term.contains(GENDER_VS, GENDER, "mal") is False
    assert term.contains(GENDER_VS, "http://example.org/other", "male") is False
    assert term.contains(GENDER_VS, None, "female") is True  # any system
    assert term.contains(ENCOUNTER_VS, ACT_CODE, "ACUTE") is True  # nested under IMP, is-a _ActEncounterCode
    assert term.contains(ENCOUNTER_VS, ACT_CODE, "_ActEncounterCode") is False  # excluded
    assert term.contains(ENCOUNTER_VS, ACT_CODE, "CASH") is False  # a code, elsewhere in the hierarchy
    assert term.contains(ENCOUNTER_VS, ACT_CODE, "NOSUCH") is False


def test_contains_agrees_with_the_expansion(term: Terminology, definitions):
    for url in (ENCOUNTER_VS, "http://hl7.org/fhir/ValueSet/patient-contactrelationship",
                "http://hl7.org/fhir/ValueSet/encounter-participant-type", "http://hl7.org/fhir/ValueSet/security-labels"):
        expanded = term.expand(url)["expansion"]["contains"]
        for item in expanded:
            assert term.contains(url, item["system"], item["code"]) is True, (url, item)
    inside = {c["code"] for c in term.expand(ENCOUNTER_VS)["expansion"]["contains"]}
    for item in term.expand({"resourceType": "ValueSet", "compose": {"include": [{"system": ACT_CODE}]}})[
            "expansion"]["contains"]:
        assert term.contains(ENCOUNTER_VS, ACT_CODE, item["code"]) is (item["code"] in inside)


def test_contains_cannot_tell_for_systems_not_held(term: Terminology):
    assert term.contains("http://hl7.org/fhir/ValueSet/clinical-findings", SNOMED, "404684003") is None
    assert term.contains("http://hl7.org/fhir/ValueSet/doc-typecodes", LOINC, "11488-4") is None
    assert term.contains("http://example.org/ValueSet/unknown", GENDER, "male") is None
    # but another system than the one the ValueSet draws from is certainly not in it
    assert term.contains("http://hl7.org/fhir/ValueSet/clinical-findings", GENDER, "male") is False


def test_contains_on_incomplete_code_systems(term: Terminology, definitions):
    url = "http://hl7.org/fhir/ValueSet/service-type"  # CodeSystem content: example
    held = definitions.resource("http://terminology.hl7.org/CodeSystem/service-type")["concept"][0]["code"]
    assert term.contains(url, "http://terminology.hl7.org/CodeSystem/service-type", held) is True
    assert term.contains(url, "http://terminology.hl7.org/CodeSystem/service-type", "not-in-the-example") is None


def test_contains_with_imports(term: Terminology):
    url = "http://hl7.org/fhir/ValueSet/security-labels"  # six imported v3 value sets
    assert term.contains(url, "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "R") is True
    assert term.contains(url, "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "C") is False


# -- validate_code -------------------------------------------------------------------------------
def test_validate_code_in_a_value_set(term: Terminology):
    ok = term.validate_code(valueset=GENDER_VS, system=GENDER, code="male")
    assert ok == {"result": True, "display": "Male"}
    assert term.validate_code(valueset=GENDER_VS, system=GENDER, code="male", display="male ")["result"] is True
    wrong = term.validate_code(valueset=GENDER_VS, system=GENDER, code="male", display="Masculin")
    assert wrong["result"] is False and "Masculin" in wrong["message"] and "'Male'" in wrong["message"]
    absent = term.validate_code(valueset=GENDER_VS, system=GENDER, code="boy")
    assert absent["result"] is False and "'boy' is not a code of" in absent["message"]
    coding = term.validate_code(valueset=ENCOUNTER_VS, coding={"system": ACT_CODE, "code": "IMP"})
    assert coding == {"result": True, "display": "inpatient encounter"}
    other = term.validate_code(valueset=ENCOUNTER_VS, coding={"system": ACT_CODE, "code": "CASH"})
    assert other["result"] is False and ENCOUNTER_VS in other["message"]


def test_validate_a_codeable_concept(term: Terminology):
    good = {"system": GENDER, "code": "female"}
    bad = {"system": "http://example.org/local", "code": "F"}
    assert term.validate_code(valueset=GENDER_VS, codeable_concept={"coding": [bad, good]})["result"] is True
    assert term.validate_code(valueset=GENDER_VS, codeable_concept={"coding": [good, bad]})["display"] == "Female"
    none = term.validate_code(valueset=GENDER_VS, codeable_concept={"coding": [bad]})
    assert none["result"] is False and "F" in none["message"]
    with pytest.raises(ValueError):
        term.validate_code(valueset=GENDER_VS, codeable_concept={"text": "female"})


def test_validate_code_inputs(term: Terminology):
    with pytest.raises(ValueError):
        term.validate_code(valueset=GENDER_VS)
    with pytest.raises(ValueError):
        term.validate_code(valueset=GENDER_VS, code="male", coding={"system": GENDER, "code": "male"})


def test_validate_code_cannot_tell(term: Terminology):
    out = term.validate_code(valueset="http://hl7.org/fhir/ValueSet/clinical-findings", system=SNOMED, code="22298006")
    assert out["result"] is None and "SNOMED" in out["message"]
    out = term.validate_code(valueset="http://example.org/ValueSet/unknown", system=GENDER, code="male")
    assert out["result"] is None and "not known" in out["message"]
    out = term.validate_code(codesystem=LOINC, code="8480-6")
    assert out["result"] is None and LOINC in out["message"]


def test_validate_code_in_a_code_system(term: Terminology):
    assert term.validate_code(codesystem=ACT_CODE, code="ACUTE") == {"result": True, "display": "inpatient acute"}
    assert term.validate_code(codesystem=ACT_CODE, code="acute")["result"] is False  # case-sensitive system
    unknown = term.validate_code(codesystem=ACT_CODE, code="NOSUCH")
    assert unknown["result"] is False and "NOSUCH" in unknown["message"]
    # with neither value set nor code system: each coding in its own system
    assert term.validate_code(coding={"system": GENDER, "code": "other"})["result"] is True
    assert term.validate_code(coding={"system": GENDER, "code": "nope"})["result"] is False


def test_abstract_codes_are_not_for_data_unless_allowed(term: Terminology):
    out = term.validate_code(codesystem=ACT_CODE, code="_ActEncounterCode")
    assert out["result"] is False and "abstract" in out["message"]
    assert term.validate_code(codesystem=ACT_CODE, code="_ActEncounterCode", abstract=True)["result"] is True


def test_inactive_codes_are_valid_with_a_warning(term: Terminology):
    out = term.validate_code(codesystem=CONFIDENTIALITY, code="HIV")
    assert out["result"] is True and "inactive" in out["message"]


def test_display_checked_against_designations(term: Terminology):
    assert term.validate_code(codesystem=V2_0164, code="AP", display="Applikator")["result"] is True


def test_enumerated_external_codes(term: Terminology, fr_definitions):
    fr = Terminology(fr_definitions)
    url = "https://hl7.fr/ig/fhir/core/ValueSet/fr-core-vs-body-position"  # SNOMED CT codes, enumerated
    listed = fr.expand(url)["expansion"]["contains"][0]
    assert fr.contains(url, SNOMED, listed["code"]) is True
    assert fr.contains(url, SNOMED, "0000000") is False  # the enumeration is the whole value set
    ok = fr.validate_code(valueset=url, system=SNOMED, code=listed["code"], display="some other synonym")
    assert ok["result"] is True and "not checked" in ok["message"]  # SNOMED CT displays are not held here


def test_codes_listed_by_a_value_set_but_missing_from_its_code_system(term: Terminology):
    vs = {"resourceType": "ValueSet", "url": "http://example.org/ValueSet/odd", "status": "active",
          "compose": {"include": [{"system": ACT_CODE, "concept": [{"code": "IMP"}, {"code": "NOTACODE"}]}]}}
    out = term.expand(vs)
    assert codes(out) == ["IMP", "NOTACODE"]  # the value set's own enumeration
    assert any("NOTACODE" in p["valueString"] for p in out["expansion"]["parameter"] if p["name"] == "warning")
    checked = term.validate_code(valueset=vs, system=ACT_CODE, code="NOTACODE")
    assert checked["result"] is True and "not a code of" in checked["message"]
    assert term.validate_code(valueset=vs, system=ACT_CODE, code="IMP") == {"result": True,
                                                                            "display": "inpatient encounter"}


# -- lookup --------------------------------------------------------------------------------------
def test_lookup(term: Terminology):
    found = term.lookup(ACT_CODE, "IMP")
    assert found["name"] == "v3 Code System ActCode" and found["version"] == "2018-08-12"
    assert found["display"] == "inpatient encounter"
    props = {(p["code"], next(v for k, v in p.items() if k.startswith("value"))) for p in found["property"]}
    assert {("parent", "_ActEncounterCode"), ("child", "ACUTE"), ("child", "NONAC"), ("inactive", False)} <= props
    assert any(code == "definition" for code, _ in props)
    assert term.lookup(ACT_CODE, "_ActEncounterCode")["abstract"] is True
    assert term.lookup(ACT_CODE, "NOSUCH") is None


def test_lookup_properties_and_designations(term: Terminology):
    only = term.lookup(ACT_CODE, "IMP", properties=["parent"])
    assert [p["code"] for p in only["property"]] == ["parent"] and "designation" not in only
    ap = term.lookup(V2_0164, "AP")
    assert "Applikator" in [d["value"] for d in ap["designation"]]
    retired = term.lookup(CONFIDENTIALITY, "HIV")
    assert {"code": "status", "valueCode": "retired"} in retired["property"]
    assert {"code": "inactive", "valueBoolean": True} in retired["property"]


def test_lookup_of_systems_not_held(term: Terminology):
    with pytest.raises(TerminologyError, match="not-present"):
        term.lookup(SNOMED, "22298006")
    with pytest.raises(TerminologyError, match="not held"):
        term.lookup(LOINC, "8480-6")
    with pytest.raises(TerminologyError, match="version 9.9"):
        term.lookup(GENDER, "male", version="9.9")
    assert term.lookup(GENDER, "male", version="4.0.1")["display"] == "Male"


# -- subsumes, hierarchy ------------------------------------------------------------------------
@pytest.mark.parametrize("a, b, outcome", [
    ("IMP", "ACUTE", "subsumes"), ("ACUTE", "IMP", "subsumed-by"), ("IMP", "IMP", "equivalent"),
    ("IMP", "AMB", "not-subsumed"), ("_ActEncounterCode", "NONAC", "subsumes"),
])
def test_subsumes(term: Terminology, a, b, outcome):
    assert term.subsumes(ACT_CODE, a, b) == outcome


def test_subsumes_unknown(term: Terminology):
    assert term.subsumes(SNOMED, "1", "2") is None
    with pytest.raises(TerminologyError):
        term.subsumes(ACT_CODE, "IMP", "NOSUCH")


def test_hierarchy_for_search_modifiers(term: Terminology):
    assert term.hierarchy(ACT_CODE, "IMP", "below") == {"IMP", "ACUTE", "NONAC"}
    assert term.hierarchy(ACT_CODE, "ACUTE", "above") == {"ACUTE", "IMP", "_ActEncounterCode", "_ActCareProvisionCode"}
    with pytest.raises(TerminologyError):
        term.hierarchy(ACT_CODE, "NOSUCH", "below")
    with pytest.raises(TerminologyError):
        term.hierarchy(LOINC, "8480-6", "below")


# -- FR Core -------------------------------------------------------------------------------------
def test_fr_core_value_sets(fr_definitions):
    fr = Terminology(fr_definitions)
    gender = fr.expand("https://hl7.fr/ig/fhir/core/ValueSet/fr-core-vs-patient-gender")
    assert codes(gender) == ["male", "female", "unknown"]
    assert fr.contains("https://hl7.fr/ig/fhir/core/ValueSet/fr-core-vs-patient-gender", GENDER, "other") is False
    # import of identifier-use|4.0.1 minus `official`
    use = codes(fr.expand("https://hl7.fr/ig/fhir/core/ValueSet/fr-core-vs-patient-identifier-use-pi"))
    assert use == ["usual", "temp", "secondary", "old"]
    # accents are ignored by the text filter
    found = fr.expand("https://hl7.fr/ig/fhir/core/ValueSet/fr-core-vs-location-type", filter="etage")
    assert [(c["code"], c["display"]) for c in found["expansion"]["contains"]] == [("ETAG", "Étage")]
    with pytest.raises(TerminologyError, match="TRE_R38"):
        fr.expand("https://hl7.fr/ig/fhir/core/ValueSet/fr-core-vs-practitioner-specialty")


# -- UCUM: grammar only --------------------------------------------------------------------------
@pytest.mark.parametrize("unit", ["mg/dL", "10*3/uL", "mm[Hg]", "/min", "kg.m-2", "{score}", "%", "(kg.m)/s2"])
def test_well_formed_ucum_codes_cannot_be_told(term: Terminology, unit):
    assert term.contains("http://hl7.org/fhir/ValueSet/ucum-units", "http://unitsofmeasure.org", unit) is None
    out = term.validate_code(codesystem="http://unitsofmeasure.org", code=unit)
    assert out["result"] is None and "well-formed" in out["message"]


@pytest.mark.parametrize("unit", ["kg//m", "(mg", "m g", "mg/", "[abc", "m-"])
def test_malformed_ucum_codes_are_not_ucum(term: Terminology, unit):
    assert term.contains("http://hl7.org/fhir/ValueSet/ucum-units", "http://unitsofmeasure.org", unit) is False
    out = term.validate_code(valueset="http://hl7.org/fhir/ValueSet/ucum-units", system="http://unitsofmeasure.org",
                             code=unit)
    assert out["result"] is False and "not a UCUM code" in out["message"]
    assert term.validate_code(codesystem="http://unitsofmeasure.org", code=unit)["result"] is False
