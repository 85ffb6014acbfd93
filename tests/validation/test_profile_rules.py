"""Each rule of the profile validator: a resource that breaks it is reported with the right code,
severity and expression; the same resource without the fault is not.

Most profiles come from `profile_helpers.TEST_PROFILES` (differential-only: their snapshots are
generated), the others from FR Core 2.2.0 and ans.fhir.fr.tddui 2.2.0.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from profile_helpers import (
    FR,
    TDDUI,
    TEST,
    errors,
    find,
    fr_core_package,
    french_validators,
    load,
    make_test_validators,
    report,
)

from fhir_server.validation.profile import ProfileValidator

PATIENT = TEST + "test-patient"
OBSERVATION = TEST + "test-observation"
BUNDLE = TEST + "test-bundle"


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    return make_test_validators(tmp_path_factory.mktemp("test-package"))


@pytest.fixture(scope="module")
def pv(setup) -> ProfileValidator:
    return setup[2]


def good_patient() -> dict[str, Any]:
    return {
        "resourceType": "Patient", "id": "p1", "text": {"status": "generated", "div": '<div xmlns="http://www.w3.org/1999/xhtml">P</div>'},
        "extension": [{"url": TEST + "test-eye-colour", "valueCode": "female"}],
        "identifier": [{"system": "http://example.org/mrn", "value": "A123"},
                       {"system": "http://example.org/ssn", "value": "123-45-6789"}],
        "name": [{"family": "Durand", "given": ["Marie"]}],
        "telecom": [{"system": "phone", "value": "0102030405", "period": {"start": "2020-01-01"}}],
        "gender": "female", "birthDate": "1970-03-04",
        "maritalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus", "code": "M"}]},
        "contact": [{"relationship": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0131",
                                                   "code": "C"}]}], "name": {"family": "Durand"}}],
        "generalPractitioner": [{"reference": "Practitioner/d1"}],
    }


def check(setup, resource: dict[str, Any], profiles=(PATIENT,), base: bool = True):
    _, structural, validator = setup
    assert structural.validate(resource) == [], "the test resource must be structurally valid R4"
    return validator.validate(resource, profiles, base=base)


def test_good_patient_has_no_error(setup):
    issues = check(setup, good_patient())
    assert not errors(issues), report(issues)


def test_snapshots_of_the_test_profiles_are_generated(setup):
    definitions, _, validator = setup
    for url in (PATIENT, OBSERVATION, BUNDLE, TEST + "test-eye-colour", TEST + "test-human-name"):
        assert definitions.structure_definition(url).get("snapshot") is None
        snapshots = validator.profiles.snapshots
        generated = snapshots.structure_definition(url)
        assert generated is not None, snapshots.error(url)
        assert generated["snapshot"]["element"] and snapshots.is_generated(url)


# -- cardinality ---------------------------------------------------------------------------------

def test_min_narrowed_by_the_profile(setup):
    patient = good_patient()
    del patient["gender"]
    issue = find(check(setup, patient), "required", "Patient.gender", "error")
    assert "at least 1" in issue.diagnostics and "test-patient" in issue.diagnostics


def test_max_narrowed_by_the_profile(setup):
    patient = good_patient()
    patient["name"][0]["given"].append("Anne")  # HumanName profile: given 0..1
    find(check(setup, patient), "structure", "Patient.name[0].given[1]", "error")


def test_slice_cardinality(setup):
    patient = good_patient()
    patient["identifier"] = patient["identifier"][1:]  # no mrn (1..1)
    issue = find(check(setup, patient), "required", "Patient.identifier", "error")
    assert "Slice 'mrn'" in issue.diagnostics
    patient = good_patient()
    patient["telecom"].append(copy.deepcopy(patient["telecom"][0]))  # slice dated is 0..1
    issue = find(check(setup, patient), "structure", "Patient.telecom[1]", "error")
    assert "Slice 'dated'" in issue.diagnostics


# -- types -------------------------------------------------------------------------------------

def test_choice_type_restricted_by_the_profile(setup):
    obs = {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
           "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                     "code": "vital-signs"}]}], "valueString": "high"}
    find(check(setup, obs, (OBSERVATION,)), "structure", "Observation.valueString", "error")
    obs["valueQuantity"] = {"value": 80}
    del obs["valueString"]
    assert not errors(check(setup, obs, (OBSERVATION,)))


def test_extension_value_type_restricted(setup):
    patient = good_patient()
    patient["extension"][0] = {"url": TEST + "test-eye-colour", "valueString": "blue"}
    find(check(setup, patient), "structure", "Patient.extension[0].valueString", "error")


# -- fixed and pattern -------------------------------------------------------------------------

def test_fixed_value(setup):
    obs = {"resourceType": "Observation", "status": "preliminary", "code": {"text": "x"},
           "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                     "code": "vital-signs"}]}]}
    issue = find(check(setup, obs, (OBSERVATION,)), "value", "Observation.status", "error")
    assert "'final'" in issue.diagnostics


def test_fixed_codeable_concept_in_fr_core():
    structural, validator = french_validators()
    uf = load(fr_core_package().root / "example" / "Organization-hopitaltest-uf-4420-dialyse.json")
    assert not errors(validator.validate(uf, [FR + "fr-core-organization-uf"]))
    uf["type"][0]["coding"][0]["code"] = "UAC"
    issues = validator.validate(uf, [FR + "fr-core-organization-uf"])
    find(issues, "value", "Organization.type[0]", "error")


def test_pattern_value_in_tddui():
    structural, validator = french_validators()
    careplan = tddui_careplan()
    assert not errors(validator.validate(careplan, [TDDUI + "StructureDefinition/tddui-careplan-projet-personnalise"]))
    careplan["identifier"][0]["system"] = "http://example.org/wrong"
    issues = validator.validate(careplan, [TDDUI + "StructureDefinition/tddui-careplan-projet-personnalise"])
    issue = find(issues, "value", "CarePlan.identifier[0].system", "error")
    assert "identifiant-medicosocial-projetpersonnalise" in issue.diagnostics


def test_pattern_slice_missing(setup):
    obs = {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
           "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                     "code": "laboratory"}]}]}
    issue = find(check(setup, obs, (OBSERVATION,)), "required", "Observation.category", "error")
    assert "Slice 'vs'" in issue.diagnostics


# -- slicing rules and discriminators ------------------------------------------------------------

def test_closed_slicing_value_discriminator(setup):
    patient = good_patient()
    patient["identifier"].append({"system": "http://example.org/other", "value": "x"})
    issue = find(check(setup, patient), "structure", "Patient.identifier[2]", "error")
    assert "closed" in issue.diagnostics


def test_ordered_slicing(setup):
    patient = good_patient()
    patient["identifier"].reverse()
    issue = find(check(setup, patient), "structure", "Patient.identifier[1]", "error")
    assert "out of order" in issue.diagnostics


def test_exists_discriminator_closed(setup):
    patient = good_patient()
    patient["telecom"] = [{"system": "phone", "value": "0102030405"}]  # no period: matches no slice
    find(check(setup, patient), "structure", "Patient.telecom[0]", "error")


def test_open_at_end(setup):
    patient = good_patient()
    other = {"relationship": [{"text": "neighbour"}], "name": {"family": "Martin"}}
    patient["contact"].insert(0, other)
    issue = find(check(setup, patient), "structure", "Patient.contact[0]", "error")
    assert "openAtEnd" in issue.diagnostics
    patient["contact"].reverse()
    assert not errors(check(setup, patient))


def test_resolve_discriminator_is_skipped_with_information(setup):
    patient = good_patient()
    patient["link"] = [{"other": {"reference": "Patient/p2"}, "type": "seealso"}]
    issues = check(setup, patient)
    issue = find(issues, "informational", "Patient.link", "information")
    assert "resolve()" in issue.diagnostics
    assert not errors(issues)


def test_extension_slices_by_url(setup):
    patient = good_patient()
    patient["extension"].append({"url": TEST + "test-eye-colour", "valueCode": "male"})  # eyeColour 0..1
    find(check(setup, patient), "structure", "Patient.extension[1]", "error")


def test_profile_discriminator(setup):
    patient = good_patient()
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [
        {"fullUrl": "http://example.org/fhir/Patient/p1", "resource": patient}]}
    issues = check(setup, bundle, (BUNDLE,))
    assert not errors(issues), report(issues)
    del patient["gender"]  # no longer a test-patient: matches no slice
    issues = check(setup, bundle, (BUNDLE,))
    find(issues, "structure", "Bundle.entry[0]", "error")
    issue = find(issues, "required", "Bundle.entry", "error")
    assert "Slice 'patient'" in issue.diagnostics


def test_type_discriminator_on_choice():
    """FR Core body weight: value[x] sliced by type ($this), valueQuantity only."""
    structural, validator = french_validators()
    example = fr_core_package().root / "example" / "Observation-FRCoreObservationBodyWeightExample.json"
    obs = load(example)
    url = FR + "fr-core-observation-body-weight"
    assert not errors(validator.validate(obs, [url]))
    del obs["valueQuantity"]
    obs["valueString"] = "80 kg"
    find(validator.validate(obs, [url]), "structure", "Observation.valueString", "error")


# -- bindings ----------------------------------------------------------------------------------

def test_required_binding_on_every_write(setup):
    careplan = {"resourceType": "CarePlan", "status": "bogus", "intent": "plan", "subject": {"reference": "Patient/1"}}
    _, _, validator = setup
    issue = find(validator.validate(careplan), "code-invalid", "CarePlan.status", "error")
    assert "request-status" in issue.diagnostics
    careplan["status"] = "active"
    assert not errors(validator.validate(careplan))


def test_required_binding_of_a_profile(setup):
    patient = good_patient()
    patient["maritalStatus"]["coding"][0]["code"] = "ZZ"
    find(check(setup, patient), "code-invalid", "Patient.maritalStatus", "error")


def test_extensible_binding_is_a_warning(setup):
    patient = good_patient()
    patient["extension"][0]["valueCode"] = "purple"
    issues = check(setup, patient)
    find(issues, "code-invalid", "Patient.extension[0].valueCode", "warning")
    assert not errors(issues)


def test_unexpandable_value_set_is_never_an_error(setup):
    _, _, validator = setup
    doc = {"resourceType": "Binary", "contentType": "application/x-never-heard-of"}
    issues = validator.validate(doc)
    find(issues, "informational", "Binary.contentType", "information")
    assert not errors(issues)


# -- invariants --------------------------------------------------------------------------------

def test_codings_against_the_code_systems_held_here(setup):
    """Any Coding, bound or not: a code its (complete, loaded) code system lacks is an error, a
    display that is not the code's a warning; a system not held here says nothing."""
    _, _, validator = setup
    v3 = "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus"
    patient = {"resourceType": "Patient",
               "maritalStatus": {"coding": [{"system": v3, "code": "M", "display": "married"},
                                            {"system": v3, "code": "ZZ"}]},
               "identifier": [{"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203",
                                                    "code": "MR", "display": "Nope"}]}, "value": "1"}],
               "contact": [{"relationship": [{"coding": [{"system": "http://snomed.info/sct", "code": "0",
                                                          "display": "anything"}]}], "name": {"family": "D"}}]}
    issues = validator.validate(patient)
    find(issues, "code-invalid", "Patient.maritalStatus.coding[1].code", "error")
    find(issues, "invalid", "Patient.identifier[0].type.coding[0].display", "warning")
    assert not [i for i in issues if i.expression[0].startswith(("Patient.maritalStatus.coding[0]",
                                                                 "Patient.contact[0].relationship[0].coding"))]
    assert len(errors(issues)) == 1, report(issues)


