"""interactions/references.py: links between the entries of a transaction rewritten to the
`Type/id` the server assigns, by element type (Reference.reference, uri, url, narrative links;
not canonical, oid, uuid, string); conditional references resolved by the function handed in.
On the R4 element models, without a database."""

from __future__ import annotations

import copy

import pytest

from fhir_server.definitions.model import models_for
from fhir_server.definitions.registry import Definitions
from fhir_server.errors import FhirError
from fhir_server.interactions.references import base_of, rewrite
from tests import packages

UUID = "urn:uuid:0c3151bd-1cbf-4d64-b04d-cd9187a4c6e0"
BINARY = "urn:uuid:7d3e8a0c-5d9b-4b8e-9a55-0f1b7a1f3c11"
IDS = {
    UUID: "Patient/p1",
    BINARY: "Binary/b1",
    "urn:oid:1.2.3.4": "Practitioner/d1",
    "http://example.org/fhir/Patient/abc": "Patient/p2",
    "http://example.org/fhir/Organization/o1": "Organization/o9",
    "http://example.org/fhir/Binary/x": "Binary/x",
    "http://example.org/fhir/Questionnaire/q": "Questionnaire/q",
    "http://example.org/fhir/CodeSystem/cs": "CodeSystem/cs",
}


@pytest.fixture(scope="module")
def models():
    return models_for(Definitions([packages.r4_core()]))


@pytest.fixture
def do(models):
    def run(value, base=None, conditional=None, ids=IDS, canonical=()):
        """`value` rewritten: a resource, or the elements of an Observation."""
        if "resourceType" in value:
            return rewrite(value, models, ids, base, conditional or no_conditional, canonical)
        out = rewrite({"resourceType": "Observation", **value}, models, ids, base, conditional or no_conditional,
                      canonical)
        return {k: v for k, v in out.items() if k != "resourceType"}
    return run


def no_conditional(ref):
    raise AssertionError(f"unexpected conditional reference {ref}")


def test_urn_uuid_reference_is_replaced(do):
    assert do({"subject": {"reference": UUID}}) == {"subject": {"reference": "Patient/p1"}}


def test_urn_oid_reference_is_replaced(do):
    assert do({"performer": [{"reference": "urn:oid:1.2.3.4"}]}) == {"performer": [{"reference": "Practitioner/d1"}]}


def test_nested_references_in_lists_and_backbone_elements(do):
    plan = {"resourceType": "CarePlan", "status": "active", "intent": "plan", "subject": {"reference": UUID},
            "activity": [{"detail": {"status": "scheduled", "performer": [{"reference": "urn:oid:1.2.3.4"}]}}]}
    out = do(plan)
    assert out["subject"] == {"reference": "Patient/p1"}
    assert out["activity"] == [{"detail": {"status": "scheduled", "performer": [{"reference": "Practitioner/d1"}]}}]


def test_references_in_extensions(do):
    value = {"extension": [{"url": "http://ex.org/x", "valueReference": {"reference": UUID}}]}
    assert do(value)["extension"][0]["valueReference"] == {"reference": "Patient/p1"}


def test_references_inside_contained_resources(do):
    value = {"resourceType": "MedicationRequest",
             "contained": [{"resourceType": "Provenance", "id": "p", "target": [{"reference": UUID}]}],
             "subject": {"reference": "#p"}}
    out = do(value)
    assert out["contained"][0]["target"] == [{"reference": "Patient/p1"}]
    assert out["subject"] == {"reference": "#p"}  # a local reference stays


def test_other_fields_of_the_reference_are_kept(do):
    out = do({"subject": {"reference": UUID, "display": "Marie", "type": "Patient"}})
    assert out == {"subject": {"reference": "Patient/p1", "display": "Marie", "type": "Patient"}}


def test_absolute_full_url_reference_is_replaced(do):
    assert do({"subject": {"reference": "http://example.org/fhir/Patient/abc"}}) == {
        "subject": {"reference": "Patient/p2"}}


