"""The native path of invariants: member navigation on the JSON, choices by their typed name."""

from __future__ import annotations

from fhir_server.validation.invariant_native import navigate


def test_a_choice_is_found_by_its_typed_name():
    assert navigate([{"valueString": "a"}], "value") == ["a"]
    assert navigate([{"onsetPeriod": {"start": "2026"}}], "onset") == [{"start": "2026"}]
    assert navigate([{"_valueBoolean": {"id": "x"}}], "value") is not None


def test_an_element_whose_name_extends_another_is_not_a_choice_of_it():
    # CapabilityStatement cpb-16: `implementation.exists()` must not see `implementationGuide`
    assert navigate([{"implementationGuide": ["http://x"]}], "implementation") == []
    assert navigate([{"statusReason": {"text": "x"}}], "status") == []
