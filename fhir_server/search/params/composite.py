"""composite: `a$b` matches when one element satisfies every component at once.

Stored: for each element the expression selects, one entry `{"0": {...}, "1": {...}}` holding
each component's own index values (under the placeholder code `v`), indexed on the first
component. A query splits on unescaped `$` and runs each component's own type rules.
"""

from __future__ import annotations

import re
from typing import Any

from fhir_server.search.terms import SCAN, Term, Values, values

_DOLLAR = re.compile(r"(?<!\\)\$")
SUB = "v"  # placeholder code of a component inside a composite entry


def index(code: str, items: list[tuple[Any, str | None]], components, registry,
          resource: dict[str, Any] | None = None) -> dict[str, list[Any]]:
    """`components`: [(SearchParam, extractor)] in definition order; `resource` is `%resource`."""
    entries = []
    for value, _ in items:
        entry = {}
        for i, (param, extract) in enumerate(components):
            sub = registry.index_param(param, SUB, extract(value, resource) if isinstance(value, dict) else [])
            if not sub:
                break
            entry[str(i)] = sub
        else:
            entries.append(entry)
    return {code: entries} if entries else {}


def term(code: str, modifier: str | None, texts: list[str], ctx, components, registry) -> Term:
    if modifier is not None:
        raise ctx.unsupported_modifier(code, modifier)
    alternatives = []
    for text in texts:
        parts = _DOLLAR.split(text)
        if len(parts) != len(components):
            raise ctx.error(f"{code} needs {len(components)} values separated by $, got {text!r}")
        alternatives.append([registry.term_for(param, SUB, None, [part], ctx)
                             for (param, _), part in zip(components, parts, strict=True)])

    def match(doc) -> bool:
        for entry in values(doc, code):
            for terms in alternatives:
                if all(t.match(Values(doc.id, entry.get(str(i)) or {})) for i, t in enumerate(terms)):
                    return True
        return False

    firsts = [terms[0] for terms in alternatives]
    if not all(t.indexed for t in firsts) or len({t.field for t in firsts}) != 1:
        return Term(None, [], match, SCAN)
    field = firsts[0].field.replace(SUB, f"{code}.0.{SUB}", 1)
    return Term(field, [c for t in firsts for c in t.conditions], match, firsts[0].rank)