def test_relative_reference_resolved_against_the_entry_base(do):
    value = {"resourceType": "Patient", "managingOrganization": {"reference": "Organization/o1"}}
    assert do(value, base="http://example.org/fhir")["managingOrganization"] == {"reference": "Organization/o9"}


def test_relative_reference_without_base_is_untouched(do):
    value = {"resourceType": "Patient", "managingOrganization": {"reference": "Organization/o1"}}
    assert do(value) == value


def test_relative_reference_to_no_entry_is_untouched(do):
    value = {"subject": {"reference": "Patient/elsewhere"}}
    assert do(value, base="http://example.org/fhir") == value


def test_conditional_reference_resolved_by_the_function_handed_in(do):
    asked = []

    def resolve(ref):
        asked.append(ref)
        return "Patient/found"

    value = {"subject": {"reference": "Patient?identifier=http://ex.org|1"}}
    assert do(value, conditional=resolve) == {"subject": {"reference": "Patient/found"}}
    assert asked == ["Patient?identifier=http://ex.org|1"]


def test_conditional_reference_errors_come_through(do):
    def resolve(ref):
        raise FhirError(412, "two matches")

    with pytest.raises(FhirError) as raised:
        do({"subject": {"reference": "Patient?name=x"}}, conditional=resolve)
    assert raised.value.status == 412


def test_entry_reference_wins_over_conditional_lookup(do):
    ids = {"Patient?identifier=1": "Patient/listed"}
    assert do({"subject": {"reference": "Patient?identifier=1"}}, ids=ids) == {
        "subject": {"reference": "Patient/listed"}}


def test_unknown_urn_uuid_is_a_400(do):
    with pytest.raises(FhirError) as raised:
        do({"subject": {"reference": "urn:uuid:00000000-0000-0000-0000-000000000000"}})
    assert raised.value.status == 400
    assert raised.value.issues[0].code == "not-found"


def test_unknown_urn_oid_is_a_400(do):
    with pytest.raises(FhirError) as raised:
        do({"subject": {"reference": "urn:oid:9.9"}})
    assert raised.value.status == 400


def test_other_references_and_values_are_untouched(do):
    value = {"subject": {"reference": "Patient/123"}, "focus": [{"reference": "http://other.org/fhir/Patient/1"}],
             "note": [{"text": UUID}], "identifier": [{"value": "urn:uuid:not-a-reference"}],
             "valueInteger": 3, "status": "final", "reference": 7}
    assert do(value, base="http://example.org/fhir") == value


def test_lowercase_type_with_question_mark_is_not_conditional(do):
    value = {"subject": {"reference": "patient?x=1"}}
    assert do(value) == value


def test_input_is_not_mutated(do):
    value = {"resourceType": "Observation", "subject": {"reference": UUID},
             "contained": [{"resourceType": "Observation", "id": "c", "performer": [{"reference": UUID}]}],
             "content": [{"attachment": {"url": BINARY}}]}
    before = copy.deepcopy(value)
    out = do(value)
    assert value == before
    assert out is not value and out["contained"] is not value["contained"]
    assert out["contained"][0]["performer"] == [{"reference": "Patient/p1"}]


def test_an_unknown_resource_type_is_copied_untouched(do):
    value = {"resourceType": "NoSuchThing", "subject": {"reference": UUID}}
    out = do(value)
    assert out == value and out is not value


# -- uri and url elements, narrative links; canonical, oid, uuid, string left alone -----------------
def _document(**attachment):
    return {"resourceType": "DocumentReference", "status": "current", "content": [{"attachment": attachment}]}


def test_attachment_url_naming_an_entry_is_replaced(do):
    assert do(_document(url=BINARY))["content"][0]["attachment"] == {"url": "Binary/b1"}


