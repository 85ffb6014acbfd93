"""fhirpathpy as the invariants use it: the R4 model, the options and the FHIR functions added
to it (`hasValue()`), and how to read the shapes of its parse trees (an invocation chain
`a.b.c()`, a function's name, a single string-literal argument).

Shared by the rewrites, the hoisting, the direct evaluator and the planner of invariants.
"""

from __future__ import annotations

from typing import Any

from fhirpathpy.engine.invocations import invocation_registry
from fhirpathpy.models import models as fhirpath_models

R4_MODEL = fhirpath_models["r4"]


def _has_value(inputs: list[Any]) -> bool:
    return len(inputs) == 1 and inputs[0] is not None and not isinstance(inputs[0], (dict, list))


# FHIR's additions to FHIRPath that fhirpathpy lacks and that are cheap to provide exactly.
USER_FUNCTIONS: dict[str, dict[str, Any]] = {
    "hasValue": {"fn": _has_value},
}
SUPPORTED_FUNCTIONS = frozenset(invocation_registry) | frozenset(USER_FUNCTIONS)
OPTIONS = {"userInvocationTable": USER_FUNCTIONS, "traceFn": lambda *_: None}

# Functions whose arguments are evaluated once per input item (never on an empty input).
ITERATING = frozenset(name for name, spec in invocation_registry.items()
                      if name != "iif" and any("Expr" in types for types in (spec.get("arity") or {}).values()))
# How many arguments fhirpathpy evaluates (it drops the projection of `trace(name, projection)`).
ARGUMENTS_USED = {name: max(spec["arity"]) for name, spec in invocation_registry.items() if spec.get("arity")}
OPAQUE = frozenset({"ThisInvocation", "IndexInvocation", "TotalInvocation"})
HOISTED_OPTIONS = {**OPTIONS, "returnRawData": True}


def function_name(invocation: dict[str, Any]) -> str:
    functn = (invocation.get("children") or [{}])[0]
    parts = functn.get("children") or [{}]
    return parts[0].get("text") or ""


def invocation_chain(ast: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
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


def string_argument(functn: dict[str, Any]) -> str | None:
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


def mentions(node: Any, kinds: frozenset[str]) -> bool:
    if isinstance(node, dict):
        if node.get("type") in kinds:
            return True
        return any(mentions(c, kinds) for c in node.get("children") or ())
    return False
