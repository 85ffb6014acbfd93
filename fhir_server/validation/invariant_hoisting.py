"""Loop-invariant parts of an invariant taken out of `where`/`all`/… arguments.

A subexpression inside the arguments of an iterating function that does not depend on the
item (it starts from `%resource`/`%rootResource`/literals and never reads `$this`) is computed
once, before the iteration, into a variable (`%__h0`); dom-3 otherwise walks the whole resource
again for every contained resource.
"""

from __future__ import annotations

import json
from typing import Any

from fhirpathpy import apply_parsed_path

from fhir_server.validation.invariant_fhirpath import (
    HOISTED_OPTIONS,
    ITERATING,
    OPAQUE,
    OPTIONS,
    R4_MODEL,
    function_name,
)

_TYPE_FUNCTIONS = frozenset({"ofType", "as", "is"})  # their argument is a type name, not a path
_WORTH_HOISTING = frozenset({"InvocationExpression", "UnionExpression", "ParenthesizedTerm"})


def _invariant(node: dict[str, Any]) -> bool:
    """Does this subexpression give the same value for every item of an enclosing iteration
    (it starts from `%resource`/`%rootResource`/literals only, and never reads `$this`)?"""
    kind = node.get("type")
    children = node.get("children") or ()
    if kind in OPAQUE or kind == "MemberInvocation" or kind == "FunctionInvocation":
        return False  # at the head of a path: they read the current item
    if kind in ("ExternalConstantTerm", "LiteralTerm", "TypeSpecifier"):
        return True
    if kind == "InvocationExpression" and len(children) == 2:
        head, tail = children
        if not _invariant(head):
            return False
        if tail.get("type") == "MemberInvocation":
            return True
        if tail.get("type") == "FunctionInvocation":
            if function_name(tail) in ITERATING or function_name(tail) in _TYPE_FUNCTIONS:
                return True  # its arguments are evaluated on the (invariant) input, or name a type
            params = (tail["children"][0].get("children") or [])[1:]
            return all(_invariant(c) for p in params for c in p.get("children") or ())
        return False
    return bool(children) and all(_invariant(c) for c in children)


def _variable(name: str) -> dict[str, Any]:
    return {"type": "TermExpression", "text": "%" + name, "terminalNodeText": [], "children": [
        {"type": "ExternalConstantTerm", "terminalNodeText": [], "children": [
            {"type": "ExternalConstant", "terminalNodeText": [], "children": [
                {"type": "Identifier", "text": name, "terminalNodeText": [], "children": []}]}]}]}


def _key(node: dict[str, Any]) -> str:
    return json.dumps(node, sort_keys=True)


def _repeated(node: dict[str, Any], inside: bool, seen: dict[str, int]) -> None:
    """Count the invariant paths (`%resource.descendants()`) met inside iterating arguments."""
    kind = node.get("type")
    if inside and kind == "InvocationExpression" and _invariant(node):
        key = _key(node)
        seen[key] = seen.get(key, 0) + 1
    if kind == "FunctionInvocation" and function_name(node) in ITERATING:
        inside = True
    for child in node.get("children") or ():
        if isinstance(child, dict):
            _repeated(child, inside, seen)


def hoist_invariants(node: dict[str, Any], hoisted: list[tuple[str, dict[str, Any]]], inside: bool,
           shared: dict[str, str] | None = None) -> dict[str, Any]:
    """Replace, inside the arguments of iterating functions (`where`, `all`…), the subexpressions
    that do not depend on the item by variables computed once (`%__h0`): dom-3 otherwise walks the
    whole resource again for every contained resource. Invariant paths used more than once
    (`%resource.descendants()`, four times in dom-3) become variables of their own first."""
    if shared is None:
        counts: dict[str, int] = {}
        _repeated(node, inside, counts)
        shared = {}
        for key, count in counts.items():
            if count > 1:
                name = f"__h{len(hoisted)}"
                hoisted.append((name, json.loads(key)))
                shared[key] = name
    kind = node.get("type")
    if shared and kind == "InvocationExpression" and inside:
        name = shared.get(_key(node))
        if name is not None:
            return _variable(name)
    if inside and kind in _WORTH_HOISTING and _invariant(node):
        replaced = _hoist_children(node, hoisted, inside, shared)
        if replaced.get("type") == "TermExpression" and replaced is not node:
            return replaced
        name = f"__h{len(hoisted)}"
        hoisted.append((name, replaced))
        return _variable(name)
    return _hoist_children(node, hoisted, inside, shared)


def _hoist_children(node: dict[str, Any], hoisted: list[tuple[str, dict[str, Any]]], inside: bool,
                    shared: dict[str, str]) -> dict[str, Any]:
    children = node.get("children")
    if not children:
        return node
    if node.get("type") == "FunctionInvocation" and function_name(node) in ITERATING:
        inside = True
    new = dict(node)
    new["children"] = [hoist_invariants(c, hoisted, inside, shared) if isinstance(c, dict) else c for c in children]
    return new


class Hoisted:
    """An expression with its loop-invariant parts taken out (see `hoist_invariants`)."""

    __slots__ = ("ast", "hoisted", "plain")

    def __init__(self, ast: dict[str, Any]):
        self.plain = ast
        hoisted: list[tuple[str, dict[str, Any]]] = []
        self.ast = hoist_invariants(ast, hoisted, False)
        self.hoisted = [(name, {"children": [sub]}) for name, sub in hoisted]

    def apply(self, node: Any, variables: dict[str, Any]) -> list[Any]:
        if not self.hoisted:
            return apply_parsed_path(node, self.plain, dict(variables), R4_MODEL, OPTIONS)
        scope = dict(variables)
        try:
            for name, sub in self.hoisted:
                scope[name] = apply_parsed_path(node, sub, dict(scope), R4_MODEL, HOISTED_OPTIONS)
        except Exception:  # noqa: BLE001 — would not have been evaluated on an empty iteration
            return apply_parsed_path(node, self.plain, dict(variables), R4_MODEL, OPTIONS)
        return apply_parsed_path(node, self.ast, scope, R4_MODEL, OPTIONS)
