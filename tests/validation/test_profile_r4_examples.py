"""Every R4 instance example validates without error against its base definition: required and
extensible bindings, invariants with their severity, reference target types, extensions
(the profile validator with `base=True`, the check run on every write).

The examples the structural validator rejects (tests/data/r4-example-exceptions.json) are left
out: the profile validator only ever sees structurally valid resources. The exceptions here,
examples that really break R4, are listed with the reason in
tests/data/r4-example-profile-exceptions.json and must still be rejected.

Ten Bundles carry the R4 definitions themselves (Bundle-resources, Bundle-dataelements… up to
6,781 StructureDefinitions and ValueSets, over a minute to validate in full); to keep this test
short they are validated on a sample of about 20 of their entries, plus every entry whose
fullUrl occurs more than once (so that Bundle-level rules about entries, bdl-7, still see them).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from fhir_server import jsonio
from fhir_server.terminology import Terminology
from fhir_server.validation.invariants import Invariants
from fhir_server.validation.profile import ProfileValidator

DATA = Path(__file__).resolve().parent.parent / "data"
EXCEPTIONS: dict[str, str] = json.loads((DATA / "r4-example-profile-exceptions.json").read_text(encoding="utf-8"))
STRUCTURAL_EXCEPTIONS: dict[str, str] = json.loads((DATA / "r4-example-exceptions.json").read_text(encoding="utf-8"))
SAMPLE = 20


@pytest.fixture(scope="module")
def profile_validator(definitions) -> ProfileValidator:
    validator = ProfileValidator(definitions, Terminology(definitions))
    validator.invariants = Invariants(cross_check=True)  # every shortcut checked against fhirpathpy
    return validator


def sampled(resource: dict[str, Any]) -> dict[str, Any]:
    entries = resource.get("entry") or []
    if resource.get("resourceType") != "Bundle" or len(entries) <= SAMPLE:
        return resource
    counts = Counter(e.get("fullUrl") for e in entries)
    step = len(entries) // SAMPLE + 1
    kept = [e for i, e in enumerate(entries) if i % step == 0 or counts[e.get("fullUrl")] > 1]
    return {**resource, "entry": kept}


def test_example(example_file, core_package, validator, profile_validator):
    if example_file in STRUCTURAL_EXCEPTIONS:
        return  # not valid R4 JSON: never reaches the profile validator
    resource = jsonio.loads((core_package.root / example_file).read_bytes())
    assert validator.validate(resource) == []
    issues = profile_validator.validate(sampled(resource))
    assert not profile_validator.invariants.disagreements, profile_validator.invariants.disagreements
    errors = [i for i in issues if i.severity in ("error", "fatal")]
    if example_file in EXCEPTIONS:
        assert errors, (f"{example_file} is listed as breaking R4 ({EXCEPTIONS[example_file]}) but validates: "
                        "remove it from tests/data/r4-example-profile-exceptions.json")
        return
    report = "\n".join(f"  {i.code} at {', '.join(i.expression)}: {i.diagnostics}" for i in errors[:20])
    assert not errors, f"{example_file}: {len(errors)} error(s)\n{report}"


def test_exceptions_are_listed_examples_with_reasons(example_file_names):
    files = set(example_file_names)
    for name, reason in EXCEPTIONS.items():
        assert name in files, f"{name} is not an instance example of the package"
        assert name not in STRUCTURAL_EXCEPTIONS
        assert isinstance(reason, str) and len(reason) > 40, f"give a precise reason for {name}"
