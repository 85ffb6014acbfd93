"""date: every value is a time range [low, high); prefixes compare ranges as R4 says.

Stored: `[{"l": low, "h": high}, …]` under `<code>`, indexed on `<code>.l` and `<code>.h`.
Each prefix drives the query with one range on one of the two (a superset), and the exact
rule is checked on the stored ranges.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from fhir_server.search.dates import EARLIEST, LATEST, DateError, period, shift
from fhir_server.search.keys import SHORT_TIME
from fhir_server.search.terms import RANGE, SCAN, Bounds, Term, values

MIN, MAX = EARLIEST, LATEST
PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")


def _ranges(value: Any) -> list[tuple[datetime, datetime]]:
    if isinstance(value, str):
        try:
            return [period(value)]
        except DateError:
            return []
    if not isinstance(value, dict):
        return []
    if "start" in value or "end" in value:  # Period; open ends reach the edges of time
        low = _bound(value.get("start"), 0) or MIN
        high = _bound(value.get("end"), 1) or MAX
        return [(low, high)] if low <= high else []
    out = []
    for event in value.get("event") or ():  # Timing
        out.extend(_ranges(event))
    bounds = (value.get("repeat") or {}).get("boundsPeriod")
    if isinstance(bounds, dict):
        out.extend(_ranges(bounds))
    return out


def _bound(value: Any, side: int) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return period(value)[side]
    except DateError:
        return None


def index(code: str, items: list[tuple[Any, str | None]]) -> dict[str, list[Any]]:
    ranges = sorted({r for value, _ in items for r in _ranges(value)})
    return {code: [{"l": lo, "h": hi} for lo, hi in ranges]} if ranges else {}


def split_prefix(text: str) -> tuple[str, str]:
    if len(text) > 2 and text[:2] in PREFIXES and not text[:2].isdigit():
        return text[:2], text[2:]
    return "eq", text


def rule(prefix: str, a, b, now: datetime | None = None):
    """(field suffix, index condition, exact predicate on (low, high)) for `prefix` and [a, b)."""
    # values clamped to an edge of time are [edge, edge]: ranges ending there include it
    below_b = "$lte" if b == MAX or a == b else "$lt"
    if prefix == "eq":
        return "l", {"$gte": a, below_b: b}, lambda lo, hi: lo >= a and hi <= b
    if prefix == "ne":
        return None, None, lambda lo, hi: not (lo >= a and hi <= b)
    if prefix == "gt":
        return "h", {"$gt": b}, lambda lo, hi: hi > b
    if prefix == "lt":
        return "l", {"$lt": a}, lambda lo, hi: lo < a
    if prefix == "ge":
        return "h", {"$gte" if a == MIN else "$gt": a}, lambda lo, hi: hi > b or (lo >= a and hi <= b)
    if prefix == "le":
        return "l", {below_b: b}, lambda lo, hi: lo < a or (lo >= a and hi <= b)
    if prefix == "sa":
        return "l", {"$gte": b}, lambda lo, hi: lo >= b
    if prefix == "eb":
        return "h", {"$lte": a}, lambda lo, hi: hi <= a
    # ap: overlap with the value widened by 10% of its distance from now (at least a day)
    now = now or datetime.now(UTC)
    slack = max(abs(now - a) / 10, timedelta(days=1))
    wa, wb = shift(a, -slack), shift(b, slack)
    return "h", {"$gte" if wa == MIN else "$gt": wa}, \
        lambda lo, hi: (lo < wb or wb == MAX) and (hi > wa or wa == MIN)


def bounds(code: str, prefix: str, a, b) -> Bounds | None:
    """The low-end window (and the long ranges' high end) a prefix implies; see terms.Bounds.
    Ranges up to SHORT_TIME long are keyed by their low end only, so a condition on the high
    end becomes one on the low end, shifted by that length."""
    if prefix == "eq":
        return Bounds(code, a, b)
    if prefix in ("lt", "eb"):
        return Bounds(code, None, a)
    if prefix == "le":
        return Bounds(code, None, b)
    if prefix == "sa":
        return Bounds(code, b, None)
    if prefix == "gt":
        return Bounds(code, shift(b, -SHORT_TIME), None, b)
    if prefix == "ge":
        return Bounds(code, shift(a, -SHORT_TIME), None, a)
    return None


def term(code: str, modifier: str | None, texts: list[str], ctx) -> Term:
    if modifier is not None:
        raise ctx.unsupported_modifier(code, modifier)
    rules = []
    window = None
    for text in texts:
        prefix, value = split_prefix(text)
        try:
            a, b = period(value)
        except DateError as exc:
            raise ctx.error(f"{code}: {exc}") from None
        rules.append(rule(prefix, a, b))
        window = bounds(code, prefix, a, b) if len(texts) == 1 else None
    fields = {r[0] for r in rules}
    indexed = len(fields) == 1 and None not in fields

    def match(doc) -> bool:
        return any(test(v["l"], v["h"]) for v in values(doc, code) for _, _, test in rules)

    if not indexed:
        return Term(None, [], match, SCAN, window)
    return Term(f"{code}.{rules[0][0]}", [r[1] for r in rules], match, RANGE, window)
