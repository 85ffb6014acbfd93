"""interactions/references.py: references between the entries of a transaction rewritten to the
`Type/id` the server assigns; conditional references resolved by the function handed in."""

from __future__ import annotations

import copy

import pytest

from fhir_server.errors import FhirError
from fhir_server.interactions.references import base_of, rewrite

UUID = "urn:uuid:0c3151bd-1cbf-4d64-b04d-cd9187a4c6e0"
IDS = {
    UUID: "Patient/p1",
    "urn:oid:1.2.3.4": "Practitioner/d1",
    "http://example.org/fhir/Patient/abc": "Patient/p2",
    "http://example.org/fhir/Organization/o1": "Organization/o9",
}


def no_conditional(ref):
    raise AssertionError(f"unexpected conditional reference {ref}")


def do(value, base=None, conditional=no_conditional, ids=IDS):
    return rewrite(value, ids, base, conditional)


def test_urn_uuid_reference_is_replaced():
    assert do({"subject": {"reference": UUID}}) == {"subject": {"reference": "Patient/p1"}}


def test_urn_oid_reference_is_replaced():
    assert do({"performer": [{"reference": "urn:oid:1.2.3.4"}]}) == {"performer": [{"reference": "Practitioner/d1"}]}


def test_nested_references_in_lists_and_backbone_elements():
    obs = {"resourceType": "Observation", "performer": [{"reference": UUID}, {"reference": "urn:oid:1.2.3.4"}],
           "component": [{"valueReference": {"reference": UUID}}]}
    out = do(obs)
    assert out["performer"] == [{"reference": "Patient/p1"}, {"reference": "Practitioner/d1"}]
    assert out["component"] == [{"valueReference": {"reference": "Patient/p1"}}]


def test_references_in_extensions():
    value = {"extension": [{"url": "http://ex.org/x", "valueReference": {"reference": UUID}}]}
    assert do(value)["extension"][0]["valueReference"] == {"reference": "Patient/p1"}


def test_references_inside_contained_resources():
    value = {"resourceType": "MedicationRequest",
             "contained": [{"resourceType": "Provenance", "id": "p", "target": [{"reference": UUID}]}],
             "subject": {"reference": "#p"}}
    out = do(value)
    assert out["contained"][0]["target"] == [{"reference": "Patient/p1"}]
    assert out["subject"] == {"reference": "#p"}  # a local reference stays


def test_other_fields_of_the_reference_are_kept():
    out = do({"subject": {"reference": UUID, "display": "Marie", "type": "Patient"}})
    assert out == {"subject": {"reference": "Patient/p1", "display": "Marie", "type": "Patient"}}


def test_absolute_full_url_reference_is_replaced():
    assert do({"subject": {"reference": "http://example.org/fhir/Patient/abc"}}) == {
        "subject": {"reference": "Patient/p2"}}


def test_relative_reference_resolved_against_the_entry_base():
    value = {"managingOrganization": {"reference": "Organization/o1"}}
    assert do(value, base="http://example.org/fhir") == {"managingOrganization": {"reference": "Organization/o9"}}


def test_relative_reference_without_base_is_untouched():
    value = {"managingOrganization": {"reference": "Organization/o1"}}
    assert do(value) == value


def test_relative_reference_to_no_entry_is_untouched():
    value = {"subject": {"reference": "Patient/elsewhere"}}
    assert do(value, base="http://example.org/fhir") == value


def test_conditional_reference_resolved_by_the_function_handed_in():
    asked = []

    def resolve(ref):
        asked.append(ref)
        return "Patient/found"

    value = {"subject": {"reference": "Patient?identifier=http://ex.org|1"}}
    assert do(value, conditional=resolve) == {"subject": {"reference": "Patient/found"}}
    assert asked == ["Patient?identifier=http://ex.org|1"]


def test_conditional_reference_errors_come_through():
    def resolve(ref):
        raise FhirError(412, "two matches")

    with pytest.raises(FhirError) as raised:
        do({"subject": {"reference": "Patient?name=x"}}, conditional=resolve)
    assert raised.value.status == 412


def test_entry_reference_wins_over_conditional_lookup():
    ids = {"Patient?identifier=1": "Patient/listed"}
    assert do({"subject": {"reference": "Patient?identifier=1"}}, ids=ids) == {
        "subject": {"reference": "Patient/listed"}}


def test_unknown_urn_uuid_is_a_400():
    with pytest.raises(FhirError) as raised:
        do({"subject": {"reference": "urn:uuid:00000000-0000-0000-0000-000000000000"}})
    assert raised.value.status == 400
    assert raised.value.issues[0].code == "not-found"


def test_unknown_urn_oid_is_a_400():
    with pytest.raises(FhirError) as raised:
        do({"subject": {"reference": "urn:oid:9.9"}})
    assert raised.value.status == 400


def test_other_references_and_values_are_untouched():
    value = {"subject": {"reference": "Patient/123"}, "focus": [{"reference": "http://other.org/fhir/Patient/1"}],
             "note": [{"text": UUID}], "identifier": [{"value": "urn:uuid:not-a-reference"}],
             "valueInteger": 3, "status": "final", "reference": 7}
    assert do(value, base="http://example.org/fhir") == value


def test_lowercase_type_with_question_mark_is_not_conditional():
    value = {"subject": {"reference": "patient?x=1"}}
    assert do(value) == value


def test_input_is_not_mutated():
    value = {"subject": {"reference": UUID}, "contained": [{"performer": [{"reference": UUID}]}]}
    before = copy.deepcopy(value)
    out = do(value)
    assert value == before
    assert out is not value and out["contained"] is not value["contained"]


def test_scalars_and_lists_pass_through():
    assert do("text") == "text"
    assert do(None) is None
    assert do([{"reference": UUID}, 1]) == [{"reference": "Patient/p1"}, 1]


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