def test_invariant_error_and_warning_severity(setup):
    patient = good_patient()
    del patient["name"]
    del patient["telecom"]
    issues = check(setup, patient)
    assert "test-1" in find(issues, "invariant", "Patient", "error").diagnostics
    assert "test-2" in find(issues, "invariant", "Patient", "warning").diagnostics


def test_base_invariant_on_every_write(setup):
    _, _, validator = setup
    patient = {"resourceType": "Patient", "contact": [{"gender": "male"}]}  # pat-1
    issue = find(validator.validate(patient), "invariant", "Patient.contact[0]", "error")
    assert "pat-1" in issue.diagnostics
    period = {"resourceType": "Patient", "name": [{"family": "x", "period": {"start": "2020", "end": "2019"}}]}
    assert "per-1" in find(validator.validate(period), "invariant", "Patient.name[0].period", "error").diagnostics


def test_invariant_that_crashes_fhirpathpy_is_information(setup):
    issues = check(setup, good_patient())
    issue = find(issues, "informational", "Patient", "information")
    assert "test-3" in issue.diagnostics
    assert not errors(issues)


def test_invariant_needing_resolve_is_not_evaluated(setup):
    _, _, validator = setup
    constraint = {"key": "test-4", "expression": "generalPractitioner.all(resolve() is Practitioner)"}
    assert "resolve()" in validator.invariants.skip_reason(constraint)
    assert not any("test-4" in i.diagnostics for i in check(setup, good_patient()))


