"""Constants and helpers of the terminology tests."""

from __future__ import annotations

import sys
from pathlib import Path

_ROOT = Path(__file__).resolve().parents[2]
if str(_ROOT) not in sys.path:  # `tests.conftest` is importable from the repository root
    sys.path.insert(0, str(_ROOT))

from tests.conftest import start_server  # noqa: E402

__all__ = ["start_server"]

ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
GENDER = "http://hl7.org/fhir/administrative-gender"
GENDER_VS = "http://hl7.org/fhir/ValueSet/administrative-gender"
ENCOUNTER_VS = "http://terminology.hl7.org/ValueSet/v3-ActEncounterCode"
SNOMED = "http://snomed.info/sct"
LOINC = "http://loinc.org"


def codes(expanded: dict) -> list[str]:
    return [c["code"] for c in expanded["expansion"].get("contains", ())]


def concept_codes(codesystem: dict) -> list[str]:
    """Every code of a CodeSystem resource, nested ones too (the test's own walk)."""
    out = []

    def walk(concepts):
        for c in concepts or ():
            out.append(c["code"])
            walk(c.get("concept"))

    walk(codesystem.get("concept"))
    return out
