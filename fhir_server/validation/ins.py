"""INS (Identifiant National de Santé): the NIR key of a French national health identifier, and
the agreement of the NIR with the Patient's gender and birth date.

An INS-NIR is 13 characters (sex, year, month, department — `2A`/`2B` for Corsica, counted as
19 and 18 —, commune, order) followed by a 2-digit key: 97 − (NIR mod 97). An INS-NIA (the
temporary number CNAV gives while a NIR is awaited) has the same shape and key. A Patient
identifier in one of the INS systems (INS-NIR production, test, demo; INS-NIA) whose key is
wrong is refused: an INS that does not check out must never be stored as one.

The NIR says the sex and the year and month of birth, and must agree with `gender` and
`birthDate` (a man born in 1950 cannot hold a NIR saying woman, 1979):
- 1st digit: odd is male, even is female — 1/2 a person registered at birth, 3/4 a person born
  abroad being registered, 7/8 a temporary number. Compared only with a `gender` of male or
  female: `other` and `unknown` claim nothing the NIR can contradict.
- digits 2-3: the last two digits of the year of birth, always compared with `birthDate`.
- digits 4-5: the month, 01-12, compared when `birthDate` gives a month; 20-42 and 50-99 are
  the pseudo-months INSEE gives when the civil-status record does not say the month (people
  born abroad, incomplete records): they say nothing about the month.
"""

from __future__ import annotations

import re
from typing import Any

from fhir_server.errors import Issue

# OIDs of the INS-NIR: production, test and demonstration (MISSION.md); of the INS-NIA.
NIR_SYSTEMS = frozenset({"urn:oid:1.2.250.1.213.1.4.8", "urn:oid:1.2.250.1.213.1.4.10",
                         "urn:oid:1.2.250.1.213.1.4.11"})
NIA_SYSTEM = "urn:oid:1.2.250.1.213.1.4.9"
INS_SYSTEMS = NIR_SYSTEMS | {NIA_SYSTEM}
_SHAPE = re.compile(r"^[123478]\d{4}(?:\d{2}|2A|2B)\d{6}\d{2}$")
_SEX = {"1": "male", "3": "male", "7": "male", "2": "female", "4": "female", "8": "female"}
_BIRTH_DATE = re.compile(r"^(\d{4})(?:-(\d{2}))?")


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


def disagreements(nir: str, gender: object, birth_date: object) -> list[tuple[str, str]]:
    """What a well-formed NIR says that the Patient's `gender` or `birthDate` contradicts:
    (the element, why), empty when they agree or say nothing comparable."""
    found = []
    said = _SEX.get(nir[:1])
    if gender in ("male", "female") and said is not None and gender != said:
        found.append(("gender", f"the NIR {nir!r} begins with {nir[0]}, which says {said}, but gender is {gender}"))
    date = _BIRTH_DATE.match(birth_date) if isinstance(birth_date, str) else None
    if date is None:
        return found
    if date.group(1)[2:] != nir[1:3]:
        found.append(("birthDate", f"the NIR {nir!r} says born in a year ending in {nir[1:3]}, but birthDate is "
                                   f"{birth_date}"))
    elif date.group(2) and 1 <= int(nir[3:5]) <= 12 and date.group(2) != nir[3:5]:
        found.append(("birthDate", f"the NIR {nir!r} says born in month {nir[3:5]}, but birthDate is {birth_date}"))
    return found


class InsCheck:
    """A resource check for the structural validator: every identifier in an INS system, its key,
    and what its NIR says against the Patient's gender and birth date."""

    def check(self, resource: dict[str, Any], model, expression: str, issues: list[Issue]) -> None:
        identifiers = resource.get("identifier")
        if resource.get("resourceType") != "Patient" or not isinstance(identifiers, list):
            return  # a malformed identifier is the structural validator's to report
        for i, identifier in enumerate(identifiers):
            system = identifier.get("system") if isinstance(identifier, dict) else None
            if not isinstance(system, str) or system not in INS_SYSTEMS:
                continue
            value = identifier.get("value")
            where = f"{expression}.identifier[{i}].value"
            problem = nir_problem(value) if isinstance(value, str) else "an INS identifier needs a value"
            if problem:
                issues.append(Issue("error", "business-rule", problem, [where]))
                continue
            for element, why in disagreements(value.upper(), resource.get("gender"), resource.get("birthDate")):
                issues.append(Issue("error", "business-rule", f"{why}: correct the one that is wrong (the INS "
                                    f"comes from INSi, the traits from an identity document)",
                                    [where, f"{expression}.{element}"]))


def ins_identifiers(patient: dict[str, Any]) -> list[tuple[int, str, str]]:
    """(index, system, value upper-cased) of a Patient's identifiers in an INS system."""
    found = []
    for i, identifier in enumerate(patient.get("identifier") or ()):
        if isinstance(identifier, dict) and identifier.get("system") in INS_SYSTEMS \
                and isinstance(identifier.get("value"), str):
            found.append((i, identifier["system"], identifier["value"].upper()))
    return found


def retired_duplicate(patient: dict[str, Any]) -> bool:
    """Whether a Patient is marked as a duplicate of another (RNIV, without $merge): `active` false
    and a `link` of type `replaced-by` to the Patient to use instead."""
    return patient.get("active") is False and any(
        isinstance(link, dict) and link.get("type") == "replaced-by"
        and str((link.get("other") or {}).get("reference") or "").startswith("Patient/")
        for link in patient.get("link") or ())