def test_ext1_and_ele1_on_the_json(setup):
    _, _, validator = setup
    patient = {"resourceType": "Patient", "extension": [{"url": "http://example.org/x", "valueString": "a",
                                                         "extension": [{"url": "y", "valueCode": "b"}]}],
               "_birthDate": {"id": "only-an-id"}}
    issues = validator.validate(patient)
    assert "ext-1" in find(issues, "invariant", "Patient.extension[0]", "error").diagnostics
    assert "ele-1" in find(issues, "invariant", "Patient.birthDate", "error").diagnostics


# -- references --------------------------------------------------------------------------------

def test_reference_target_type_base(setup):
    _, _, validator = setup
    patient = {"resourceType": "Patient", "managingOrganization": {"reference": "Observation/1"}}
    issue = find(validator.validate(patient), "structure", "Patient.managingOrganization", "error")
    assert "an Observation" in issue.diagnostics and "an Organization" in issue.diagnostics


def test_reference_target_profile_of_a_profile(setup):
    patient = good_patient()
    patient["generalPractitioner"] = [{"reference": "Organization/o1"}]  # base allows it, the profile does not
    find(check(setup, patient), "structure", "Patient.generalPractitioner[0]", "error")
    _, _, validator = setup
    assert not errors(validator.validate(patient))


