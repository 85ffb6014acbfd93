"""Codes behind the token modifiers `:in`, `:not-in`, `:below`, `:above`.

ValueSets and CodeSystems come from the loaded packages, or from those stored on this server.
What cannot be expanded here (a code system we do not hold, an unknown filter) is an error
that says so: a search must not silently match nothing.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

MAX_CODES = 10000


def codes_for(definitions, modifier: str, value: str, ctx) -> set[str]:
    if modifier in ("in", "not-in"):
        valueset = _find(definitions, ctx, "ValueSet", value)
        if valueset is None:
            raise ctx.error(f":{modifier} {value!r}: no ValueSet with this URL is known here")
        return {f"{s}|{c}" if s else c for s, c in expand(definitions, ctx, valueset, set())}
    system, bar, code = value.partition("|")
    if not bar or not system or not code:
        raise ctx.error(f":{modifier} needs system|code, got {value!r}")
    codesystem = _find(definitions, ctx, "CodeSystem", system)
    if codesystem is None:
        raise ctx.error(f":{modifier}: the code system {system} is not available here to find the codes "
                        f"{'under' if modifier == 'below' else 'above'} {code}")
    tree = _hierarchy(codesystem)
    if code not in tree["all"]:
        raise ctx.error(f":{modifier}: {code!r} is not a code of {system}")
    found = _descendants(tree, code) if modifier == "below" else _ancestors(tree, code)
    return {f"{system}|{c}" for c in found | {code}}


def _find(definitions, ctx, resource_type: str, url: str) -> dict[str, Any] | None:
    url = url.split("|", 1)[0]
    found = definitions.resource(url)
    if found is not None and found.get("resourceType") == resource_type:
        return found
    from fhir_server import jsonio
    from fhir_server.search.execute import find
    from fhir_server.search.params.token import keys_term

    for doc in find(ctx.server, resource_type, [keys_term("url", {url})], session=ctx.session,
                    projection={"json": 1, "del": 1, "ix": 1}):
        return jsonio.loads(doc["json"])
    return None


def expand(definitions, ctx, valueset: dict[str, Any], seen: set[str]) -> set[tuple[str, str]]:
    url = valueset.get("url", "")
    if url in seen:
        return set()
    seen = seen | {url}
    compose = valueset.get("compose")
    if not compose:
        contains = (valueset.get("expansion") or {}).get("contains")
        if contains:
            return set(_contains(contains))
        raise ctx.error(f"ValueSet {url} has neither compose nor expansion")
    codes: set[tuple[str, str]] = set()
    for include in compose.get("include") or ():
        codes |= _include(definitions, ctx, include, seen)
    for exclude in compose.get("exclude") or ():
        codes -= _include(definitions, ctx, exclude, seen)
    if len(codes) > MAX_CODES:
        raise ctx.error(f"ValueSet {url} expands to more than {MAX_CODES} codes")
    return codes


def _contains(items) -> Iterator[tuple[str, str]]:
    for item in items:
        if item.get("code"):
            yield item.get("system", ""), item["code"]
        yield from _contains(item.get("contains") or ())


def _include(definitions, ctx, include: dict[str, Any], seen: set[str]) -> set[tuple[str, str]]:
    system = include.get("system")
    codes: set[tuple[str, str]] | None = None
    if system:
        if include.get("concept"):
            codes = {(system, c["code"]) for c in include["concept"] if c.get("code")}
        else:
            codesystem = _find(definitions, ctx, "CodeSystem", system)
            if codesystem is None or codesystem.get("content") not in (None, "complete", "fragment"):
                raise ctx.error(f"the code system {system} is not available here to expand a ValueSet")
            tree = _hierarchy(codesystem)
            selected = set(tree["all"])
            for f in include.get("filter") or ():
                selected &= _filter(tree, f, system, ctx)
            codes = {(system, c) for c in selected}
    for vs_url in include.get("valueSet") or ():
        other = _find(definitions, ctx, "ValueSet", vs_url)
        if other is None:
            raise ctx.error(f"ValueSet {vs_url} (included by another) is not known here")
        inner = expand(definitions, ctx, other, seen)
        codes = inner if codes is None else codes & inner
    return codes or set()


def _filter(tree, f: dict[str, Any], system: str, ctx) -> set[str]:
    prop, op, value = f.get("property"), f.get("op"), f.get("value", "")
    if prop == "concept" and op == "is-a":
        return _descendants(tree, value) | {value}
    if prop == "concept" and op == "descendent-of":
        return _descendants(tree, value)
    if prop == "concept" and op == "is-not-a":
        return set(tree["all"]) - _descendants(tree, value) - {value}
    if op == "=" and prop == "concept":
        return {value}
    raise ctx.error(f"the filter {prop} {op} {value} on {system} cannot be evaluated here")


def _hierarchy(codesystem: dict[str, Any]) -> dict[str, Any]:
    children: dict[str, set[str]] = {}
    parents: dict[str, set[str]] = {}
    all_codes: list[str] = []

    def walk(concepts, parent):
        for c in concepts or ():
            code = c.get("code")
            if not code:
                continue
            all_codes.append(code)
            if parent:
                children.setdefault(parent, set()).add(code)
                parents.setdefault(code, set()).add(parent)
            for p in c.get("property") or ():
                if p.get("code") in ("parent", "subsumedBy") and p.get("valueCode"):
                    children.setdefault(p["valueCode"], set()).add(code)
                    parents.setdefault(code, set()).add(p["valueCode"])
            walk(c.get("concept"), code)

    walk(codesystem.get("concept"), None)
    return {"all": all_codes, "children": children, "parents": parents}


def _descendants(tree, code: str) -> set[str]:
    out, todo = set(), [code]
    while todo:
        for child in tree["children"].get(todo.pop(), ()):
            if child not in out:
                out.add(child)
                todo.append(child)
    return out


def _ancestors(tree, code: str) -> set[str]:
    out, todo = set(), [code]
    while todo:
        for parent in tree["parents"].get(todo.pop(), ()):
            if parent not in out:
                out.add(parent)
                todo.append(parent)
    return out