def test_attachment_url_absolute_or_relative_to_the_entry_base(do):
    assert do(_document(url="http://example.org/fhir/Binary/x"))["content"][0]["attachment"] == {"url": "Binary/x"}
    out = do(_document(url="Binary/x"), base="http://example.org/fhir")
    assert out["content"][0]["attachment"] == {"url": "Binary/x"}
    out = do(_document(url="http://elsewhere.org/Binary/x"), base="http://example.org/fhir")
    assert out["content"][0]["attachment"] == {"url": "http://elsewhere.org/Binary/x"}


def test_a_uri_naming_no_entry_is_kept_and_no_error(do):
    value = {"extension": [{"url": "http://ex.org/u", "valueUri": "urn:uuid:00000000-0000-0000-0000-000000000000"}]}
    assert do(value) == value


def test_extension_uri_and_url_values_are_replaced(do):
    value = {"extension": [{"url": "http://ex.org/u", "valueUri": UUID},
                           {"url": "http://ex.org/nested", "extension": [{"url": "inner", "valueUrl": BINARY}]}]}
    out = do(value)
    assert out["extension"][0] == {"url": "http://ex.org/u", "valueUri": "Patient/p1"}
    assert out["extension"][1]["extension"][0] == {"url": "inner", "valueUrl": "Binary/b1"}


@pytest.mark.parametrize("element", [
    {"valueCanonical": "http://example.org/fhir/Questionnaire/q"},  # canonical: not replaced (http.html#trules)
    {"valueOid": "urn:oid:1.2.3.4"},  # a Type/id is no oid
    {"valueUuid": UUID},  # nor a uuid
    {"valueString": UUID},  # a string is text
    {"valueMarkdown": UUID},
    {"valueCode": "Patient/abc"},
])
def test_other_typed_extension_values_are_kept(do, element):
    value = {"extension": [{"url": "http://ex.org/u", **element}]}
    assert do(value) == value


def test_extension_url_is_a_name_not_a_link(do):
    value = {"extension": [{"url": UUID, "valueBoolean": True}]}  # System type: never replaced
    assert do(value) == value


def test_strings_equal_to_a_full_url_are_kept(do):
    value = {"note": [{"text": UUID}], "identifier": [{"system": "urn:ietf:rfc:3986", "value": UUID}],
             "valueString": BINARY, "id": "x"}
    assert do(value) == value


def test_canonical_elements_are_kept(do):
    plan = {"resourceType": "PlanDefinition", "status": "draft",
            "action": [{"definitionCanonical": "http://example.org/fhir/Questionnaire/q"}]}
    assert do(plan) == plan
    answers = {"resourceType": "QuestionnaireResponse", "status": "completed",
               "questionnaire": "http://example.org/fhir/Questionnaire/q|1.0"}
    assert do(answers) == answers
    answers["questionnaire"] = "http://example.org/fhir/Questionnaire/q"
    assert do(answers) == answers


def test_a_canonical_url_of_a_written_resource_is_a_name_not_a_link(do):
    """fullUrl = url, common for conformance resources: neither the CodeSystem's own url nor the
    Coding.system naming it becomes `CodeSystem/cs`; a reference to it still does."""
    cs = "http://example.org/fhir/CodeSystem/cs"
    code_system = {"resourceType": "CodeSystem", "url": cs, "status": "draft", "content": "complete"}
    assert do(code_system, canonical={cs}) == code_system
    value = {"code": {"coding": [{"system": cs, "code": "a"}]}, "focus": [{"reference": cs}]}
    out = do(value, canonical={cs})
    assert out["code"] == value["code"]
    assert out["focus"] == [{"reference": "CodeSystem/cs"}]
    relative = do(_document(url="CodeSystem/cs"), base="http://example.org/fhir", canonical={cs})
    assert relative["content"][0]["attachment"] == {"url": "CodeSystem/cs"}  # kept as written


