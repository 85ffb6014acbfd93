"""FHIRPath Patch (a `Parameters` resource of `operation`s: add, insert, delete, replace, move).

Paths are located with a small evaluator that knows where each value lives (container, key,
index), which a value-returning FHIRPath engine cannot tell: element names, choice names,
`[n]`, `first()`, `last()` and `where(a.b = 'literal')`. Anything else is refused with a clear
400 rather than guessed. What an element is (repeating, a choice) comes from the definitions,
through `element_of(path)`, so `add` makes a one-item array of a repeating element and a choice
takes the JSON name of its value's type (`deceasedDateTime`). Each operation's growth of the
resource is measured before it is done (`limits.py`).
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from typing import Any

from fhir_server.errors import FhirError, Issue
from fhir_server.patch.limits import Limits, Size, check_count, size_of

_STEP = re.compile(r"""\s*(?:
    (?P<where>where\((?P<cond>(?:[^()']|'(?:[^'\\]|\\.)*')*)\))
  | (?P<fn>first|last)\(\)
  | (?P<name>[A-Za-z][A-Za-z0-9_]*)(?:\[(?P<index>[0-9]{1,9})\])?
)\s*""", re.VERBOSE)
_COND = re.compile(r"^\s*(?P<path>[A-Za-z][A-Za-z0-9_.]*)\s*=\s*"
                   r"(?P<lit>'(?:[^'\\]|\\.)*'|-?[0-9]{1,18}(?:\.[0-9]+)?|true|false)\s*$")


def _bad(message: str, status: int = 400) -> FhirError:
    return FhirError(status, Issue("error", "invalid" if status == 400 else "processing", f"FHIRPath Patch: {message}"))


@dataclass
class _Loc:
    container: Any  # dict (or None for the resource itself)
    key: str | None
    index: int | None

    def get(self, root):
        if self.container is None:
            return root
        value = self.container[self.key]
        return value[self.index] if self.index is not None else value


def _split_steps(path: str) -> list[str]:
    steps, depth, quote, current = [], 0, False, ""
    for ch in path:
        if ch == "'" and depth:
            quote = not quote
        if not quote:
            depth += ch == "("
            depth -= ch == ")"
        if ch == "." and depth == 0 and not quote:
            steps.append(current)
            current = ""
        else:
            current += ch
    steps.append(current)
    return steps


def locate(resource: dict[str, Any], path: str) -> list[_Loc]:
    steps = _split_steps(path.strip())
    if not steps or steps[0] != resource.get("resourceType"):
        raise _bad(f"the path {path!r} must start with {resource.get('resourceType')}")
    locs = [_Loc(None, None, None)]
    for text in steps[1:]:
        match = _STEP.fullmatch(text)
        if not match:
            raise _bad(f"{text!r} in {path!r} is beyond what this server evaluates in a patch path "
                       f"(names, [n], first(), last(), where(x = 'literal'))")
        if match["where"]:
            cond = _COND.match(match["cond"])
            if not cond:
                raise _bad(f"where({match['cond']}) is not of the form where(element = 'literal')")
            locs = [loc for loc in locs if _holds(loc.get(resource), cond["path"], _literal(cond["lit"]))]
        elif match["fn"]:
            locs = locs[:1] if match["fn"] == "first" else locs[-1:]
        else:
            locs = _children(resource, locs, match["name"])
            if match["index"] is not None:
                n = int(match["index"])
                locs = locs[n:n + 1]
    return locs


def _children(root, locs: list[_Loc], name: str) -> list[_Loc]:
    out = []
    for loc in locs:
        value = loc.get(root)
        if not isinstance(value, dict):
            continue
        key = name if name in value else next(
            (k for k in value if k.startswith(name) and len(k) > len(name) and k[len(name)].isupper()), None)
        if key is None:
            continue
        if isinstance(value[key], list):
            out.extend(_Loc(value, key, i) for i in range(len(value[key])))
        else:
            out.append(_Loc(value, key, None))
    return out


def _holds(value: Any, path: str, literal: Any) -> bool:
    current = [value]
    for name in path.split("."):
        nxt = []
        for v in current:
            if isinstance(v, dict) and name in v:
                nxt.extend(v[name] if isinstance(v[name], list) else [v[name]])
        current = nxt
    return literal in current


def _literal(text: str) -> Any:
    if text.startswith("'"):
        return text[1:-1].replace("\\'", "'")
    if text in ("true", "false"):
        return text == "true"
    return float(text) if "." in text else int(text)


def _parts(parameter: dict[str, Any]) -> dict[str, Any]:
    parts = parameter.get("part") or []
    if not isinstance(parts, list) or not all(isinstance(part, dict) for part in parts):
        raise _bad("an operation's part must be an array of parameters")
    return {part.get("name"): part for part in parts}


def _value_type(part: dict[str, Any] | None) -> str | None:
    """`valueDateTime` → `DateTime`: the type suffix a choice element's JSON name takes."""
    for key in part or {}:
        if key.startswith("value") and len(key) > 5:
            return key[5:]
    return None


def _clean(path: str) -> str:
    """The element path of a patch path: `Patient.name[0].where(use='x').given` → `Patient.name.given`."""
    return ".".join(_STEP.fullmatch(s)["name"] for s in _split_steps(path)
                    if _STEP.fullmatch(s) and _STEP.fullmatch(s)["name"])


def _value(part: dict[str, Any] | None) -> Any:
    """The value of a `value` part: its `value[x]`, or an element built from its own parts."""
    if part is None:
        raise _bad("the operation has no value")
    for key, value in part.items():
        if key.startswith("value") and len(key) > 5:
            return copy.deepcopy(value)  # a later operation may change it: the body stays as sent
    if part.get("part"):
        inner = part["part"]
        if not isinstance(inner, list) or not all(isinstance(p, dict) and isinstance(p.get("name"), str)
                                                  for p in inner):
            raise _bad(f"the parts of {part.get('name')!r} must be parameters with a name")
        return {p["name"]: _value(p) for p in inner}
    raise _bad(f"the part {part.get('name')!r} has no value[x] and no parts")


def apply(resource: dict[str, Any], parameters: Any, element_of=lambda path: None, limits: Limits = Limits(),
          start_size: int | None = None) -> dict[str, Any]:
    """`element_of(path)` → the ElementModel at an element path (`Patient.name.given`) or None;
    `start_size`: the stored JSON's length (estimated if None)."""
    if not isinstance(parameters, dict) or parameters.get("resourceType") != "Parameters":
        raise _bad("a FHIRPath Patch body is a Parameters resource")
    operations = parameters.get("parameter") or []
    if not isinstance(operations, list):
        raise _bad("Parameters.parameter must be an array of operations")
    check_count(len(operations), limits)
    size = Size(size_of(resource) if start_size is None else start_size, limits)
    result = copy.deepcopy(resource)
    for number, parameter in enumerate(operations):
        if not isinstance(parameter, dict) or parameter.get("name") != "operation":
            raise _bad(f"parameter {number} is not an 'operation'")
        parts = _parts(parameter)
        kind = (parts.get("type") or {}).get("valueCode")
        path = (parts.get("path") or {}).get("valueString")
        if not kind or not path:
            raise _bad(f"operation {number} needs a type and a path")
        _operation(result, kind, path, parts, number, element_of, size)
    return result


def _operation(resource, kind: str, path: str, parts: dict[str, Any], number: int, element_of, size: Size) -> None:
    if kind == "add":
        name = (parts.get("name") or {}).get("valueString")
        if not name:
            raise _bad(f"operation {number} (add) needs a name")
        element = element_of(f"{_clean(path)}.{name}")
        key = name
        if element is not None and element.is_choice:
            suffix = _value_type(parts.get("value"))
            if not suffix or f"{name}{suffix}" not in element.json_names:
                raise _bad(f"operation {number}: {name} takes a value of type "
                           f"{', '.join(n[len(name):] for n in element.json_names)}", 422)
            key = f"{name}{suffix}"
        locs = _one_or_more(resource, path, number)
        size.grow(size_of(_value(parts.get("value")), size.room()) * len(locs), 0, number, "add")
        for loc in locs:
            target = loc.get(resource)
            if not isinstance(target, dict):
                raise _bad(f"operation {number}: {path} is not an element that can hold {name!r}", 422)
            value = _value(parts.get("value"))  # a copy for each element
            if key in target and isinstance(target[key], list):
                target[key].append(value)
            elif key in target or (key != name and any(k.startswith(name) for k in target)):
                raise _bad(f"operation {number}: {path}.{name} already has a value; use replace", 422)
            else:
                target[key] = [value] if element is not None and element.is_array else value
    elif kind == "replace":
        loc = _exactly_one(resource, path, number)
        if loc.container is None:
            raise _bad(f"operation {number}: the resource itself cannot be replaced", 422)
        value = _value(parts.get("value"))
        size.grow(size_of(value, size.room()), size_of(loc.get(resource)), number, "replace")
        last = _split_steps(path)[-1]
        suffix = _value_type(parts.get("value"))
        if loc.index is None and loc.key != last and loc.key.startswith(last) and suffix:
            # a choice element: the new value's type names the JSON element (deceasedDateTime)
            del loc.container[loc.key]
            loc.container[f"{last}{suffix}"] = value
        elif loc.index is not None:
            loc.container[loc.key][loc.index] = value
        else:
            loc.container[loc.key] = value
    elif kind == "delete":
        locs = locate(resource, path)
        if len(locs) > 1:
            raise _bad(f"operation {number}: {path} matches {len(locs)} elements; delete takes one", 422)
        size.grow(0, sum(size_of(loc.get(resource)) for loc in locs), number, "delete")
        for loc in locs:
            _remove(loc)
    elif kind in ("insert", "move"):
        container, key = _list_of(resource, path, number)
        items = container.setdefault(key, [])
        if kind == "insert":
            index = _index(parts, "index", number, len(items))
            value = _value(parts.get("value"))
            size.grow(size_of(value, size.room()), 0, number, "insert")
            items.insert(index, value)
        else:
            source = _index(parts, "source", number, len(items) - 1)
            destination = _index(parts, "destination", number, len(items) - 1)
            size.grow(0, 0, number, "move")
            items.insert(destination, items.pop(source))
    else:
        raise _bad(f"operation {number}: type {kind!r} is not add, insert, delete, replace or move")


def _one_or_more(resource, path: str, number: int) -> list[_Loc]:
    locs = locate(resource, path)
    if not locs:
        raise _bad(f"operation {number}: {path} matches nothing", 422)
    return locs


def _exactly_one(resource, path: str, number: int) -> _Loc:
    locs = _one_or_more(resource, path, number)
    if len(locs) > 1:
        raise _bad(f"operation {number}: {path} matches {len(locs)} elements, expected one", 422)
    return locs[0]


def _list_of(resource, path: str, number: int) -> tuple[dict[str, Any], str]:
    """insert/move: `path` names a repeating element; (its parent, its name)."""
    steps = _split_steps(path)
    if len(steps) < 2 or not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", steps[-1]):
        raise _bad(f"operation {number}: {path} must end with the name of a repeating element")
    parent = _exactly_one(resource, ".".join(steps[:-1]), number).get(resource)
    if not isinstance(parent, dict) or not isinstance(parent.get(steps[-1], []), list):
        raise _bad(f"operation {number}: {path} is not a list", 422)
    return parent, steps[-1]


def _index(parts, name: str, number: int, highest: int) -> int:
    value = (parts.get(name) or {}).get("valueInteger")
    if not isinstance(value, int) or isinstance(value, bool) or value < 0 or value > highest:
        raise _bad(f"operation {number}: {name} must be an integer from 0 to {highest}", 422)
    return value


def _remove(loc: _Loc) -> None:
    if loc.container is None:
        raise _bad("the resource itself cannot be deleted by a patch", 422)
    if loc.index is None:
        del loc.container[loc.key]
        return
    del loc.container[loc.key][loc.index]
    if not loc.container[loc.key]:
        del loc.container[loc.key]