def vital_sign(subject: str) -> dict[str, Any]:
    return {"resourceType": "Observation", "status": "final", "code": {"text": "pulse"},
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                      "code": "vital-signs"}]}],
            "subject": {"reference": subject}, "valueQuantity": {"value": 70}}


def test_reference_target_profile_checked_on_a_local_target(setup):
    """A target in the same resource (contained) or Bundle must conform to the target profile;
    one stored elsewhere is not fetched."""
    obs = vital_sign("#p")
    obs["contained"] = [{"resourceType": "Patient", "id": "p", "name": [{"family": "Durand"}]}]  # no identifier
    issue = find(check(setup, obs, (OBSERVATION,)), "structure", "Observation.subject", "error")
    assert "test-patient" in issue.diagnostics
    obs["contained"] = [{**good_patient(), "id": "p"}]
    assert not errors(check(setup, obs, (OBSERVATION,))), report(check(setup, obs, (OBSERVATION,)))
    assert not errors(check(setup, vital_sign("Patient/elsewhere"), (OBSERVATION,)))
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [
        {"fullUrl": "urn:uuid:8f0e5c1c-0000-4000-8000-000000000001", "resource": {**good_patient(), "identifier": []}},
        {"fullUrl": "urn:uuid:8f0e5c1c-0000-4000-8000-000000000002",
         "resource": vital_sign("urn:uuid:8f0e5c1c-0000-4000-8000-000000000001")}]}
    del bundle["entry"][0]["resource"]["identifier"]
    bundle["entry"][1]["resource"]["meta"] = {"profile": [OBSERVATION]}  # entries' declared profiles count
    _, _, validator = setup
    find(validator.validate(bundle), "structure", "Bundle.entry[1].resource.subject", "error")
    bundle["entry"][0]["resource"] = good_patient()
    assert not errors(validator.validate(bundle)), report(validator.validate(bundle))


