"""How an invariant is evaluated quickly: a plan of its top-level logic, evaluated with
short-circuits in three-valued logic.

`or`/`and`/`implies` (and `(…).not()`) are split so that they short-circuit; each operand (a
leaf) is evaluated by the direct evaluator when it can be (`invariant_native`), once per type
when it reads only elements absent from the focus, and otherwise by fhirpathpy with its
invariant parts hoisted (`invariant_hoisting`). `name.where(criteria)…` operands filter the
items here, their criteria planned like a whole invariant.
"""

from __future__ import annotations

from typing import Any

from fhirpathpy import apply_parsed_path
from fhirpathpy.engine.nodes import ResourceNode

from fhir_server.validation.invariant_fhirpath import (
    ARGUMENTS_USED,
    HOISTED_OPTIONS,
    ITERATING,
    OPAQUE,
    OPTIONS,
    R4_MODEL,
    function_name,
    invocation_chain,
    mentions,
)
from fhir_server.validation.invariant_hoisting import Hoisted, hoist_invariants
from fhir_server.validation.invariant_native import native_evaluator, navigate

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
        if name in ITERATING:
            return True  # arguments are evaluated per item of an (empty, when absent) input
        params = parts[1].get("children") or [] if len(parts) > 1 else []
        return all(_names(c, out) for c in params[:ARGUMENTS_USED.get(name, len(params))])
    if kind == "Functn":
        return all(_names(c, out) for c in children[1:])
    return all(_names(c, out) for c in children)


def _truth(result: list[Any]) -> bool | None | str:
    """A FHIRPath result as three-valued logic (None: empty); "?" for a collection that is not a
    singleton (left to the whole expression)."""
    if not result:
        return None
    if len(result) != 1:
        return "?"
    value = result[0]
    return value if isinstance(value, bool) else "?"  # how fhirpathpy reads it depends on the operator


class _Leaf:
    __slots__ = ("ast", "constants", "evaluator", "names", "native", "planned")

    def __init__(self, ast: dict[str, Any], hoist: bool = True):
        self.ast = {"children": [ast]}
        self.evaluator = Hoisted(self.ast) if hoist else None
        names: set[str] = set()
        self.names: frozenset[str] | None = frozenset(names) if _names(ast, names) and names else None
        self.constants: dict[str, list[Any]] = {}
        self.native = native_evaluator(ast)
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
                                                                   OPTIONS)
            return constant
        if self.planned is not None and isinstance(focus, dict):
            result = self.planned.evaluate(focus, node, variables, type_path)
            if result is not None:
                return result
        try:
            if self.evaluator is None:
                return apply_parsed_path(node, self.ast, dict(variables), R4_MODEL, OPTIONS)
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
        found = invocation_chain(ast)
        if found is None or found[0].get("type") != "MemberInvocation":
            return None
        head, chain = found
        name = (head["children"][0].get("text") or "").strip("`")
        if not chain or chain[0].get("type") != "FunctionInvocation" or function_name(chain[0]) != "where":
            return None
        functn = chain[0]["children"][0]
        params = functn["children"][1].get("children") or [] if len(functn["children"]) > 1 else []
        if len(params) != 1 or mentions(params[0], OPAQUE - {"ThisInvocation"}):
            return None
        after = []
        for step in chain[1:]:
            function = function_name(step) if step.get("type") == "FunctionInvocation" else ""
            if function not in ("exists", "empty", "not", "count", "trace"):
                return None
            if function != "trace" and len(step["children"][0]["children"]) > 1:
                return None
            after.append(function)
        hoisted: list[tuple[str, dict[str, Any]]] = []
        criteria = hoist_invariants(params[0], hoisted, True)
        return _Where(name, make_plan(criteria, hoist=False),
                      [(n, {"children": [sub]}) for n, sub in hoisted], after)

    def evaluate(self, focus: dict[str, Any], node: Any, variables: dict[str, Any],
                 type_path: str) -> list[Any] | None:
        items = navigate([focus], self.name)
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
                    scope[name] = apply_parsed_path(node, sub, dict(scope), R4_MODEL, HOISTED_OPTIONS)
            truth = run_plan(self.criteria, item, item_node, scope, item_path)
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


class _Logic:
    __slots__ = ("left", "op", "right")

    def __init__(self, op: str, left: Any, right: Any):
        self.op, self.left, self.right = op, left, right


class _Not:
    __slots__ = ("inner",)

    def __init__(self, inner: Any):
        self.inner = inner


def make_plan(ast: dict[str, Any], hoist: bool = True) -> Any:
    """Split `or`/`and`/`implies` (and `(…).not()`) so that they can short-circuit."""
    node = ast
    while node.get("type") == "TermExpression" and node["children"][0].get("type") == "ParenthesizedTerm":
        node = node["children"][0]["children"][0]
    op = (node.get("terminalNodeText") or [None])[0]
    if node.get("type") in ("OrExpression", "AndExpression", "ImpliesExpression") and op in _LOGIC \
            and len(node.get("children") or ()) == 2:
        return _Logic(op, make_plan(node["children"][0], hoist), make_plan(node["children"][1], hoist))
    children = node.get("children") or ()
    if node.get("type") == "InvocationExpression" and len(children) == 2 \
            and children[1].get("type") == "FunctionInvocation" and function_name(children[1]) == "not" \
            and len(children[1]["children"][0]["children"]) == 1:
        inner = make_plan(children[0], hoist)
        if not isinstance(inner, _Leaf):
            return _Not(inner)
    return _Leaf(node, hoist)


def run_plan(plan: Any, focus: Any, node: Any, variables: dict[str, Any], type_path: str) -> Any:
    if isinstance(plan, _Leaf):
        return _truth(plan.evaluate(focus, node, variables, type_path))
    if isinstance(plan, _Not):
        inner = run_plan(plan.inner, focus, node, variables, type_path)
        return inner if inner is None or inner == "?" else not inner
    left = run_plan(plan.left, focus, node, variables, type_path)
    if left == "?":
        return "?"
    op = plan.op
    if op == "or" and left is True:
        return True
    if op == "and" and left is False:
        return False
    if op == "implies" and left is False:
        return True
    right = run_plan(plan.right, focus, node, variables, type_path)
    if right == "?":
        return "?"
    if op == "or":
        return right if left is False else (True if right is True else None)
    if op == "and":
        return right if left is True else (False if right is False else None)
    return right if left is True else (True if right is True else None)  # implies, left empty
