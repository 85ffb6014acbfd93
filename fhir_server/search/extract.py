"""SearchParameter expressions compiled to fast extractors, with fhirpathpy for the rest.

About 85% of the R4 expressions are plain paths, unions of paths, type casts (`X as T`,
`X.as(T)`, `X.ofType(T)`), reference type filters (`X.where(resolve() is T)`), equality
filters (`X.where(system='phone')`) and indexes (`X[0]`). Those compile to a chain of
Python steps over the JSON (a few microseconds); anything else is evaluated by fhirpathpy.

An extractor yields `(value, type)` pairs; `type` is the FHIR type when the path says it (a
choice element such as `valueQuantity`, or a cast), else None and the caller reads the shape.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import fhirpathpy
from fhirpathpy.models import models

log = logging.getLogger(__name__)

Item = tuple[Any, str | None]
Step = Callable[[Iterable[Item]], Iterator[Item]]
Extractor = Callable[[dict[str, Any]], list[Item]]

_NAME = r"[A-Za-z][A-Za-z0-9_]*"
_TOKEN_RE = re.compile(r"\s*(?:(?P<str>'(?:[^'\\]|\\.)*')|(?P<num>\d+)|(?P<name>%?" + _NAME + r")|(?P<op>[().\[\]|=]))")


class Unsupported(Exception):
    """The expression uses FHIRPath beyond the compiled subset."""


def _tokens(expression: str) -> list[str]:
    out, pos = [], 0
    expression = expression.strip()
    while pos < len(expression):
        match = _TOKEN_RE.match(expression, pos)
        if not match or match.end() == pos:
            raise Unsupported(expression[pos:])
        out.append(match.group(match.lastgroup))
        pos = match.end()
    return out


def _choice_type(types, suffix: str) -> str | None:
    """`Quantity` → Quantity, `DateTime` → dateTime; None if the suffix names no FHIR type."""
    if suffix in types.data_types:
        return suffix
    lower = suffix[:1].lower() + suffix[1:]
    return lower if lower in types.data_types else None


def _choices(types, value: dict[str, Any], name: str) -> Iterator[tuple[Any, str]]:
    """The variants of choice element `name[x]` present in `value`, with their types."""
    for key, found in value.items():
        if key.startswith(name) and len(key) > len(name) and key[len(name)].isupper():
            type_ = _choice_type(types, key[len(name):])
            if type_ is not None:
                for v in found if isinstance(found, list) else (found,):
                    if v is not None:
                        yield v, type_


def _child(types, name: str) -> Step:
    """`.name`: the element, its items if repeating, or the variants of choice `name[x]`."""
    choice = name in types.choice_names

    def step(items: Iterable[Item]) -> Iterator[Item]:
        for value, _ in items:
            if not isinstance(value, dict):
                continue
            if name in value:
                found = value[name]
                for v in found if isinstance(found, list) else (found,):
                    if v is not None:
                        yield v, None
            elif choice:
                yield from _choices(types, value, name)

    return step


def _fhir_type(types, name: str) -> str:
    """`DateTime` (a FHIRPath system type name) → `dateTime` (the FHIR type)."""
    if name in types.data_types:
        return name
    lower = name[:1].lower() + name[1:]
    return lower if lower in types.data_types else name


def _cast(types, type_: str) -> Step:
    type_ = _fhir_type(types, type_)

    def step(items: Iterable[Item]) -> Iterator[Item]:
        for value, known in items:
            if known is not None and types.is_a(known, type_):
                yield value, known

    return step


def _cast_choice(types, name: str, type_: str) -> Step:
    """`X.name as T` / `.as(T)` on a choice element: the variants of type T (or derived)."""
    type_ = _fhir_type(types, type_)

    def step(items: Iterable[Item]) -> Iterator[Item]:
        for value, _ in items:
            if isinstance(value, dict):
                for v, known in _choices(types, value, name):
                    if types.is_a(known, type_):
                        yield v, known

    return step


def _resolve_is(type_: str) -> Step:
    def step(items: Iterable[Item]) -> Iterator[Item]:
        for value, known in items:
            if not isinstance(value, dict):
                continue
            ref = value.get("reference")
            if isinstance(ref, str):
                path = ref.split("/_history/")[0].split("?")[0]
                parts = path.rstrip("/").split("/")
                if len(parts) >= 2 and parts[-2] == type_:
                    yield value, known
            elif value.get("type") == type_:
                yield value, known

    return step


def _where_equals(field: str, literal: str) -> Step:
    def step(items: Iterable[Item]) -> Iterator[Item]:
        for value, known in items:
            if isinstance(value, dict) and value.get(field) == literal:
                yield value, known

    return step


def _index(n: int) -> Step:
    def step(items: Iterable[Item]) -> Iterator[Item]:
        for i, item in enumerate(items):
            if i == n:
                yield item
                return

    return step


class _Parser:
    """Recursive descent over the compiled subset; raises Unsupported for anything else."""

    def __init__(self, tokens: list[str], types, relative: bool = False):
        self.tokens = tokens
        self.types = types
        self.relative = relative
        self.pos = 0

    def peek(self, k: int = 0) -> str | None:
        i = self.pos + k
        return self.tokens[i] if i < len(self.tokens) else None

    def take(self, expected: str | None = None) -> str:
        token = self.peek()
        if token is None or (expected is not None and token != expected):
            raise Unsupported(f"expected {expected!r} at {token!r}")
        self.pos += 1
        return token

    def union(self) -> list[tuple[str, list[Step]]]:
        paths = [self.term()]
        while self.peek() == "|":
            self.take("|")
            paths.append(self.term())
        return paths

    def term(self) -> tuple[str, list[Step]]:
        if self.peek() == "(":
            self.take("(")
            root, steps = self.term()
            if self.peek() == "as":
                self.take("as")
                steps = _as(self.types, steps, self.take())
            self.take(")")
        else:
            root, steps = self.path()
            if self.peek() == "as":
                self.take("as")
                steps = _as(self.types, steps, self.take())
        while self.peek() == ".":
            self.take(".")
            steps = self.suffix(steps)
        return root, steps

    def path(self) -> tuple[str, list[Step]]:
        root = self.take()
        steps: list[Step] = []
        if self.relative and root == "%resource":  # a component reading the whole resource
            pass
        elif not re.fullmatch(_NAME, root):
            raise Unsupported(root)
        elif self.relative and not root[0].isupper():  # a composite component: `value.as(Quantity)`
            steps.append(_Named(root))
            root = ""
        elif not root[0].isupper():
            raise Unsupported(root)
        while self.peek() == "." and self.peek(1) not in ("where", "as", "ofType", "resolve", "exists"):
            self.take(".")
            name = self.take()
            if not re.fullmatch(_NAME, name):
                raise Unsupported(name)
            steps.append(_Named(name))
            if self.peek() == "[":
                self.take("[")
                n = self.take()
                if not (n.isascii() and n.isdigit() and len(n) <= 9):  # int() refuses 4,300 digits
                    raise Unsupported(n[:20])
                self.take("]")
                steps.append(_index(int(n)))
        return root, steps

    def suffix(self, steps: list[Step]) -> list[Step]:
        name = self.take()
        if name in ("as", "ofType"):
            self.take("(")
            type_ = self.take()
            self.take(")")
            return _as(self.types, steps, type_)
        if name == "where":
            self.take("(")
            if self.peek() == "resolve":
                self.take("resolve"), self.take("("), self.take(")"), self.take("is")
                type_ = self.take()
                self.take(")")
                return steps + [_resolve_is(type_)]
            field = self.take()
            self.take("=")
            literal = self.take()
            if not literal.startswith("'"):
                raise Unsupported(literal)
            self.take(")")
            return steps + [_where_equals(field, literal[1:-1].replace("\\'", "'"))]
        if re.fullmatch(_NAME, name) and name not in ("resolve", "exists"):
            return steps + [_Named(name)]
        raise Unsupported(name)


class _Named:
    """A `.name` step kept symbolic until the chain is finalised (a cast may follow it)."""

    def __init__(self, name: str):
        self.name = name

    def __call__(self, items):  # pragma: no cover - always replaced in _finalise
        raise AssertionError("unfinalised step")


def _as(types, steps: list[Step], type_: str) -> list[Step]:
    if steps and isinstance(steps[-1], _Named):
        return steps[:-1] + [_cast_choice(types, steps[-1].name, type_)]
    return steps + [_cast(types, type_)]


def _finalise(types, steps: list[Step]) -> list[Step]:
    return [_child(types, s.name) if isinstance(s, _Named) else s for s in steps]


def compile_expression(expression: str, types, relative: bool = False) -> tuple[Extractor, bool]:
    """An extractor for the expression, and whether it is the fast compiled form.

    `types` tells data type names and derivation (`Definitions.data_types`, `.is_a`);
    `relative` expressions (composite components) start from the element they are given."""
    try:
        parser = _Parser(_tokens(expression), types, relative)
        paths = parser.union()
        if parser.peek() is not None:
            raise Unsupported(parser.peek())
        compiled = [(root, _finalise(types, steps)) for root, steps in paths]
    except Unsupported:
        return _fhirpath_extractor(expression), False
    if relative and any(root and root != "%resource" for root, _ in compiled):
        return _fhirpath_extractor(expression), False

    def extract(resource: dict[str, Any], root_resource: dict[str, Any] | None = None) -> list[Item]:
        """`root_resource`: what `%resource` is, for relative (component) expressions."""
        out: list[Item] = []
        rtype = resource.get("resourceType")
        for root, steps in compiled:
            start = resource
            if root == "%resource":
                if root_resource is None:
                    continue
                start = root_resource
            elif root and root != rtype and root not in ("Resource", "DomainResource"):
                continue
            items: Iterable[Item] = ((start, None),)
            for step in steps:
                items = step(items)
            out.extend(items)
        return out

    return extract, True


def _fhirpath_extractor(expression: str) -> Extractor:
    try:
        fn = fhirpathpy.compile(expression, models["r4"])
    except Exception as exc:  # noqa: BLE001 - fhirpathpy raises bare exceptions on parse errors
        log.warning("SearchParameter expression %r cannot be compiled: %s", expression, exc)
        return lambda resource: []

    def extract(resource: dict[str, Any], root_resource: dict[str, Any] | None = None) -> list[Item]:
        try:
            return [(v, None) for v in fn(resource)]
        except Exception as exc:  # noqa: BLE001 - resolve() and other unsupported functions
            log.debug("cannot evaluate %r: %s", expression, exc)
            return []

    return extract
