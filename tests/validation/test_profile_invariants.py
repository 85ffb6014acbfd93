"""Invariant evaluation: the shortcuts taken for speed give fhirpathpy's answers, the
expressions fhirpathpy cannot evaluate are skipped with a reason, and nothing the engine does
can fail a resource by itself."""

from __future__ import annotations

import pytest

from fhir_server.errors import Issue
from fhir_server.validation.invariants import Invariants
from fhir_server.validation.profile import ProfileValidator

PATIENT = {"resourceType": "Patient", "id": "p", "active": True,
           "name": [{"family": "Durand", "given": ["Anne"], "_given": [{"extension": [
               {"url": "http://example.org/x", "valueCode": "a"}]}]}],
           "_birthDate": {"extension": [{"url": "http://example.org/y", "valueString": "unknown"}]},
           "identifier": [{"use": "official", "system": "urn:a", "value": "1"},
                          {"use": "usual", "system": "urn:b", "value": "2"}],
           "extension": [{"url": "http://example.org/z", "extension": [
               {"url": "status", "valueCoding": {"code": "VALI"}}]}]}

EXPRESSIONS = [
    "name.exists()", "name.given.exists()", "birthDate.exists()", "birthDate.hasValue()",
    "birthDate.hasValue().not()", "gender.empty()", "identifier.count() = 2", "identifier.where(use = 'official').exists()",
    "identifier.where(use = 'official').count() = 1", "identifier.exists(use = 'secondary')",
    "extension('http://example.org/z').extension('status').value.exists(code = 'VALI')",
    "extension('http://example.org/z').extension('status').value.exists(code = 'VALI') implies identifier.exists()",
    "name.family.startsWith('Du')", "name.family.matches('^[A-Z][a-z]+$')", "name.family.length() > 3",
    "active.not()", "deceased.empty() or deceased.exists()", "(name.exists() or gender.exists()) and active",
    "contained.where(id = 'x').empty()", "identifier.where(system.startsWith('urn:')).count() = 2",
]


@pytest.mark.parametrize("expression", EXPRESSIONS)
def test_shortcuts_agree_with_fhirpathpy(expression):
    compiled = Invariants().compiled(expression)
    assert compiled.skip is None
    variables = {"resource": PATIENT, "rootResource": PATIENT}
    assert compiled.failed(PATIENT, None, "Patient", variables) == compiled.failed_plainly(
        PATIENT, None, "Patient", variables)


def test_dom_3_contained_resources_must_be_referenced(definitions):
    validator = ProfileValidator(definitions)
    patient = {"resourceType": "Patient", "contained": [{"resourceType": "Organization", "id": "o", "name": "O"}],
               "managingOrganization": {"reference": "#o"}}
    assert not [i for i in validator.validate(patient) if i.severity == "error"]
    patient["managingOrganization"] = {"reference": "Organization/1"}
    issues = validator.validate(patient)
    assert any("dom-3" in i.diagnostics and i.severity == "error" for i in issues)


@pytest.mark.parametrize("expression, reason", [
    ("htmlChecks()", "htmlChecks()"),
    ("participant.all(member.resolve() is Patient)", "resolve()"),
    ("operator = 'exists' implies (answer is Boolean)", "System type Boolean"),
    ("code.memberOf('http://example.org/vs')", "memberOf()"),
])
def test_skipped_expressions_say_why(expression, reason):
    invariants = Invariants()
    assert reason in invariants.skip_reason({"key": "x", "expression": expression})
    issues: list[Issue] = []
    invariants.check({"key": "x", "expression": expression}, PATIENT, None, "Patient", PATIENT, PATIENT,
                     "Patient", issues)
    assert issues == []


def test_engine_failures_are_information():
    issues: list[Issue] = []
    Invariants().check({"key": "x", "severity": "error", "expression": "birthDate + 'x' = 'y' and name.exists()"},
                       {"resourceType": "Patient", "birthDate": "2000-01-01"}, None, "Patient", {}, {},
                       "Patient", issues)
    assert [(i.severity, i.code) for i in issues] == [("information", "informational")]


def test_a_validator_failure_is_a_warning_not_an_exception(definitions, monkeypatch):
    validator = ProfileValidator(definitions)

    def broken(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(validator, "_resource", broken)
    issues = validator.validate({"resourceType": "Patient"})
    assert [(i.severity, i.code) for i in issues] == [("warning", "exception")]
