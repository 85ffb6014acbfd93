"""quantity: `[prefix]number|system|code`, `number||code`, `number` (any unit).

Stored: `[{"l", "h", "k": [unit keys]}, …]` under `<code>`, indexed on `<code>.l` and `<code>.k`.
Unit keys are `system|code`, `code` and the unit text, so `5.4|http://unitsofmeasure.org|mg`,
`5.4||mg` and `5.4` all work, comparing units as written.

UCUM quantities are also stored in canonical units (`terminology/ucum.py`), as an entry marked
`"c": true` whose unit key is `ucum=<canonical unit>`; a search whose system is UCUM and whose
unit converts compares canonical values, so `5.4|http://unitsofmeasure.org|mg` finds 5400 ug
and `gt37|http://unitsofmeasure.org|Cel` finds 99 [degF]. Canonical entries are for these
searches only: a search without a unit, or with a unit that does not convert, sees the values
as written, and sorting uses them too.
"""

from __future__ import annotations

import re
from typing import Any

from fhir_server.search.params.date import split_prefix
from fhir_server.search.params.number import number_of, parse_number, rule
from fhir_server.search.params.token import unescape
from fhir_server.search.terms import RANGE, SCAN, Term, values
from fhir_server.terminology import ucum

_BAR = re.compile(r"(?<!\\)\|")
_INF = float("inf")


def _unit_keys(q: dict[str, Any]) -> list[str]:
    keys = []
    code, system, unit = q.get("code"), q.get("system"), q.get("unit") or q.get("currency")
    if isinstance(code, str):
        keys.append(code)
        if isinstance(system, str):
            keys.append(f"{system}|{code}")
    if isinstance(unit, str):
        keys.append(unit)
    return keys


def _canonical(q: dict[str, Any], number: float) -> tuple[float, str] | None:
    if q.get("system") != ucum.SYSTEM or not isinstance(q.get("code"), str) or number in (_INF, -_INF):
        return None
    return ucum.canonical(number, q["code"])


Entry = tuple[float, float, tuple[str, ...], bool]  # low, high, unit keys, canonical


def _entries(value: Any) -> list[Entry]:
    if not isinstance(value, dict):
        return []
    number = number_of(value.get("value"))
    if number is not None:
        out = [(number, number, tuple(_unit_keys(value)), False)]
        found = _canonical(value, number)
        if found is not None:
            out.append((found[0], found[0], ("ucum=" + found[1],), True))
        return out
    if "low" in value or "high" in value:  # Range
        low, high = value.get("low") or {}, value.get("high") or {}
        lo, hi = number_of(low.get("value")), number_of(high.get("value"))
        lo, hi = (lo if lo is not None else -_INF), (hi if hi is not None else _INF)
        units = tuple(sorted(set(_unit_keys(low)) | set(_unit_keys(high))))
        out = [(lo, hi, units, False)]
        c_lo, c_hi = _canonical(low, lo), _canonical(high, hi)  # None for an open end, or no conversion
        ends = [c for c, n in ((c_lo, lo), (c_hi, hi)) if n not in (_INF, -_INF)]
        if ends and all(ends) and len({c[1] for c in ends}) == 1:  # type: ignore[index]
            out.append((c_lo[0] if c_lo else -_INF, c_hi[0] if c_hi else _INF, ("ucum=" + ends[0][1],), True))
        return out
    return []


def index(code: str, items: list[tuple[Any, str | None]]) -> dict[str, list[Any]]:
    entries = sorted({e for value, _ in items for e in _entries(value)})
    return {code: [{"l": lo, "h": hi, "k": list(k), **({"c": True} if c else {})} for lo, hi, k, c in entries]} \
        if entries else {}


def as_written(stored: list[Any]) -> list[Any]:
    """The stored entries without the canonical ones (for sorting)."""
    return [e for e in stored if not (isinstance(e, dict) and e.get("c"))]


def term(code: str, modifier: str | None, texts: list[str], ctx) -> Term:
    if modifier is not None:
        raise ctx.unsupported_modifier(code, modifier)
    tests = []
    conditions = []
    fields = set()
    for text in texts:
        parts = [unescape(p) for p in _BAR.split(text)]
        if len(parts) not in (1, 3):
            raise ctx.error(f"{code}: {text!r} is not number, number|system|code or number||code")
        prefix, number = split_prefix(parts[0])
        try:
            v, a, b = parse_number(number)
        except ValueError as exc:
            raise ctx.error(f"{code}: {exc}") from None
        unit, canonical = None, False
        if len(parts) == 3 and parts[2]:
            unit = f"{parts[1]}|{parts[2]}" if parts[1] else parts[2]
            converted = ucum.converter(parts[2]) if parts[1] == ucum.SYSTEM else None
            if converted is not None:  # compared in canonical units
                v, a, b = (ucum.canonical(x, parts[2])[0] for x in (v, a, b))  # type: ignore[index]
                unit, canonical = "ucum=" + converted[2], True
        field, condition, test = rule(prefix, v, a, b)
        tests.append((test, unit, canonical))
        conditions.append(condition)
        fields.add(field)

    def match(doc) -> bool:
        return any(test(e["l"], e["h"]) and bool(e.get("c")) == canonical and (unit is None or unit in e["k"])
                   for e in values(doc, code) for test, unit, canonical in tests)

    if len(fields) != 1 or None in fields:
        return Term(None, [], match, SCAN)
    return Term(f"{code}.{fields.pop()}", conditions, match, RANGE)
