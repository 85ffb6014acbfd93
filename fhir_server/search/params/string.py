"""string: starts-with, case- and accent-insensitive by default; `:exact`; `:contains`.

Stored: folded values under `<code>` (a range on them answers starts-with) and the raw values
under `<code>:exact`. Names and addresses index each part and the whole.
"""

from __future__ import annotations

from typing import Any

from fhir_server.search.params.token import prefix_term, unescape
from fhir_server.search.terms import EXACT, SCAN, Term, values
from fhir_server.text import fold

_NAME_PARTS = ("text", "family", "given", "prefix", "suffix")
_ADDRESS_PARTS = ("text", "line", "city", "district", "state", "postalCode", "country")


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if not isinstance(value, dict):
        return []
    out: list[str] = []
    parts = _ADDRESS_PARTS if any(k in value for k in ("line", "city", "postalCode", "country", "district")) \
        else _NAME_PARTS
    for key in parts:
        part = value.get(key)
        for item in part if isinstance(part, list) else (part,):
            if isinstance(item, str):
                out.append(item)
    if "family" in value or "given" in value:  # "Marie Durand" matches the whole name too
        whole = " ".join([*(g for g in value.get("given") or () if isinstance(g, str)),
                          *([value["family"]] if isinstance(value.get("family"), str) else [])])
        if whole:
            out.append(whole)
    return out


def index(code: str, items: list[tuple[Any, str | None]]) -> dict[str, list[Any]]:
    raw = {s for value, _ in items for s in _strings(value)}
    if not raw:
        return {}
    return {code: sorted({fold(s) for s in raw}), f"{code}:exact": sorted(raw)}


def term(code: str, modifier: str | None, texts: list[str], ctx) -> Term:
    if modifier == "exact":  # driven by the folded key, then compared exactly
        exact = {unescape(t) for t in texts}
        return Term(f"{code}", sorted({fold(t) for t in exact}),
                    lambda doc: any(v in exact for v in values(doc, f"{code}:exact")), EXACT)
    if modifier == "contains":
        needles = [fold(unescape(t)) for t in texts]
        return Term(None, [], lambda doc: any(n in v for v in values(doc, code) for n in needles), SCAN)
    if modifier is not None:
        raise ctx.unsupported_modifier(code, modifier)
    return prefix_term(code, [fold(unescape(t), keep_trailing_space=True) for t in texts])