def test_reference_type_from_contained_and_bundle(setup):
    _, _, validator = setup
    patient = {"resourceType": "Patient", "contained": [{"resourceType": "Group", "id": "g", "type": "person",
                                                         "actual": True}],
               "managingOrganization": {"reference": "#g"}}
    find(validator.validate(patient), "structure", "Patient.managingOrganization", "error")
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:0b0e4a8e-0000-4000-8000-000000000001",
         "resource": {"resourceType": "Group", "type": "person", "actual": True},
         "request": {"method": "POST", "url": "Group"}},
        {"fullUrl": "urn:uuid:0b0e4a8e-0000-4000-8000-000000000002",
         "resource": {"resourceType": "Patient",
                      "managingOrganization": {"reference": "urn:uuid:0b0e4a8e-0000-4000-8000-000000000001"}},
         "request": {"method": "POST", "url": "Patient"}}]}
    find(validator.validate(bundle), "structure", "Bundle.entry[1].resource.managingOrganization", "error")


# -- type profiles and extensions ----------------------------------------------------------------

def test_datatype_profile_on_an_element(setup):
    patient = good_patient()
    del patient["name"][0]["family"]
    issue = find(check(setup, patient), "required", "Patient.name[0].family", "error")
    assert "test-human-name" in issue.diagnostics


def test_known_extension_checked_against_its_definition(setup):
    _, _, validator = setup
    patient = {"resourceType": "Patient", "extension": [
        {"url": TEST + "test-complex-extension", "extension": [{"url": "note", "valueString": "n"}]}]}
    issue = find(validator.validate(patient), "required", "Patient.extension[0].extension", "error")
    assert "colour" in issue.diagnostics
    patient["extension"][0]["extension"].append({"url": "colour", "valueString": "blue"})
    find(validator.validate(patient), "structure", "Patient.extension[0].extension[1].valueString", "error")
    patient["extension"][0]["extension"][1] = {"url": "colour", "valueCode": "blue"}
    assert not errors(validator.validate(patient))


def test_extension_context_element_paths_and_types():
    """FR Core extensions are held to their context: a resource type, a datatype (wherever it is
    used), an element path; out of it, an error at the extension."""
    _, validator = french_validators()
    insee = {"url": FR + "fr-core-address-insee-code", "valueCoding": {"system": "urn:oid:2.16.840.1.113883.2.8.2.1",
                                                                      "code": "75056"}}
    given = {"url": FR + "fr-core-patient-birth-list-given-name", "valueString": "Marie Anne"}
    patient = {"resourceType": "Patient", "address": [{"city": "Paris", "extension": [insee]}],
               "name": [{"family": "Durand", "extension": [given]}],
               "contact": [{"address": {"city": "Lyon", "extension": [insee]}}]}
    def misplaced(resource):  # (the INSEE code is checked against its value set too: not the subject here)
        return [i for i in validator.validate(resource) if i.code == "structure"]

    assert not misplaced(patient), report(misplaced(patient))
    assert not misplaced({"resourceType": "Organization", "name": "MSP", "address": [{"extension": [insee]}]})
    patient["extension"] = [insee]  # an Address extension on the Patient itself
    patient["telecom"] = [{"system": "phone", "value": "01", "extension": [given]}]  # Patient.name's on a ContactPoint
    issues = validator.validate(patient)
    issue = find(issues, "structure", "Patient.extension[0]", "error")
    assert "fr-core-address-insee-code" in issue.diagnostics and "Address" in issue.diagnostics
    find(issues, "structure", "Patient.telecom[0].extension[0]", "error")
    assert len(misplaced(patient)) == 2, report(issues)


