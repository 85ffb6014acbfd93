"""A direct evaluator, on the JSON itself, for the commonest shape of invariant operand.

`a.b.exists()`/`empty()`/`not()`/`hasValue()`/`count()`/`length()`/`startsWith('…')`/
`endsWith('…')`/`matches('…')` (with `extension('url')` and `where(name = 'literal')` on the
way) answers without fhirpathpy; whenever the data leaves that simple shape the evaluator
answers None and fhirpathpy decides.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from fhir_server.validation.invariant_fhirpath import R4_MODEL, invocation_chain, string_argument

# The type suffixes a choice element's JSON name may carry (valueString, onsetPeriod…), from
# fhirpathpy's R4 model: `implementation` must not find `implementationGuide`.
_CHOICE_TYPES = frozenset(t for types in R4_MODEL["choiceTypePaths"].values() for t in types)

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
    literal = string_argument({"children": [{}, {"type": "ParamList", "children": [right]}]})
    return (name, literal) if literal is not None else None


def navigate(items: list[Any], name: str) -> list[Any] | None:
    """`name` of every item (choices by their typed JSON name; a primitive with only its `_name`
    companion counts as a value-less item); None when an item is a primitive."""
    found: list[Any] = []
    for item in items:
        if not isinstance(item, dict):
            return None  # into a primitive: left to fhirpathpy
        value, extra = item.get(name), item.get("_" + name)
        if value is None and extra is None:
            for key in item:
                if key.startswith(name) and key[len(name):] in _CHOICE_TYPES:
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


def native_evaluator(ast: dict[str, Any]) -> Callable[[dict[str, Any]], list[Any] | None] | None:
    """A direct evaluator for the commonest invariant operands: a path of element names,
    `extension('url')` and `where(name = 'literal')`, ending with exists()/exists(name =
    'literal')/empty()/not()/hasValue()/count()/length()/startsWith('…')/endsWith('…')/
    matches('…'); None for any other shape. It answers None (→ fhirpathpy) whenever the data
    leaves that simple shape (a primitive on the way, a non-string where a string is needed)."""
    found = invocation_chain(ast)
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
            url = string_argument(functn)
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
            argument = string_argument(functn) if name in _STRING_ARGUMENT else None
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
                items = navigate(items, name)  # type: ignore[arg-type]
            elif kind == "extension":
                found = navigate(items, "extension")  # type: ignore[arg-type]
                if found is None:
                    return None
                items = [e for e in found if isinstance(e, dict) and e.get("url") == name]
            else:  # where(name = 'literal')
                kept = []
                for item in items:  # type: ignore[union-attr]
                    values = navigate([item], name)
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
