"""number: values compared with the search value's implicit precision (`100` = [99.5, 100.5)).

Stored: `[{"l": low, "h": high}, …]` (a point has low = high; a Range its bounds), indexed on
`<code>.l`. Prefixes follow R4: eq/ne use the precision range, gt/lt/ge/le compare values.
"""

from __future__ import annotations

import math
from decimal import Decimal, InvalidOperation
from typing import Any

from fhir_server.search.params.date import split_prefix
from fhir_server.search.terms import RANGE, SCAN, Bounds, Term, values


def number_of(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float, Decimal)):
        return float(value)
    return None


def _points(value: Any) -> list[tuple[float, float]]:
    number = number_of(value)
    if number is not None:
        return [(number, number)]
    if isinstance(value, dict) and ("low" in value or "high" in value):  # Range
        low = number_of((value.get("low") or {}).get("value"))
        high = number_of((value.get("high") or {}).get("value"))
        return [(low if low is not None else float("-inf"), high if high is not None else float("inf"))]
    return []


def index(code: str, items: list[tuple[Any, str | None]]) -> dict[str, list[Any]]:
    points = sorted({p for value, _ in items for p in _points(value)})
    return {code: [{"l": lo, "h": hi} for lo, hi in points]} if points else {}


def parse_number(text: str) -> tuple[float, float, float]:
    """(value, low, high) of the implicit precision range: `1.5` → (1.5, 1.45, 1.55)."""
    try:
        number = Decimal(text)
    except InvalidOperation:
        raise ValueError(f"{text[:40]!r} is not a number") from None
    if not number.is_finite():
        raise ValueError(f"{text[:40]!r} is not a number")
    try:
        exponent = number.as_tuple().exponent
        half = Decimal(5) * Decimal(10) ** (exponent - 1) if isinstance(exponent, int) else Decimal(0)
        value, low, high = float(number), float(number - half), float(number + half)
    except ArithmeticError:  # an exponent past what decimal arithmetic holds (1e999999999)
        value = low = high = float("inf")
    if not math.isfinite(value):  # search values are doubles: what rounds to infinity is refused
        raise ValueError(f"{text[:40]!r} is beyond the numbers this server compares (about ±1.8e308)")
    return value, low, high


def rule(prefix: str, v: float, a: float, b: float):
    """(field suffix, index condition, predicate on (low, high)) for one prefixed value."""
    if prefix in ("eq", "ne") and not a < b:  # more digits than a double holds: the range is the value
        a, b = v, v
    if prefix == "eq":
        if a == b:
            return "l", {"$gte": a, "$lte": b}, lambda lo, hi: lo >= a and hi <= b
        return "l", {"$gte": a, "$lt": b}, lambda lo, hi: lo >= a and hi < b
    if prefix == "ne":
        if a == b:
            return None, None, lambda lo, hi: not (lo >= a and hi <= b)
        return None, None, lambda lo, hi: not (lo >= a and hi < b)
    if prefix in ("gt", "sa"):
        return "h", {"$gt": v}, lambda lo, hi: hi > v
    if prefix in ("lt", "eb"):
        return "l", {"$lt": v}, lambda lo, hi: lo < v
    if prefix == "ge":
        return "h", {"$gte": v}, lambda lo, hi: hi >= v
    if prefix == "le":
        return "l", {"$lte": v}, lambda lo, hi: lo <= v
    slack = abs(v) * 0.1  # ap: within 10%
    return "h", {"$gte": v - slack}, lambda lo, hi: lo <= v + slack and hi >= v - slack


def parse_rules(code: str, texts: list[str], ctx) -> list:
    rules = []
    for text in texts:
        prefix, value = split_prefix(text)
        try:
            v, a, b = parse_number(value)
        except ValueError as exc:
            raise ctx.error(f"{code}: {exc}") from None
        rules.append(rule(prefix, v, a, b))
    return rules


def term(code: str, modifier: str | None, texts: list[str], ctx) -> Term:
    if modifier is not None:
        raise ctx.unsupported_modifier(code, modifier)
    rules = parse_rules(code, texts, ctx)
    window = None
    if len(texts) == 1:  # points are keyed by `l`; Ranges also by `h`
        prefix, value = split_prefix(texts[0])
        v, a, b = parse_number(value)
        window = {"eq": Bounds(code, a, b), "gt": Bounds(code, v, None, v), "sa": Bounds(code, v, None, v),
                  "ge": Bounds(code, v, None, v), "lt": Bounds(code, None, v), "eb": Bounds(code, None, v),
                  "le": Bounds(code, None, v)}.get(prefix)

    def match(doc) -> bool:
        return any(test(v["l"], v["h"]) for v in values(doc, code) for _, _, test in rules)

    fields = {r[0] for r in rules}
    if len(fields) != 1 or None in fields:
        return Term(None, [], match, SCAN, window)
    return Term(f"{code}.{rules[0][0]}", [r[1] for r in rules], match, RANGE, window)
