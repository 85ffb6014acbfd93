"""Value rules of a profile: `fixed[x]`, `pattern[x]`, and the limits on primitives
(`maxLength`, `minValue[x]`/`maxValue[x]`, an extra `regex`).

* fixed: the instance equals the value exactly (same properties, same array items in order,
  nothing more);
* pattern: the instance contains the pattern: every property of the pattern is present with a
  matching value, every item of a pattern array matches some item of the instance's array;
  primitives are equal.

Numbers compare by value (`1.50` = `1.5`); strings exactly.
"""

from __future__ import annotations

from typing import Any

from fhir_server.definitions.primitives import describe


def _same_scalar(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return float(a) == float(b)
    return a == b


def equals(fixed: Any, value: Any) -> bool:
    """`value` is exactly `fixed`."""
    if isinstance(fixed, dict):
        if not isinstance(value, dict) or fixed.keys() != value.keys():
            return False
        return all(equals(fixed[k], value[k]) for k in fixed)
    if isinstance(fixed, list):
        if not isinstance(value, list) or len(fixed) != len(value):
            return False
        return all(equals(f, v) for f, v in zip(fixed, value, strict=True))
    return _same_scalar(fixed, value)


def contains(pattern: Any, value: Any) -> bool:
    """`value` has everything `pattern` has."""
    if isinstance(pattern, dict):
        if not isinstance(value, dict):
            return False
        return all(k in value and contains(v, value[k]) for k, v in pattern.items())
    if isinstance(pattern, list):
        if not isinstance(value, list):
            return False
        return all(any(contains(p, v) for v in value) for p in pattern)
    return _same_scalar(pattern, value)


def show(value: Any) -> str:
    """A compact JSON-like rendering for messages."""
    if isinstance(value, (dict, list)):
        import orjson
        text = orjson.dumps(value, default=float).decode()
        return text if len(text) <= 200 else text[:197] + "..."
    if isinstance(value, str):
        return repr(value)
    return describe(value)


def _comparable(bound: Any, value: Any) -> tuple[Any, Any] | None:
    """Both as numbers, or both as same-precision date/time strings; None if not comparable."""
    if isinstance(bound, bool) or isinstance(value, bool):
        return None
    if isinstance(bound, (int, float)) and isinstance(value, (int, float)):
        return float(bound), float(value)
    if isinstance(bound, str) and isinstance(value, str) and len(bound) == len(value):
        return bound, value  # dates, times, instants of the same precision order as text
    if isinstance(bound, dict) and isinstance(value, dict):  # Quantity
        if bound.get("system") == value.get("system") and bound.get("code") == value.get("code") \
                and "value" in bound and "value" in value:
            return float(bound["value"]), float(value["value"])
    return None


def primitive_problems(node: Any, value: Any) -> list[str]:
    """What `value` breaks among the primitive limits the profile puts on `node`."""
    problems = []
    if node.max_length is not None and isinstance(value, str) and len(value) > node.max_length:
        problems.append(f"{len(value)} characters, more than the maximum length {node.max_length} set by the "
                        "profile")
    if node.regex is not None and isinstance(value, str) and node.regex.fullmatch(value) is None:
        problems.append(f"{show(value)} does not match the pattern {node.regex.pattern!r} required by the profile")
    for bound, below in ((node.min_value, True), (node.max_value, False)):
        if bound is None:
            continue
        pair = _comparable(bound[1], value)
        if pair is None:
            continue
        limit, actual = pair
        if (below and actual < limit) or (not below and actual > limit):
            word = "minimum" if below else "maximum"
            problems.append(f"{show(value)} is {'below' if below else 'above'} the {word} {show(bound[1])} "
                            "set by the profile")
    return problems