def test_uri_elements_of_contained_resources_and_backbones(do):
    value = {"resourceType": "DiagnosticReport", "status": "final", "code": {"text": "x"},
             "presentedForm": [{"url": BINARY}],
             "contained": [_document(url=BINARY) | {"id": "d"},
                           {"resourceType": "Endpoint", "id": "e", "status": "active",
                            "connectionType": {"code": "hl7-fhir-rest"}, "payloadType": [{"text": "x"}],
                            "address": "http://example.org/fhir/Binary/x"}]}
    out = do(value)
    assert out["presentedForm"] == [{"url": "Binary/b1"}]
    assert out["contained"][0]["content"][0]["attachment"]["url"] == "Binary/b1"
    assert out["contained"][1]["address"] == "Binary/x"


def test_extensions_of_a_primitive_are_walked(do):
    value = {"status": "final", "_status": {"extension": [{"url": "http://ex.org/w", "valueReference": {
        "reference": UUID}}, {"url": "http://ex.org/u", "valueUri": BINARY}]},
             "category": [{"coding": [{"code": "a", "_code": {"id": "c1"}}]}]}
    out = do(value)
    assert out["_status"]["extension"] == [{"url": "http://ex.org/w", "valueReference": {"reference": "Patient/p1"}},
                                           {"url": "http://ex.org/u", "valueUri": "Binary/b1"}]
    assert out["category"] == value["category"]


def test_narrative_links_and_images_are_replaced_text_is_not(do):
    div = (f'<div xmlns="http://www.w3.org/1999/xhtml"><p>{UUID}</p><a href="{UUID}">Marie</a>'
           f"<img alt='scan' src='{BINARY}'/><a title=\"{UUID}\" href=\"http://other.org/x\">y</a></div>")
    out = do({"text": {"status": "generated", "div": div}})["text"]["div"]
    assert out == ('<div xmlns="http://www.w3.org/1999/xhtml"><p>' + UUID + '</p><a href="Patient/p1">Marie</a>'
                   "<img alt='scan' src='Binary/b1'/><a title=\"" + UUID + '" href="http://other.org/x">y</a></div>')


def test_a_bundle_resource_keeps_its_own_entries_references(do):
    """A document stored by a transaction: its urn:uuid references are to its own entries
    (bundle.html#references), neither rewritten nor refused; its other elements are ours."""
    inner = "urn:uuid:11111111-2222-3333-4444-555555555555"
    document = {"resourceType": "Bundle", "type": "document",
                "entry": [{"fullUrl": "urn:uuid:aaaaaaaa-2222-3333-4444-555555555555",
                           "resource": {"resourceType": "Composition", "status": "final", "type": {"text": "x"},
                                        "date": "2024-01-01", "title": "t", "author": [{"reference": UUID}],
                                        "subject": {"reference": inner}}},
                          {"fullUrl": inner, "resource": {"resourceType": "Patient"}}],
                "signature": [{"type": [{"code": "1.2.840.10065.1.12.1.1"}], "when": "2024-01-01T00:00:00Z",
                               "who": {"reference": UUID}}]}
    out = do(document)
    assert out["entry"] == document["entry"]
    assert out["signature"][0]["who"] == {"reference": "Patient/p1"}


def test_resources_inside_parameters_are_walked(do):
    value = {"resourceType": "Parameters", "parameter": [
        {"name": "doc", "resource": _document(url=BINARY)}, {"name": "u", "valueUri": UUID}]}
    out = do(value)
    assert out["parameter"][0]["resource"]["content"][0]["attachment"] == {"url": "Binary/b1"}
    assert out["parameter"][1] == {"name": "u", "valueUri": "Patient/p1"}


# -- base_of ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("full_url, base", [
    ("http://example.org/fhir/Patient/1", "http://example.org/fhir"),
    ("https://x.org/a/b/fhir/Observation/a-1.2", "https://x.org/a/b/fhir"),
    ("urn:uuid:0c3151bd-1cbf-4d64-b04d-cd9187a4c6e0", None),
    ("Patient/1", None),
    ("http://example.org/fhir/patient/1", None),
    ("http://example.org/fhir/Patient", None),
    ("", None),
    (None, None),
])
def test_base_of(full_url, base):
    assert base_of(full_url) == base
