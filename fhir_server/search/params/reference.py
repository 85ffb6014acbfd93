"""reference: `Type/id`, `id`, absolute URLs, canonical URLs, `:identifier`, `:[type]`, `:not`.

`:not` is not defined for references in R4 (only for tokens); it is given the token's meaning:
the resources with no value among those asked for, including those with no value at all
(`Communication?recipient=X&read-by:not=X`: the messages X has not read).

Stored keys: the literal reference without its version (`Patient/123`), the versioned form when
one is given (`Patient/123/_history/2`), absolute and canonical URLs as written (canonicals
also without `|version`), and under `<code>:identifier` the token keys of
`Reference.identifier`.
"""

from __future__ import annotations

import re
from typing import Any

from fhir_server.search.params import token
from fhir_server.search.params.token import keys_term, unescape
from fhir_server.search.terms import SCAN, Term, values

_LOCAL = re.compile(r"^(?:(?P<base>.*?)/)?(?P<type>[A-Z][A-Za-z]+)/(?P<id>[A-Za-z0-9\-.]{1,64})"
                    r"(?:/_history/(?P<version>[A-Za-z0-9\-.]{1,64}))?$")


def keys_of(reference: str, base_urls: tuple[str, ...] = ()) -> list[str]:
    """Index keys of one literal reference string."""
    match = _LOCAL.match(reference)
    if not match:
        keys = [reference]
        if "|" in reference:
            keys.append(reference.split("|", 1)[0])
        return keys
    local = f"{match['type']}/{match['id']}"
    base = match["base"]
    keys = []
    if not base or base.rstrip("/") in base_urls:
        keys.append(local)
        if match["version"]:
            keys.append(f"{local}/_history/{match['version']}")
    else:
        keys.append(reference.split("/_history/")[0])
    return keys


def index(code: str, items: list[tuple[Any, str | None]], base_urls: tuple[str, ...] = ()) -> dict[str, list[Any]]:
    keys, identifiers = set(), set()
    for value, _ in items:
        if isinstance(value, str):  # canonical / uri typed references
            keys.update(keys_of(value, base_urls))
        elif isinstance(value, dict):
            ref = value.get("reference")
            if isinstance(ref, str):  # `#id` (a contained resource) is kept as written
                keys.update([ref] if ref.startswith("#") else keys_of(ref, base_urls))
            if isinstance(value.get("identifier"), dict):
                identifiers.update(token.keys_of(value["identifier"]))
    out: dict[str, list[Any]] = {}
    if keys:
        out[code] = sorted(keys)
    if identifiers:
        out[f"{code}:identifier"] = sorted(identifiers)
    return out


def local_type(key: str) -> tuple[str, str] | None:
    """`Patient/123` → ("Patient", "123"); None for anything that is not a local reference."""
    match = _LOCAL.match(key)
    if match and not match["base"] and not match["version"]:
        return match["type"], match["id"]
    return None


def term(code: str, modifier: str | None, texts: list[str], ctx, targets: tuple[str, ...]) -> Term:
    if modifier == "not":
        keys = set(_asked(code, None, texts, ctx, targets).conditions)
        return Term(None, [], lambda doc: not any(k in keys for k in values(doc, code)), SCAN)
    return _asked(code, modifier, texts, ctx, targets)


def _asked(code: str, modifier: str | None, texts: list[str], ctx, targets: tuple[str, ...]) -> Term:
    """The term of the references asked for (`:identifier`, `:[type]` or none)."""
    if modifier == "identifier":
        return keys_term(f"{code}:identifier", {k for t in texts for k in token.query_keys(t)})
    if modifier is not None and modifier not in targets:
        typed = modifier[:1].isupper() and ctx.is_resource_type(modifier)
        if not typed:
            raise ctx.unsupported_modifier(code, modifier)
        if targets:  # a parameter that names no target (the ANS PDSm guide's List authorOrg) may refer to anything
            raise ctx.error(f"{code} cannot refer to {modifier}; its targets are {', '.join(targets)}")
    keys = set()
    for text in texts:
        value = unescape(text)
        if "/" not in value and "|" not in value and ":" not in value:  # a bare id
            types = (modifier,) if modifier else targets
            if not types:
                raise ctx.error(f"{code}={value}: {code} names no target type; write Type/{value} or "
                                f"{code}:Type={value}")
            keys.update(f"{t}/{value}" for t in types)
            continue
        value = ctx.relative(value)
        found = [value] if "|" in value else keys_of(value, ())  # `url|version`: that version only
        if modifier:
            found = [k for k in found if k.startswith(f"{modifier}/")] or [f"{modifier}/{value}"]
        keys.update(found)
    return keys_term(code, keys)