def test_extension_context_in_nested_resources_and_primitives():
    _, validator = french_validators()
    lunar = {"url": FR + "fr-core-lunar-date", "valueString": "1970-02-30"}
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [
        {"fullUrl": "urn:uuid:1", "resource": {"resourceType": "Patient", "extension": [lunar]}},
        {"fullUrl": "urn:uuid:2", "resource": {"resourceType": "Practitioner", "extension": [lunar]}}]}
    issues = validator.validate(bundle)
    find(issues, "structure", "Bundle.entry[1].resource.extension[0]", "error")
    assert len(errors(issues)) == 1, report(issues)
    # on a primitive: Patient.birthDate's `_birthDate` is a `date`, not a Patient
    patient = {"resourceType": "Patient", "birthDate": "1970-01-01", "_birthDate": {"extension": [lunar]}}
    find(validator.validate(patient), "structure", "Patient.birthDate.extension[0]", "error")
    # a core extension out of its context is only a warning: the R4 publication itself does it
    birth_place = {"url": "http://hl7.org/fhir/StructureDefinition/patient-birthPlace", "valueAddress": {"city": "Paris"}}
    issues = validator.validate({"resourceType": "Practitioner", "extension": [birth_place]})
    find(issues, "structure", "Practitioner.extension[0]", "warning")
    assert not errors(issues)


def test_unknown_extension_is_a_warning(setup):
    _, _, validator = setup
    patient = {"resourceType": "Patient", "extension": [{"url": "http://example.org/unknown", "valueString": "x"}],
               "birthDate": "2000-01-01", "_birthDate": {"extension": [{"url": "http://example.org/unknown2",
                                                                         "valueString": "y"}]}}
    issues = validator.validate(patient)
    find(issues, "not-found", "Patient.extension[0]", "warning")
    find(issues, "not-found", "Patient.birthDate.extension[0]", "warning")
    assert not errors(issues)


def test_unknown_profile_is_one_warning(setup):
    _, _, validator = setup
    issues = validator.validate({"resourceType": "Patient"}, ["http://example.org/nope"])
    assert [(i.severity, i.code) for i in issues if "nope" in i.diagnostics] == [("warning", "not-found")]


def test_profile_of_another_type(setup):
    _, _, validator = setup
    issue = find(validator.validate({"resourceType": "Patient"}, [OBSERVATION]), "invalid", "Patient", "error")
    assert "Observation" in issue.diagnostics


# -- primitive rules ---------------------------------------------------------------------------

def test_max_length(setup):
    patient = good_patient()
    patient["identifier"][0]["value"] = "A123456789"
    issue = find(check(setup, patient), "value", "Patient.identifier[0].value", "error")
    assert "maximum length 8" in issue.diagnostics


def test_regex(setup):
    patient = good_patient()
    patient["identifier"][1]["value"] = "123456789"
    find(check(setup, patient), "value", "Patient.identifier[1].value", "error")


