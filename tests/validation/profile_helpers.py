"""Shared set-up of the profile validation tests (no server needed).

The definitions are the R4 core from the tests' package cache plus the French packages, found
as tests/packages.py says (FHIR_TEST_PACKAGES, `../shared/fhir-packages`…): FR Core 2.2.0 (with
snapshots) and ans.fhir.fr.tddui 2.2.0 (the differential-only rebuild of `../shared`). Without
them, the tests that need them are skipped (they fail under CI=true).
`test_package()` writes a small package of differential-only profiles made for these tests,
one rule each, so that every rule of the validator is exercised on a definition whose snapshot
the validator had to generate itself.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import pytest

from fhir_server import jsonio
from fhir_server.definitions.loading import load_definitions
from fhir_server.definitions.packages import Package
from fhir_server.definitions.registry import Definitions
from fhir_server.errors import Issue
from fhir_server.terminology import Terminology
from fhir_server.validation.profile import ProfileValidator
from fhir_server.validation.structural import StructuralValidator
from tests import packages

FR = "https://hl7.fr/ig/fhir/core/StructureDefinition/"
TDDUI = "https://interop.esante.gouv.fr/ig/fhir/tddui/"
TEST = "http://example.org/fhir/StructureDefinition/"


def french_definitions() -> Definitions:
    """R4 + FR Core + tddui; skips the calling test when a package is missing (fails it under CI=true)."""
    return _french_definitions(packages.fr_core(), packages.tddui())


@functools.cache
def _french_definitions(fr_core: Path, tddui: Path) -> Definitions:
    packages.r4_core()
    return load_definitions(packages.package_cache(), [str(fr_core), str(tddui)])


@functools.cache
def french_validators() -> tuple[StructuralValidator, ProfileValidator]:
    definitions = french_definitions()
    return StructuralValidator(definitions), ProfileValidator(definitions, Terminology(definitions))


def fr_core_package() -> Package:
    return next(p for p in french_definitions().packages if p.name == "hl7.fhir.fr.core")


def fr_core_examples() -> list[Path]:
    return sorted((fr_core_package().root / "example").glob("*.json"))


def fr_core_example_params() -> list:
    """For parametrize (at collection, where a skip is not allowed): the examples of FR Core, or one
    placeholder whose test skips (fails under CI=true) saying how to provide the package."""
    if not (packages.available(*packages.FR_CORE) and packages.available(*packages.TDDUI)):
        return [pytest.param(None, id="french-packages-missing")]
    return fr_core_examples()


def load(path: Path) -> dict[str, Any]:
    return jsonio.loads(path.read_bytes())


def errors(issues: list[Issue]) -> list[Issue]:
    return [i for i in issues if i.severity in ("error", "fatal")]


def report(issues: list[Issue]) -> str:
    return "\n".join(f"  {i.severity} {i.code} at {', '.join(i.expression)}: {i.diagnostics}" for i in issues)


def find(issues: list[Issue], code: str, expression: str, severity: str | None = None) -> Issue:
    """The issue with this code at this expression (fails the test, listing all, otherwise)."""
    for issue in issues:
        if issue.code == code and expression in issue.expression and (severity is None or issue.severity == severity):
            return issue
    raise AssertionError(f"no {severity or ''} {code!r} issue at {expression}; got:\n{report(issues)}")


# -- a package of differential-only test profiles ------------------------------------------------

def _sd(id_: str, type_: str, base: str, elements: list[dict[str, Any]], kind: str = "resource",
        **extra: Any) -> dict[str, Any]:
    sd = {"resourceType": "StructureDefinition", "id": id_, "url": TEST + id_, "version": "0.1.0",
          "name": "".join(p.capitalize() for p in id_.split("-")), "status": "draft", "kind": kind,
          "abstract": False, "type": type_, "baseDefinition": base, "derivation": "constraint",
          "differential": {"element": elements}}
    sd.update(extra)
    return sd


def _e(id_: str, **props: Any) -> dict[str, Any]:
    path = ".".join(part.split(":", 1)[0] for part in id_.split("."))
    element: dict[str, Any] = {"id": id_, "path": path}
    if ":" in id_.rsplit(".", 1)[-1]:
        element["sliceName"] = id_.rsplit(":", 1)[-1]
    element.update(props)
    return element


BASE = "http://hl7.org/fhir/StructureDefinition/"
REGEX = "http://hl7.org/fhir/StructureDefinition/regex"

TEST_PROFILES: list[dict[str, Any]] = [
    _sd("test-patient", "Patient", BASE + "Patient", [
        _e("Patient", constraint=[
            {"key": "test-1", "severity": "error", "human": "A name is needed", "expression": "name.exists()"},
            {"key": "test-2", "severity": "warning", "human": "A telecom is advised", "expression": "telecom.exists()"},
            {"key": "test-3", "severity": "error", "human": "Crashes fhirpathpy", "expression": "birthDate + 'x' = 'y'"},
            {"key": "test-4", "severity": "error", "human": "Needs resolve()",
             "expression": "generalPractitioner.all(resolve() is Practitioner)"}]),
        _e("Patient.extension:eyeColour", min=0, max="1",
           type=[{"code": "Extension", "profile": [TEST + "test-eye-colour"]}]),
        _e("Patient.identifier", min=1, slicing={"discriminator": [{"type": "value", "path": "system"}],
                                                  "ordered": True, "rules": "closed"}),
        _e("Patient.identifier:mrn", min=1, max="1"),
        _e("Patient.identifier:mrn.system", min=1, fixedUri="http://example.org/mrn"),
        _e("Patient.identifier:mrn.value", min=1, maxLength=8),
        _e("Patient.identifier:ssn", min=0, max="1"),
        _e("Patient.identifier:ssn.system", min=1, fixedUri="http://example.org/ssn"),
        _e("Patient.identifier:ssn.value", min=1, extension=[{"url": REGEX, "valueString": "[0-9]{3}-[0-9]{2}-[0-9]{4}"}]),
        _e("Patient.name", type=[{"code": "HumanName", "profile": [TEST + "test-human-name"]}]),
        _e("Patient.telecom", slicing={"discriminator": [{"type": "exists", "path": "period"}], "rules": "closed"}),
        _e("Patient.telecom:dated", min=0, max="1"),
        _e("Patient.telecom:dated.period", min=1),
        _e("Patient.gender", min=1),
        _e("Patient.birthDate", minValueDate="1900-01-01"),
        _e("Patient.maritalStatus", binding={"strength": "required",
                                             "valueSet": "http://hl7.org/fhir/ValueSet/marital-status"}),
        _e("Patient.contact", slicing={"discriminator": [{"type": "pattern", "path": "relationship"}],
                                       "rules": "openAtEnd"}),
        _e("Patient.contact:emergency", min=0, max="*"),
        _e("Patient.contact:emergency.relationship", min=1, patternCodeableConcept={"coding": [
            {"system": "http://terminology.hl7.org/CodeSystem/v2-0131", "code": "C"}]}),
        _e("Patient.generalPractitioner", type=[{"code": "Reference", "targetProfile": [BASE + "Practitioner"]}]),
        _e("Patient.link", slicing={"discriminator": [{"type": "type", "path": "other.resolve()"}], "rules": "open"}),
        _e("Patient.link:patient", min=0, max="*"),
    ]),
    _sd("test-human-name", "HumanName", BASE + "HumanName", [
        _e("HumanName"),
        _e("HumanName.family", min=1),
        _e("HumanName.given", max="1"),
    ], kind="complex-type"),
    _sd("test-eye-colour", "Extension", BASE + "Extension", [
        _e("Extension"),
        _e("Extension.extension", max="0"),
        _e("Extension.url", fixedUri=TEST + "test-eye-colour"),
        _e("Extension.value[x]", min=1, type=[{"code": "code"}],
           binding={"strength": "extensible", "valueSet": "http://hl7.org/fhir/ValueSet/administrative-gender"}),
    ], kind="complex-type", context=[{"type": "element", "expression": "Patient"}]),
    _sd("test-complex-extension", "Extension", BASE + "Extension", [
        _e("Extension"),
        _e("Extension.extension:colour", min=1, max="1"),
        _e("Extension.extension:colour.url", fixedUri="colour"),
        _e("Extension.extension:colour.value[x]", type=[{"code": "code"}]),
        _e("Extension.extension:note", min=0, max="1"),
        _e("Extension.extension:note.url", fixedUri="note"),
        _e("Extension.extension:note.value[x]", type=[{"code": "string"}]),
        _e("Extension.url", fixedUri=TEST + "test-complex-extension"),
        _e("Extension.value[x]", max="0"),
    ], kind="complex-type", context=[{"type": "element", "expression": "Element"}]),
    _sd("test-observation", "Observation", BASE + "Observation", [
        _e("Observation"),
        _e("Observation.status", fixedCode="final"),
        _e("Observation.category", min=1, slicing={"discriminator": [{"type": "pattern", "path": "$this"}],
                                                    "rules": "open"}),
        _e("Observation.category:vs", min=1, max="1", patternCodeableConcept={"coding": [
            {"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}),
        _e("Observation.value[x]", type=[{"code": "Quantity"}]),
        _e("Observation.valueQuantity.value", maxValueDecimal=500),
        _e("Observation.subject", type=[{"code": "Reference", "targetProfile": [TEST + "test-patient"]}]),
    ]),
    _sd("test-bundle", "Bundle", BASE + "Bundle", [
        _e("Bundle"),
        _e("Bundle.entry", slicing={"discriminator": [{"type": "profile", "path": "resource"}], "rules": "closed"}),
        _e("Bundle.entry:patient", min=1, max="1"),
        _e("Bundle.entry:patient.resource", type=[{"code": "Patient", "profile": [TEST + "test-patient"]}]),
        _e("Bundle.entry:observation", min=0, max="*"),
        _e("Bundle.entry:observation.resource", type=[{"code": "Observation", "profile": [TEST + "test-observation"]}]),
    ]),
]


def write_test_package(folder: Path) -> Package:
    root = folder / "package"
    root.mkdir(parents=True, exist_ok=True)
    (root / "package.json").write_text(json.dumps({
        "name": "test.validation.profiles", "version": "0.1.0", "canonical": "http://example.org/fhir",
        "fhirVersions": ["4.0.1"], "dependencies": {"hl7.fhir.r4.core": "4.0.1"}}), encoding="utf-8")
    for sd in TEST_PROFILES:
        (root / f"StructureDefinition-{sd['id']}.json").write_text(json.dumps(sd), encoding="utf-8")
    return Package(root)


def make_test_validators(folder: Path) -> tuple[Definitions, StructuralValidator, ProfileValidator]:
    """Definitions = the French ones plus the test package (new objects: nothing shared is changed)."""
    definitions = Definitions([*french_definitions().packages, write_test_package(folder)])
    return definitions, StructuralValidator(definitions), ProfileValidator(definitions, Terminology(definitions))
