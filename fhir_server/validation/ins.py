"""INS (Identifiant National de Santé): the NIR key of a French national health identifier.

An INS-NIR is 13 characters (sex, year, month, department — `2A`/`2B` for Corsica, counted as
19 and 18 —, commune, order) followed by a 2-digit key: 97 − (NIR mod 97). A Patient
identifier in one of the INS-NIR systems (production, test, demo) whose key is wrong is
refused: an INS that does not check out must never be stored as one.
"""

from __future__ import annotations

import re
from typing import Any

from fhir_server.errors import Issue

# OIDs of the INS-NIR: production, test and demonstration (MISSION.md).
NIR_SYSTEMS = frozenset({"urn:oid:1.2.250.1.213.1.4.8", "urn:oid:1.2.250.1.213.1.4.10",
                         "urn:oid:1.2.250.1.213.1.4.11"})
_SHAPE = re.compile(r"^[12378]\d{4}(?:\d{2}|2A|2B)\d{6}\d{2}$")


def nir_key(nir13: str) -> int:
    """The key of a 13-character NIR (Corsica's 2A/2B count as 19/18 in the department)."""
    digits = nir13.upper().replace("2A", "19", 1) if nir13[5:7].upper() == "2A" else nir13
    digits = digits.upper().replace("2B", "18", 1) if nir13[5:7].upper() == "2B" else digits
    return 97 - int(digits) % 97


def nir_problem(value: str) -> str | None:
    """Why `value` is not a valid INS-NIR (15 characters with its key), or None."""
    if not _SHAPE.match(value.upper()):
        return (f"{value!r} is not an INS-NIR: 13 characters (digits, 2A or 2B for a Corsican department) "
                f"and a 2-digit key")
    expected = nir_key(value[:13])
    if int(value[13:]) != expected:
        return f"the key of INS-NIR {value!r} is {value[13:]}, it should be {expected:02d} (97 − NIR mod 97)"
    return None


class InsCheck:
    """A resource check for the structural validator: every identifier in an INS-NIR system."""

    def check(self, resource: dict[str, Any], model, expression: str, issues: list[Issue]) -> None:
        identifiers = resource.get("identifier")
        if resource.get("resourceType") != "Patient" or not isinstance(identifiers, list):
            return  # a malformed identifier is the structural validator's to report
        for i, identifier in enumerate(identifiers):
            system = identifier.get("system") if isinstance(identifier, dict) else None
            if not isinstance(system, str) or system not in NIR_SYSTEMS:
                continue
            value = identifier.get("value")
            problem = nir_problem(value) if isinstance(value, str) else "an INS-NIR identifier needs a value"
            if problem:
                issues.append(Issue("error", "business-rule", problem, [f"{expression}.identifier[{i}].value"]))
