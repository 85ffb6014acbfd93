"""FHIR JSON in and out, keeping decimals exactly as written.

FHIR decimals carry their precision (`1.50` is not `1.5`), so a plain float round trip is
lossy. Parsing uses the standard library's C scanner with a float hook that keeps the literal
text; serialising uses orjson and writes that text back verbatim. Everything else is native
Python, so the rest of the server sees ordinary dicts, lists, ints and floats.

Nesting is limited to `MAX_DEPTH` objects and arrays: validation, FHIRPath and the search
extractors recurse on the tree, and orjson writes nothing deeper than 254 levels, so a document
read here can always be checked and written back. R4 resources nest far less (the validator
refuses more than 100 objects).
"""

from __future__ import annotations

import json
from typing import Any

import orjson


class Decimal(float):
    """A JSON number with a fraction or exponent, remembering its literal text."""

    __slots__ = ("text",)

    def __new__(cls, text: str) -> Decimal:
        obj = float.__new__(cls, text)
        obj.text = text
        return obj

    def __reduce__(self):  # pickling/copying keeps the text
        return (Decimal, (self.text,))

    def __deepcopy__(self, memo):
        return self

    def __copy__(self):
        return self


MAX_DEPTH = 200  # objects and arrays, one inside the other
_INT_DIGITS = 20  # longer integer literals are kept as text (int() refuses 4,300 digits)


class JSONError(ValueError):
    """The body is not JSON FHIR can accept; `message` says where."""


def _reject_constant(name: str) -> Any:
    raise JSONError(f"{name} is not a valid JSON number")


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        duplicate = next(k for k, _ in pairs if k in seen or seen.add(k))
        raise JSONError(f"the key {duplicate!r} appears twice in one JSON object")
    return obj


def _integer(text: str) -> int | Decimal:
    """Integers beyond 64 bits stay as written (a decimal may be that long; orjson writes no
    integer past 64 bits), the others are ints."""
    if len(text) > _INT_DIGITS:
        return Decimal(text)
    value = int(text)
    return value if -(2 ** 63) <= value < 2 ** 64 else Decimal(text)


_decoder = json.JSONDecoder(parse_float=Decimal, parse_int=_integer, parse_constant=_reject_constant,
                            object_pairs_hook=_object)


def loads(data: bytes | str) -> Any:
    """Parse JSON text, keeping decimal literals; raises JSONError with a position."""
    if isinstance(data, (bytes, bytearray, memoryview)):
        try:
            data = bytes(data).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise JSONError(f"body is not valid UTF-8 (byte {exc.start})") from None
    if data.startswith("\ufeff"):
        data = data[1:]
    try:
        value, end = _decoder.raw_decode(data, _skip_ws(data, 0))
    except json.JSONDecodeError as exc:
        raise JSONError(f"invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    except RecursionError:
        raise JSONError(f"JSON nesting is deeper than {MAX_DEPTH} objects and arrays") from None
    rest = _skip_ws(data, end)
    if rest != len(data):
        line = data.count("\n", 0, rest) + 1
        raise JSONError(f"invalid JSON at line {line}: extra data after the top-level value")
    if data.count("{") + data.count("[") > MAX_DEPTH and _too_deep(value):  # (a cheap bound first)
        raise JSONError(f"JSON nesting is deeper than {MAX_DEPTH} objects and arrays")
    return value


def _too_deep(value: Any) -> bool:
    """Whether objects and arrays nest more than MAX_DEPTH deep; level by level, no recursion."""
    level, depth = [value], 0
    while level:
        depth += 1
        if depth > MAX_DEPTH:
            return True
        deeper = []
        for item in level:
            children = item.values() if type(item) is dict else item if type(item) is list else ()
            deeper.extend(c for c in children if type(c) is dict or type(c) is list)
        level = deeper
    return False


def _skip_ws(data: str, pos: int) -> int:
    n = len(data)
    while pos < n and data[pos] in " \t\n\r":
        pos += 1
    return pos


def _default(obj: Any) -> Any:
    if isinstance(obj, Decimal):
        return orjson.Fragment(obj.text)
    if isinstance(obj, float):  # other float subclasses
        return float(obj)
    raise TypeError(f"cannot serialise {type(obj).__name__}")


def dumps(obj: Any, pretty: bool = False) -> bytes:
    """Serialise to UTF-8 JSON bytes; decimals come out as they came in."""
    option = orjson.OPT_INDENT_2 if pretty else 0
    return orjson.dumps(obj, default=_default, option=option)


def pretty(data: bytes) -> bytes:
    """Re-indent stored JSON without losing decimal text."""
    return dumps(loads(data), pretty=True)
