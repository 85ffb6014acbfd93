"""SMART scopes, v1 and v2, parsed into what they allow."""

from __future__ import annotations

import pytest

from fhir_server.security.scopes import Scopes, parse_scope


@pytest.mark.parametrize("text, letters", [
    ("user/Observation.read", "rs"), ("user/Observation.write", "cud"), ("user/Observation.*", "cruds"),
    ("system/*.cruds", "cruds"), ("user/Patient.rs", "rs"), ("system/Task.cu", "cu"), ("user/*.d", "d"),
])
def test_letters(text, letters):
    assert parse_scope(text).letters == frozenset(letters)


@pytest.mark.parametrize("text", ["openid", "fhirUser", "launch/patient", "user/Observation.sr", "user/Observation.rr",
                                  "user/observation.read", "user/Observation", "admin/*.*", "user/*.x", ""])
def test_what_is_not_a_resource_scope(text):
    assert parse_scope(text) is None


def test_granular_criteria_are_kept():
    scope = parse_scope("patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory")
    assert scope.context == "patient" and scope.type == "Observation"
    assert scope.criteria == (("category", "http://terminology.hl7.org/CodeSystem/observation-category|laboratory"),)


def test_what_a_set_allows():
    scopes = Scopes.parse("openid fhirUser user/Patient.rs system/Observation.c user/*.s")
    assert scopes.allows("Patient", "r") and scopes.allows("Observation", "c") and scopes.allows("Encounter", "s")
    assert not scopes.allows("Encounter", "r") and not scopes.allows("Patient", "d")
    assert not scopes.allows("*", "r")
    # a wildcard does not reach the audit trail, so it does not cover "every type" either
    assert not scopes.allows("AuditEvent", "s") and not scopes.allows("*", "s")
    with_audit = Scopes.parse("user/*.s user/AuditEvent.s")
    assert with_audit.allows("AuditEvent", "s") and with_audit.allows("*", "s")


def test_patient_scopes_need_the_patient_claim():
    without = Scopes.parse("patient/Observation.rs user/Patient.rs?gender=female")
    assert not without.allows("Observation", "r") and without.allows("Patient", "r")
    assert [s.type for s in without.unusable] == ["Observation"]
    within = Scopes.parse("patient/Observation.rs user/Observation.c", patient=True)
    assert within.allows("Observation", "s") and not within.unusable
    assert [s.context for s in within.covering("Observation", "rs")] == ["patient"]
    assert [s.context for s in within.covering("Observation", "c")] == ["user"]


def test_open_mode_allows_everything():
    assert Scopes.all().allows("Observation", "d") and Scopes.all().allows("*", "s")
