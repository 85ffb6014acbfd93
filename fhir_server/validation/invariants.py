"""Invariants: `ElementDefinition.constraint.expression` (FHIRPath) evaluated with fhirpathpy.

Each expression is parsed once (cache per expression text, shared by every profile) and
evaluated on the element it is attached to, typed for fhirpathpy (`Period`, `Patient.contact`,
so that choices such as `value` resolve), with `%resource` (the resource holding the element),
`%rootResource` (its container, for a contained resource) and `%ucum` set.

A constraint fails only when the expression evaluates to exactly `false`; an empty result
(e.g. comparing dates of different precision) is not a failure. Severity `error` gives an
error, `warning` a warning (best-practice invariants are warnings in R4).

Not evaluated (`skip_reason` says why):
* expressions calling a function fhirpathpy does not implement: `resolve()` (needs the target
  resource), `htmlChecks()` (txt-1, txt-2: the narrative is checked by the structural
  validator instead), `conformsTo()`, `memberOf()`, `lowBoundary()`/`highBoundary()`,
  `comparable()`, `getValue()`… Which constraints that excludes is listed by `skipped()`.
* `ele-1` and `ext-1` are not evaluated with fhirpathpy: they hold on every element of every
  resource, so `scan()` checks them in one pass over the JSON (same meaning: an element has a
  value or children other than `id`; an extension has `extension` or `value[x]`, not both).

* expressions testing FHIR values against an unqualified System type (`answer is Boolean`,
  que-7): fhirpathpy answers false for a FHIR boolean where the reference engine answers true.

Adaptations to fhirpathpy, each matching what the reference engine does with R4 definitions:
the function form `as(T)` applied to a collection is read as `ofType(T)` (dom-3); an ordering
comparison fhirpathpy cannot make (Quantities without UCUM units: rng-2, `low <= high`) is
"incomparable", i.e. empty, as FHIRPath says.

Speed (this runs on every write): top-level `and`/`or`/`implies` short-circuit in three-valued
logic; an operand that reads only elements absent from the focus is evaluated once per type and
remembered; and the commonest operand shape, `a.b.exists()`/`empty()`/`not()`/`hasValue()`/
`count()`/`length()`/`startsWith('…')`/`endsWith('…')`/`matches('…')`, is evaluated directly on
the JSON. `Invariants(cross_check=True)` (tests) evaluates every invariant both ways as well
and records any disagreement with fhirpathpy on the whole expression.

An expression that raises inside fhirpathpy is reported as an `information` issue (the
invariant could not be checked), never as an error.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Callable
from typing import Any

from fhirpathpy import apply_parsed_path
from fhirpathpy.engine.invocations import invocation_registry
from fhirpathpy.engine.nodes import ResourceNode
from fhirpathpy.models import models as fhirpath_models
from fhirpathpy.parser import parse

from fhir_server.errors import Issue
from fhir_server.validation.profile_model import NATIVE_KEYS

log = logging.getLogger(__name__)

R4_MODEL = fhirpath_models["r4"]


def _has_value(inputs: list[Any]) -> bool:
    return len(inputs) == 1 and inputs[0] is not None and not isinstance(inputs[0], (dict, list))


# FHIR's additions to FHIRPath that fhirpathpy lacks and that are cheap to provide exactly.
USER_FUNCTIONS: dict[str, dict[str, Any]] = {
    "hasValue": {"fn": _has_value},
}
SUPPORTED_FUNCTIONS = frozenset(invocation_registry) | frozenset(USER_FUNCTIONS)
_OPTIONS = {"userInvocationTable": USER_FUNCTIONS, "traceFn": lambda *_: None}


_SYSTEM_PRIMITIVES = frozenset({"Boolean", "String", "Integer", "Decimal", "Date", "DateTime", "Time"})


def _as_to_of_type(node: Any) -> None:
    """The function form `X.as(T)` on a collection is read as `X.ofType(T)`, as the reference
    FHIRPath engine does for the R4 definitions (dom-3 applies it to `descendants()`, which
    fhirpathpy refuses: it wants a single item)."""
    if isinstance(node, dict):
        if node.get("type") == "Functn":
            first = (node.get("children") or [{}])[0]
            if first.get("type") == "Identifier" and first.get("text") == "as":
                first["text"] = "ofType"
        for child in node.get("children") or ():
            _as_to_of_type(child)


def _system_type_tests(node: Any, out: set[str]) -> None:
    """Unqualified System type names in `is`/`as`/`ofType` (`answer is Boolean`)."""
    if isinstance(node, dict):
        if node.get("type") == "TypeSpecifier" and (node.get("text") or "") in _SYSTEM_PRIMITIVES:
            out.add(node["text"])
        for child in node.get("children") or ():
            _system_type_tests(child, out)


def _functions(node: Any, out: set[str]) -> None:
    if isinstance(node, dict):
        if node.get("type") == "Functn":
            children = node.get("children") or ()
            if children and children[0].get("type") == "Identifier":
                out.add((children[0].get("text") or "").strip("`"))
        for child in node.get("children") or ():
            _functions(child, out)


# Functions whose arguments are evaluated once per input item (never on an empty input).
_ITERATING = frozenset(name for name, spec in invocation_registry.items()
                       if name != "iif" and any("Expr" in types for types in (spec.get("arity") or {}).values()))
# How many arguments fhirpathpy evaluates (it drops the projection of `trace(name, projection)`).
_ARGUMENTS_USED = {name: max(spec["arity"]) for name, spec in invocation_registry.items() if spec.get("arity")}
_LOGIC = {"or", "and", "implies"}


def _names(node: dict[str, Any], out: set[str]) -> bool:
    """Collect the names an expression reads from its focus (`name` in `name.given.exists()`);
    False when its value may depend on more than those (external constants, `$this`, a function
    called on the focus itself) outside the arguments of iterating functions."""
    kind = node.get("type")
    children = node.get("children") or ()
    if kind in ("ExternalConstantTerm", "ThisInvocation", "IndexInvocation", "TotalInvocation"):
        return False
    if kind == "InvocationTerm":
        first = children[0] if children else {}
        if first.get("type") == "MemberInvocation":
            out.add((first["children"][0].get("text") or "").strip("`"))
            return True
        return _names(first, out) if first.get("type") not in ("FunctionInvocation",) else False
    if kind == "FunctionInvocation":
        functn = children[0] if children else {}
        parts = functn.get("children") or ()
        name = (parts[0].get("text") or "") if parts else ""
        if name in _ITERATING:
            return True  # arguments are evaluated per item of an (empty, when absent) input
        params = parts[1].get("children") or [] if len(parts) > 1 else []
        return all(_names(c, out) for c in params[:_ARGUMENTS_USED.get(name, len(params))])
    if kind == "Functn":
        return all(_names(c, out) for c in children[1:])
    return all(_names(c, out) for c in children)


_OPAQUE = frozenset({"ThisInvocation", "IndexInvocation", "TotalInvocation"})
_TYPE_FUNCTIONS = frozenset({"ofType", "as", "is"})  # their argument is a type name, not a path
_WORTH_HOISTING = frozenset({"InvocationExpression", "UnionExpression", "ParenthesizedTerm"})
_HOISTED_OPTIONS = {**_OPTIONS, "returnRawData": True}


def _function_name(invocation: dict[str, Any]) -> str:
    functn = (invocation.get("children") or [{}])[0]
    parts = functn.get("children") or [{}]
    return parts[0].get("text") or ""


def _invariant(node: dict[str, Any]) -> bool:
    """Does this subexpression give the same value for every item of an enclosing iteration
    (it starts from `%resource`/`%rootResource`/literals only, and never reads `$this`)?"""
    kind = node.get("type")
    children = node.get("children") or ()
    if kind in _OPAQUE or kind == "MemberInvocation" or kind == "FunctionInvocation":
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
            if _function_name(tail) in _ITERATING or _function_name(tail) in _TYPE_FUNCTIONS:
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
    if kind == "FunctionInvocation" and _function_name(node) in _ITERATING:
        inside = True
    for child in node.get("children") or ():
        if isinstance(child, dict):
            _repeated(child, inside, seen)


def _hoist(node: dict[str, Any], hoisted: list[tuple[str, dict[str, Any]]], inside: bool,
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
    if node.get("type") == "FunctionInvocation" and _function_name(node) in _ITERATING:
        inside = True
    new = dict(node)
    new["children"] = [_hoist(c, hoisted, inside, shared) if isinstance(c, dict) else c for c in children]
    return new


class _Hoisted:
    """An expression with its loop-invariant parts taken out (see `_hoist`)."""

    __slots__ = ("ast", "hoisted", "plain")

    def __init__(self, ast: dict[str, Any]):
        self.plain = ast
        hoisted: list[tuple[str, dict[str, Any]]] = []
        self.ast = _hoist(ast, hoisted, False)
        self.hoisted = [(name, {"children": [sub]}) for name, sub in hoisted]

    def apply(self, node: Any, variables: dict[str, Any]) -> list[Any]:
        if not self.hoisted:
            return apply_parsed_path(node, self.plain, dict(variables), R4_MODEL, _OPTIONS)
        scope = dict(variables)
        try:
            for name, sub in self.hoisted:
                scope[name] = apply_parsed_path(node, sub, dict(scope), R4_MODEL, _HOISTED_OPTIONS)
        except Exception:  # noqa: BLE001 — would not have been evaluated on an empty iteration
            return apply_parsed_path(node, self.plain, dict(variables), R4_MODEL, _OPTIONS)
        return apply_parsed_path(node, self.ast, scope, R4_MODEL, _OPTIONS)


def _truth(result: list[Any]) -> bool | None | str:
    """A FHIRPath result as three-valued logic (None: empty); "?" for a collection that is not a
    singleton (left to the whole expression)."""
    if not result:
        return None
    if len(result) != 1:
        return "?"
    value = result[0]
    return value if isinstance(value, bool) else "?"  # how fhirpathpy reads it depends on the operator


_NOVALUE = object()  # a primitive with extensions but no value (only its `_name` companion)
_NATIVE_FUNCTIONS = frozenset({"exists", "empty", "not", "hasValue", "count", "startsWith", "endsWith",
                               "matches", "length"})
_STRING_ARGUMENT = frozenset({"startsWith", "endsWith", "matches"})


def _equality_filter(functn: dict[str, Any]) -> tuple[str, str] | None:
    """`where(code = 'VALI')` / `exists(code = 'VALI')`: ("code", "VALI"), else None."""
    parts = functn.get("children") or ()
    if len(parts) != 2 or len(parts[1].get("children") or ()) != 1:
        return None
    expr = parts[1]["children"][0]
    if expr.get("type") != "EqualityExpression" or (expr.get("terminalNodeText") or [None])[0] != "=":
        return None
    left, right = expr["children"]
    member = left.get("children") or [{}]
    if left.get("type") != "TermExpression" or member[0].get("type") != "InvocationTerm" \
            or member[0]["children"][0].get("type") != "MemberInvocation":
        return None
    name = (member[0]["children"][0]["children"][0].get("text") or "").strip("`")
    literal = _string_argument({"children": [{}, {"type": "ParamList", "children": [right]}]})
    return (name, literal) if literal is not None else None


def _navigate(items: list[Any], name: str) -> list[Any] | None:
    """`name` of every item (choices by their typed JSON name; a primitive with only its `_name`
    companion counts as a value-less item); None when an item is a primitive."""
    found: list[Any] = []
    for item in items:
        if not isinstance(item, dict):
            return None  # into a primitive: left to fhirpathpy
        value, extra = item.get(name), item.get("_" + name)
        if value is None and extra is None:
            for key in item:
                if key.startswith(name) and len(key) > len(name) and key[len(name)].isupper():
                    value, extra = item[key], item.get("_" + key)
                    break
        if isinstance(value, list) or isinstance(extra, list):
            values = value if isinstance(value, list) else []
            extras = extra if isinstance(extra, list) else []
            for i in range(max(len(values), len(extras))):
                v = values[i] if i < len(values) else None
                if v is not None:
                    found.append(v)
                elif i < len(extras) and extras[i] is not None:
                    found.append(_NOVALUE)
        elif value is not None:
            found.append(value)
        elif extra is not None:
            found.append(_NOVALUE)
    return found



def _invocations(ast: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
    """`a.b.c()` as (the first invocation `a`, then [`b`, `c()`] in order); None for any other
    shape of expression."""
    chain: list[dict[str, Any]] = []
    node = ast
    while node.get("type") == "InvocationExpression" and len(node.get("children") or ()) == 2:
        chain.append(node["children"][1])
        node = node["children"][0]
    if node.get("type") != "TermExpression":
        return None
    term = (node.get("children") or [{}])[0]
    if term.get("type") != "InvocationTerm":
        return None
    chain.reverse()
    return term["children"][0], chain


def _native(ast: dict[str, Any]) -> Callable[[dict[str, Any]], list[Any] | None] | None:
    """A direct evaluator for the commonest invariant operands: a path of element names,
    `extension('url')` and `where(name = 'literal')`, ending with exists()/exists(name =
    'literal')/empty()/not()/hasValue()/count()/length()/startsWith('…')/endsWith('…')/
    matches('…'); None for any other shape. It answers None (→ fhirpathpy) whenever the data
    leaves that simple shape (a primitive on the way, a non-string where a string is needed)."""
    found = _invocations(ast)
    if found is None:
        return None
    chain = [found[0], *found[1]]
    steps: list[tuple[str, Any, Any]] = []  # ("member", name) ("extension", url) ("where", name, literal)
    functions: list[tuple[str, Any]] = []
    for step in chain:
        kind = step.get("type")
        if kind == "MemberInvocation" and not functions:
            steps.append(("member", (step["children"][0].get("text") or "").strip("`"), None))
            continue
        if kind != "FunctionInvocation":
            return None
        functn = step["children"][0]
        name = functn["children"][0].get("text") or ""
        has_argument = len(functn["children"]) > 1
        if name == "extension" and not functions:
            url = _string_argument(functn)
            if url is None:
                return None
            steps.append(("extension", url, None))
        elif name in ("where", "exists") and has_argument and not functions:
            condition = _equality_filter(functn)
            if condition is None:
                return None
            steps.append(("where", condition[0], condition[1]))
            if name == "exists":
                functions.append(("exists", None))
        elif name in _NATIVE_FUNCTIONS:
            argument = _string_argument(functn) if name in _STRING_ARGUMENT else None
            if (name in _STRING_ARGUMENT) != (argument is not None) or (argument is None and has_argument):
                return None
            if name == "matches":
                try:
                    argument = re.compile(argument, re.DOTALL)
                except re.error:
                    return None
            functions.append((name, argument))
        else:
            return None
    if not steps or steps[0][0] != "member" and steps[0][0] != "extension":
        return None

    def evaluate(focus: dict[str, Any]) -> list[Any] | None:
        items: list[Any] | None = [focus]
        for kind, name, literal in steps:
            if kind == "member":
                items = _navigate(items, name)  # type: ignore[arg-type]
            elif kind == "extension":
                found = _navigate(items, "extension")  # type: ignore[arg-type]
                if found is None:
                    return None
                items = [e for e in found if isinstance(e, dict) and e.get("url") == name]
            else:  # where(name = 'literal')
                kept = []
                for item in items:  # type: ignore[union-attr]
                    values = _navigate([item], name)
                    if values is None:
                        return None
                    if len(values) == 1 and isinstance(values[0], str) and values[0] == literal:
                        kept.append(item)
                    elif len(values) == 1 and values[0] is not _NOVALUE and not isinstance(values[0], str):
                        return None  # a comparison fhirpathpy makes with its own types
                items = kept
            if items is None:
                return None
        result: list[Any] = items  # type: ignore[assignment]
        for function, argument in functions:
            if function in _STRING_ARGUMENT or function == "length":
                if not result:
                    continue  # empty in, empty out
                if len(result) != 1 or not isinstance(result[0], str):
                    return None
                text = result[0]
                if function == "startsWith":
                    result = [text.startswith(argument)]
                elif function == "endsWith":
                    result = [text.endswith(argument)]
                elif function == "matches":
                    result = [argument.search(text) is not None]
                else:
                    result = [len(text)]
            elif function == "exists":
                result = [bool(result)]
            elif function == "empty":
                result = [not result]
            elif function == "count":
                result = [len(result)]
            elif function == "hasValue":
                result = [len(result) == 1 and result[0] is not _NOVALUE
                          and not isinstance(result[0], (dict, list))]
            else:  # not
                if not result:
                    result = []
                elif len(result) == 1 and isinstance(result[0], bool):
                    result = [not result[0]]
                else:
                    return None
        if functions and any(r is _NOVALUE or isinstance(r, (dict, list)) for r in result):
            return None
        return result if functions else None

    return evaluate


def _string_argument(functn: dict[str, Any]) -> str | None:
    """The text of a single string-literal argument (`startsWith('#')` → "#"), else None."""
    parts = functn.get("children") or ()
    if len(parts) != 2 or parts[1].get("type") != "ParamList" or len(parts[1].get("children") or ()) != 1:
        return None
    node = parts[1]["children"][0]
    while node.get("type") in ("TermExpression", "LiteralTerm") and len(node.get("children") or ()) == 1:
        node = node["children"][0]
    if node.get("type") != "StringLiteral":
        return None
    text = node.get("text") or ""
    if len(text) < 2 or text[0] != "'" or text[-1] != "'" or "\\" in text:
        return None
    return text[1:-1]


class _Leaf:
    __slots__ = ("ast", "constants", "evaluator", "names", "native", "planned")

    def __init__(self, ast: dict[str, Any], hoist: bool = True):
        self.ast = {"children": [ast]}
        self.evaluator = _Hoisted(self.ast) if hoist else None
        names: set[str] = set()
        self.names: frozenset[str] | None = frozenset(names) if _names(ast, names) and names else None
        self.constants: dict[str, list[Any]] = {}
        self.native = _native(ast)
        self.planned = _Where.of(ast) if self.native is None else None

    def absent(self, focus: Any) -> bool:
        if self.names is None or not isinstance(focus, dict):
            return False
        for name in self.names:
            if name in focus or "_" + name in focus:
                return False
            for key in focus:  # a choice: `value` → `valueQuantity`
                if key.startswith(name) and len(key) > len(name) and key[len(name)].isupper():
                    return False
        return True

    def evaluate(self, focus: Any, node: Any, variables: dict[str, Any], type_path: str) -> list[Any]:
        if self.native is not None and isinstance(focus, dict):
            result = self.native(focus)
            if result is not None:
                return result
        if self.absent(focus):
            key = focus.get("resourceType") or type_path
            constant = self.constants.get(key)
            if constant is None:
                empty = {"resourceType": focus["resourceType"]} if "resourceType" in focus else \
                    ResourceNode.create_node({}, type_path)
                constant = self.constants[key] = apply_parsed_path(empty, self.ast, dict(variables), R4_MODEL,
                                                                   _OPTIONS)
            return constant
        if self.planned is not None and isinstance(focus, dict):
            result = self.planned.evaluate(focus, node, variables, type_path)
            if result is not None:
                return result
        try:
            if self.evaluator is None:
                return apply_parsed_path(node, self.ast, dict(variables), R4_MODEL, _OPTIONS)
            return self.evaluator.apply(node, variables)
        except TypeError:
            if self.ast["children"][0].get("type") == "InequalityExpression":
                return []  # fhirpathpy cannot order these (Quantities without UCUM units): incomparable
            raise


class _Where:
    """`name.where(criteria)` followed by exists()/empty()/not()/count()/trace(…): the items
    are filtered here, each criteria planned like a whole invariant (its `or`/`and`/`implies`
    short-circuit, its invariant parts computed once for all items). fhirpathpy evaluates every
    operand of an `or` (and the criteria of `where` twice): dom-3 took milliseconds per contained
    resource."""

    __slots__ = ("after", "criteria", "hoisted", "name")

    def __init__(self, name: str, criteria: Any, hoisted: list[tuple[str, dict[str, Any]]],
                 after: list[str]):
        self.name = name
        self.criteria = criteria
        self.hoisted = hoisted
        self.after = after

    @staticmethod
    def of(ast: dict[str, Any]) -> _Where | None:
        found = _invocations(ast)
        if found is None or found[0].get("type") != "MemberInvocation":
            return None
        head, chain = found
        name = (head["children"][0].get("text") or "").strip("`")
        if not chain or chain[0].get("type") != "FunctionInvocation" or _function_name(chain[0]) != "where":
            return None
        functn = chain[0]["children"][0]
        params = functn["children"][1].get("children") or [] if len(functn["children"]) > 1 else []
        if len(params) != 1 or _mentions(params[0], _OPAQUE - {"ThisInvocation"}):
            return None
        after = []
        for step in chain[1:]:
            function = _function_name(step) if step.get("type") == "FunctionInvocation" else ""
            if function not in ("exists", "empty", "not", "count", "trace"):
                return None
            if function != "trace" and len(step["children"][0]["children"]) > 1:
                return None
            after.append(function)
        hoisted: list[tuple[str, dict[str, Any]]] = []
        criteria = _hoist(params[0], hoisted, True)
        return _Where(name, _plan(criteria, hoist=False),
                      [(n, {"children": [sub]}) for n, sub in hoisted], after)

    def evaluate(self, focus: dict[str, Any], node: Any, variables: dict[str, Any],
                 type_path: str) -> list[Any] | None:
        items = _navigate([focus], self.name)
        if items is None:
            return None
        scope: dict[str, Any] | None = None
        kept = []
        for item in items:
            if not isinstance(item, dict):
                return None
            if "resourceType" in item:
                item_node: Any = item
                item_path = item["resourceType"]
            else:
                item_path = f"{type_path}.{self.name}"
                item_node = ResourceNode.create_node(item, item_path)
            if scope is None:
                scope = dict(variables)
                for name, sub in self.hoisted:
                    scope[name] = apply_parsed_path(node, sub, dict(scope), R4_MODEL, _HOISTED_OPTIONS)
            truth = _run(self.criteria, item, item_node, scope, item_path)
            if truth == "?":
                return None
            if truth is True:
                kept.append(item)
        result: list[Any] = kept
        for function in self.after:
            if function == "exists":
                result = [bool(result)]
            elif function == "empty":
                result = [not result]
            elif function == "count":
                result = [len(result)]
            elif function == "not":
                if len(result) == 1 and isinstance(result[0], bool):
                    result = [not result[0]]
                elif result:
                    return None
        if any(not isinstance(r, (bool, int)) for r in result):
            return None  # items themselves: left to fhirpathpy, which knows their types
        return result


def _mentions(node: Any, kinds: frozenset[str]) -> bool:
    if isinstance(node, dict):
        if node.get("type") in kinds:
            return True
        return any(_mentions(c, kinds) for c in node.get("children") or ())
    return False


class _Logic:
    __slots__ = ("left", "op", "right")

    def __init__(self, op: str, left: Any, right: Any):
        self.op, self.left, self.right = op, left, right


class _Not:
    __slots__ = ("inner",)

    def __init__(self, inner: Any):
        self.inner = inner


def _plan(ast: dict[str, Any], hoist: bool = True) -> Any:
    """Split `or`/`and`/`implies` (and `(…).not()`) so that they can short-circuit."""
    node = ast
    while node.get("type") == "TermExpression" and node["children"][0].get("type") == "ParenthesizedTerm":
        node = node["children"][0]["children"][0]
    op = (node.get("terminalNodeText") or [None])[0]
    if node.get("type") in ("OrExpression", "AndExpression", "ImpliesExpression") and op in _LOGIC \
            and len(node.get("children") or ()) == 2:
        return _Logic(op, _plan(node["children"][0], hoist), _plan(node["children"][1], hoist))
    children = node.get("children") or ()
    if node.get("type") == "InvocationExpression" and len(children) == 2 \
            and children[1].get("type") == "FunctionInvocation" and _function_name(children[1]) == "not" \
            and len(children[1]["children"][0]["children"]) == 1:
        inner = _plan(children[0], hoist)
        if not isinstance(inner, _Leaf):
            return _Not(inner)
    return _Leaf(node, hoist)


def _run(plan: Any, focus: Any, node: Any, variables: dict[str, Any], type_path: str) -> Any:
    if isinstance(plan, _Leaf):
        return _truth(plan.evaluate(focus, node, variables, type_path))
    if isinstance(plan, _Not):
        inner = _run(plan.inner, focus, node, variables, type_path)
        return inner if inner is None or inner == "?" else not inner
    left = _run(plan.left, focus, node, variables, type_path)
    if left == "?":
        return "?"
    op = plan.op
    if op == "or" and left is True:
        return True
    if op == "and" and left is False:
        return False
    if op == "implies" and left is False:
        return True
    right = _run(plan.right, focus, node, variables, type_path)
    if right == "?":
        return "?"
    if op == "or":
        return right if left is False else (True if right is True else None)
    if op == "and":
        return right if left is True else (False if right is False else None)
    return right if left is True else (True if right is True else None)  # implies, left empty


def _whole(tree: dict[str, Any]) -> Callable[[Any, dict[str, Any]], list[Any]]:
    def evaluate(node: Any, variables: dict[str, Any]) -> list[Any]:
        return apply_parsed_path(node, tree, dict(variables), R4_MODEL, _OPTIONS)
    return evaluate


def _whole_hoisted(tree: dict[str, Any]) -> Callable[[Any, dict[str, Any]], list[Any]]:
    return _Hoisted(tree).apply


class Compiled:
    """One expression: how to evaluate it, or why it is not evaluated."""

    __slots__ = ("fn", "plain", "plan", "skip")

    def __init__(self, fn: Callable[..., list[Any]] | None, skip: str | None, plan: Any = None,
                 plain: Callable[..., list[Any]] | None = None):
        self.fn = fn
        self.skip = skip
        self.plan = plan
        self.plain = plain

    def failed(self, value: Any, extra: Any, type_path: str, variables: dict[str, Any]) -> bool:
        """Does the expression evaluate to false on this value? (Exceptions propagate.)"""
        if isinstance(value, dict) and "resourceType" in value:
            node: Any = value
        else:
            node = ResourceNode.create_node(value, type_path, extra)
        outcome = _run(self.plan, value, node, variables, type_path)
        if outcome == "?":
            return self.fn(node, variables) == [False]  # type: ignore[misc]
        return outcome is False

    def failed_plainly(self, value: Any, extra: Any, type_path: str, variables: dict[str, Any]) -> bool:
        """The same question answered by fhirpathpy alone on the whole expression (for tests)."""
        if isinstance(value, dict) and "resourceType" in value:
            node: Any = value
        else:
            node = ResourceNode.create_node(value, type_path, extra)
        return self.plain(node, variables) == [False]  # type: ignore[misc]


class Invariants:
    """Compiles and evaluates constraints; one instance per validator (thread-safe cache)."""

    def __init__(self, cross_check: bool = False) -> None:
        self._compiled: dict[str, Compiled] = {}
        self._lock = threading.Lock()
        # tests: evaluate every invariant both ways (short-circuits and direct evaluation, and
        # fhirpathpy on the whole expression) and record any disagreement
        self.cross_check = cross_check
        self.disagreements: list[tuple[str, str, bool, bool]] = []

    def compiled(self, expression: str) -> Compiled:
        found = self._compiled.get(expression)
        if found is not None:
            return found
        try:
            tree = parse(expression)
        except Exception as exc:  # noqa: BLE001 — fhirpathpy's parser raises plain Exceptions
            found = Compiled(None, f"fhirpathpy cannot parse it ({exc})")
        else:
            used: set[str] = set()
            _functions(tree, used)
            missing = sorted(used - SUPPORTED_FUNCTIONS)
            system_types: set[str] = set()
            _system_type_tests(tree, system_types)
            if missing:
                found = Compiled(None, "uses " + ", ".join(f"{m}()" for m in missing)
                                 + ", which the FHIRPath engine (fhirpathpy) does not provide")
            elif system_types:
                found = Compiled(None, "tests FHIR values against the System type "
                                 + ", ".join(sorted(system_types)) + ", which fhirpathpy answers false for FHIR "
                                 "primitives (the reference engine answers true)")
            else:
                _as_to_of_type(tree)
                found = Compiled(_whole_hoisted(tree), None, _plan(tree["children"][0]), _whole(tree))
        with self._lock:
            self._compiled.setdefault(expression, found)
        return found

    def skip_reason(self, constraint: dict[str, Any]) -> str | None:
        if constraint.get("key") in NATIVE:
            return "checked natively by invariants.scan"
        return self.compiled(constraint["expression"]).skip

    def check(self, constraint: dict[str, Any], value: Any, extra: Any, type_path: str,
              resource: dict[str, Any], root: dict[str, Any], expression: str, issues: list[Issue]) -> None:
        """Evaluate one constraint on one element value; append an issue when it fails."""
        compiled = self.compiled(constraint["expression"])
        if compiled.fn is None:
            return
        try:
            variables = {"resource": resource, "rootResource": root}
            failed = compiled.failed(value, extra, type_path, variables)
            if self.cross_check:
                plain = compiled.failed_plainly(value, extra, type_path, variables)
                if plain != failed:
                    self.disagreements.append((constraint.get("key") or "?", expression, failed, plain))
        except Exception as exc:  # noqa: BLE001 — an engine failure must never fail the resource
            log.debug("invariant %s failed to evaluate at %s: %r", constraint.get("key"), expression, exc)
            issues.append(Issue("information", "informational",
                                f"Invariant {constraint.get('key')} could not be checked at {expression}: "
                                f"the FHIRPath engine failed ({type(exc).__name__}: {str(exc)[:120]})",
                                [expression]))
            return
        if failed:
            severity = "warning" if constraint.get("severity") == "warning" else "error"
            human = constraint.get("human") or constraint["expression"]
            issues.append(Issue(severity, "invariant",
                                f"Constraint {constraint.get('key')} failed: {human} "
                                f"[{constraint['expression']}]", [expression]))


# -- the invariants of every element, checked on the JSON itself ---------------------------------

NATIVE = NATIVE_KEYS


def scan(value: Any, expression: str, issues: list[Issue]) -> None:
    """ele-1 and ext-1 over a whole resource (nested resources included)."""
    if isinstance(value, dict):
        _scan_object(value, expression, issues, False)


def _has_choice_value(obj: dict[str, Any]) -> bool:
    for key in obj:
        if key.startswith("value") and len(key) > 5 and key[5].isupper():
            return True
        if key.startswith("_value") and len(key) > 6 and key[6].isupper():
            return True
    return False


def _scan_object(obj: dict[str, Any], expression: str, issues: list[Issue], is_extension: bool) -> None:
    if is_extension:
        has_extension = "extension" in obj
        if has_extension == _has_choice_value(obj):
            issues.append(Issue("error", "invariant",
                                "Constraint ext-1 failed: Must have either extensions or value[x], not both "
                                + ("(this extension has both)" if has_extension else "(this extension has neither)")
                                + " [extension.exists() != value.exists()]", [expression]))
    elif "resourceType" not in obj and len(obj) == 1 and "id" in obj:
        issues.append(Issue("error", "invariant", "Constraint ele-1 failed: All FHIR elements must have a @value "
                                                  "or children (this one only has an id) "
                                                  "[hasValue() or (children().count() > id.count())]",
                            [expression]))
    for key, value in obj.items():
        if key[:1] == "_":
            name = key[1:]
            base = obj.get(name)
            if isinstance(value, list):
                for i, extra in enumerate(value):
                    if isinstance(extra, dict):
                        has_value = isinstance(base, list) and i < len(base) and base[i] is not None
                        _scan_companion(extra, f"{expression}.{name}[{i}]", issues, has_value)
            elif isinstance(value, dict):
                _scan_companion(value, f"{expression}.{name}", issues, base is not None)
            continue
        extension = key == "extension" or key == "modifierExtension"
        if isinstance(value, list):
            for i, item in enumerate(value):
                if isinstance(item, dict):
                    _scan_object(item, f"{expression}.{key}[{i}]", issues, extension)
        elif isinstance(value, dict):
            _scan_object(value, f"{expression}.{key}", issues, extension)


def _scan_companion(extra: dict[str, Any], expression: str, issues: list[Issue], has_value: bool) -> None:
    if not has_value and "extension" not in extra:
        issues.append(Issue("error", "invariant", "Constraint ele-1 failed: All FHIR elements must have a @value "
                                                  "or children (this primitive has neither a value nor an "
                                                  "extension) [hasValue() or (children().count() > id.count())]",
                            [expression]))
    for i, item in enumerate(extra.get("extension") or ()):
        if isinstance(item, dict):
            _scan_object(item, f"{expression}.extension[{i}]", issues, True)