def test_min_and_max_value(setup):
    patient = good_patient()
    patient["birthDate"] = "1850-01-01"
    find(check(setup, patient), "value", "Patient.birthDate", "error")
    obs = {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
           "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                     "code": "vital-signs"}]}], "valueQuantity": {"value": 600}}
    find(check(setup, obs, (OBSERVATION,)), "value", "Observation.valueQuantity.value", "error")


# -- French specifics --------------------------------------------------------------------------

def test_fr_core_1_and_2():
    structural, validator = french_validators()
    patient = load(fr_core_package().root / "example" / "Patient-FRCorePatientExample.json")
    url = FR + "fr-core-patient-ins"
    assert not errors(validator.validate(patient, [url]))
    two = copy.deepcopy(patient)
    two["identifier"].append({"use": "official", "system": "urn:oid:1.2.250.1.213.1.4.9", "value": "1"})
    issues = validator.validate(two, [url])
    assert "fr-core-2" in find(issues, "invariant", "Patient", "error").diagnostics
    assert not any("fr-core-1" in i.diagnostics for i in issues)
    none = copy.deepcopy(patient)
    none["identifier"][0]["use"] = "usual"
    issues = validator.validate(none, [url])
    failed = {key for key in ("fr-core-1", "fr-core-2") for i in errors(issues) if key in i.diagnostics}
    assert failed == {"fr-core-1", "fr-core-2"}, report(issues)


def test_fr_core_invariants_are_evaluated_not_skipped():
    _, validator = french_validators()
    profile = validator.profiles.get(FR + "fr-core-patient-ins")
    constraints = {c["key"]: c for c in profile.root.constraints}
    for key in ("fr-core-1", "fr-core-2", "fr-core-3"):
        assert validator.invariants.skip_reason(constraints[key]) is None


def tddui_careplan() -> dict[str, Any]:
    def discriminator(code: str) -> dict[str, Any]:
        return {"url": TDDUI + "StructureDefinition/tddui-discriminator", "valueCodeableConcept": {
            "coding": [{"system": TDDUI + "CodeSystem/tddui-discriminator", "code": code}]}}
    return {"resourceType": "CarePlan", "id": "pp1",
            "identifier": [{"system": "https://identifiant-medicosocial-projetpersonnalise.esante.gouv.fr",
                            "value": "3480787529/123456789-PPER-1234"}],
            "status": "active", "intent": "plan", "title": "Projet personnalisé",
            "subject": {"reference": "Patient/p1"},
            "supportingInfo": [{"extension": [discriminator("accordStructure")], "reference": "Consent/c1"}]}


def test_tddui_profile_from_a_generated_snapshot():
    structural, validator = french_validators()
    url = TDDUI + "StructureDefinition/tddui-careplan-projet-personnalise"
    careplan = tddui_careplan()
    assert structural.validate(careplan) == []
    assert not errors(validator.validate(careplan, [url]))
    assert validator.profiles.snapshots.is_generated(url)
    careplan["identifier"].append({"system": "https://identifiant-medicosocial-projetpersonnalise.esante.gouv.fr",
                                   "value": "2"})
    careplan["supportingInfo"][0]["extension"][0]["valueCodeableConcept"]["coding"][0]["code"] = "accordUsager"
    issues = validator.validate(careplan, [url])
    find(issues, "structure", "CarePlan.identifier[1]", "error")  # identifier 1..1
    assert "accordStructure" in find(issues, "required", "CarePlan.supportingInfo", "error").diagnostics


def test_structural_validator_on_a_differential_only_profile():
    """model.py compiles tddui profiles from generated snapshots too; a primitive whose
    extensions the profile slices (CarePlan.status) stays a JSON primitive."""
    structural, _ = french_validators()
    careplan = tddui_careplan()
    careplan["_status"] = {"extension": [{"url": TDDUI + "StructureDefinition/tddui-status-author",
                                          "valueReference": {"reference": "Practitioner/1"}}]}
    url = TDDUI + "StructureDefinition/tddui-careplan-projet-personnalise"
    assert structural.validate(careplan, definition=url) == []
    del careplan["title"]
    assert [(i.code, i.expression) for i in structural.validate(careplan, definition=url)] == [
        ("required", ["CarePlan.title"])]
