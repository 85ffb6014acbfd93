"""quantity: `[prefix]number|system|code`, `number||code`, `number` (any unit).

Stored: `[{"l", "h", "k": [unit keys]}, …]` under `<code>`, indexed on `<code>.l` and `<code>.k`.
Unit keys are `system|code`, `code` and the unit text, so `5.4|http://unitsofmeasure.org|mg`,
`5.4||mg` and `5.4` all work. Units are compared as written (no UCUM conversion yet).
"""

from __future__ import annotations

import re
from typing import Any

from fhir_server.search.params.date import split_prefix
from fhir_server.search.params.number import number_of, parse_number, rule
from fhir_server.search.params.token import unescape
from fhir_server.search.terms import RANGE, SCAN, Term, values

_BAR = re.compile(r"(?<!\\)\|")


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


def _entries(value: Any) -> list[tuple[float, float, tuple[str, ...]]]:
    if not isinstance(value, dict):
        return []
    number = number_of(value.get("value"))
    if number is not None:
        return [(number, number, tuple(_unit_keys(value)))]
    if "low" in value or "high" in value:  # Range
        low, high = value.get("low") or {}, value.get("high") or {}
        lo, hi = number_of(low.get("value")), number_of(high.get("value"))
        units = tuple(sorted(set(_unit_keys(low)) | set(_unit_keys(high))))
        return [(lo if lo is not None else float("-inf"), hi if hi is not None else float("inf"), units)]
    return []


def index(code: str, items: list[tuple[Any, str | None]]) -> dict[str, list[Any]]:
    entries = sorted({e for value, _ in items for e in _entries(value)})
    return {code: [{"l": lo, "h": hi, "k": list(k)} for lo, hi, k in entries]} if entries else {}


def index_fields(code: str) -> list[str]:
    return [f"{code}.l", f"{code}.h", f"{code}.k"]


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
        except ValueError:
            raise ctx.error(f"{code}: {number!r} is not a number") from None
        field, condition, test = rule(prefix, v, a, b)
        unit = None
        if len(parts) == 3 and parts[2]:
            unit = f"{parts[1]}|{parts[2]}" if parts[1] else parts[2]
        tests.append((test, unit))
        conditions.append(condition)
        fields.add(field)

    def match(doc) -> bool:
        return any(test(e["l"], e["h"]) and (unit is None or unit in e["k"])
                   for e in values(doc, code) for test, unit in tests)

    if len(fields) != 1 or None in fields:
        return Term(None, [], match, SCAN)
    return Term(f"ix.{code}.{fields.pop()}", conditions, match, RANGE)
