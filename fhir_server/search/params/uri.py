"""uri: exact match, `:below` (the value is a prefix), `:above` (the stored uri is a prefix)."""

from __future__ import annotations

from typing import Any

from fhir_server.search.params.token import keys_term, prefix_term, unescape
from fhir_server.search.terms import Term


def index(code: str, items: list[tuple[Any, str | None]]) -> dict[str, list[Any]]:
    keys = set()
    for value, _ in items:
        if isinstance(value, str):
            keys.add(value)
            if "|" in value:  # canonical with a version: findable with and without it
                keys.add(value.split("|", 1)[0])
    return {code: sorted(keys)} if keys else {}


def term(code: str, modifier: str | None, texts: list[str], ctx) -> Term:
    uris = [unescape(t) for t in texts]
    if modifier == "below":
        return prefix_term(code, uris)
    if modifier == "above":
        return keys_term(code, {p for u in uris for p in _ancestors(u)})
    if modifier is not None:
        raise ctx.unsupported_modifier(code, modifier)
    return keys_term(code, set(uris))


def _ancestors(uri: str) -> list[str]:
    """`http://a/b/c` → itself and `http://a/b`, `http://a` (path prefixes)."""
    scheme, sep, rest = uri.partition("://")
    if not sep:
        return [uri]
    parts = rest.rstrip("/").split("/")
    bases = [f"{scheme}://{'/'.join(parts[:i])}" for i in range(len(parts), 0, -1)]
    return [uri] + [form for base in bases for form in (base, base + "/")]
