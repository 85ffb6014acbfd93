"""`_filter` (R4 search_filter.html): a boolean expression over search parameters, turned into
the same terms as ordinary criteria.

    _filter=name co "dur" and (birthdate ge 1950-01-01 or gender eq unknown) and not (active eq false)

Parsed into a tree (`or` binds looser than `and`, `not (…)` negates), each comparison
`param op value` becomes the ordinary criterion it means (`birthdate ge 1950` → `birthdate=ge1950`,
`code in http://…/vs` → `code:in=…`, `name co "dur"` → `name:contains=dur`, `subject pr false`
→ `subject:missing=true`) and is built by the query layer, so chains (`subject.name eq x`),
every parameter type and the index work as they do elsewhere. A top-level `and` leaves its
parts as separate terms (one of them may drive the index); an `or` whose parts are all
equalities on the index drives it with the union of their keys, an inner `and` with its best
part, so a long `or` of codes, ids or names reads its matches rather than scanning the type and
testing every part on every resource;
`not` is an exact predicate over what the other criteria found.

A filter holds at most `FHIR_MAX_FILTER_TERMS` comparisons (422 beyond) and nests at most
`MAX_DEPTH` parentheses or `not` (400 beyond).

Strings: `eq`/`ne` compare whole values, `sw` the beginning, `ew` the end, `co` any part, all
case- and accent-insensitive. Not supported (400 saying so): `po`, `re` on other than
references, and filters inside a path (`related[type eq has-component].target`).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from fhir_server import budget
from fhir_server.errors import FhirError, Issue
from fhir_server.search.execute import plan, selection
from fhir_server.search.keys import key_condition
from fhir_server.search.terms import EXACT, IDS, KEYS, SCAN, Term, values
from fhir_server.text import fold

OPERATORS = ("eq", "ne", "co", "sw", "ew", "gt", "lt", "ge", "le", "ap", "sa", "eb", "pr", "po", "ss", "sb",
             "in", "ni", "re")
_PREFIXED = ("eq", "ne", "gt", "lt", "ge", "le", "ap", "sa", "eb")  # number, date, quantity
MAX_LENGTH = 4000
MAX_DEPTH = 20
_TOKEN = re.compile(r'\s*(\(|\)|"(?:[^"\\]|\\.)*"|[^\s()\[\]]+|\[|\])')


@dataclass
class Compare:
    path: str
    op: str
    value: str


@dataclass
class Logic:
    op: str  # and | or | not
    parts: list[Any]


class _Parser:
    def __init__(self, text: str, error):
        self.error = error
        self.tokens: list[str] = []
        pos = 0
        while pos < len(text):
            if text[pos:].strip() == "":
                break
            match = _TOKEN.match(text, pos)
            if match is None:
                raise error(f"_filter: cannot read {text[pos:pos + 20]!r}")
            self.tokens.append(match.group(1))
            pos = match.end()
        self.pos = 0

    def peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> str:
        token = self.peek()
        if token is None:
            raise self.error("_filter ends too early: a comparison (`name op value`) or `)` is missing")
        self.pos += 1
        return token

    def parse(self) -> Any:
        tree = self.or_(0)
        if self.peek() is not None:
            raise self.error(f"_filter: unexpected {self.peek()!r} at token {self.pos + 1}")
        return tree

    def or_(self, depth: int) -> Any:
        return self._joined("or", self.and_, depth)

    def and_(self, depth: int) -> Any:
        return self._joined("and", self.unary, depth)

    def _joined(self, word: str, part, depth: int) -> Any:
        """`part (word part)*`: one Logic node, or the single part."""
        parts = [part(depth)]
        while self.peek() == word:
            self.take()
            parts.append(part(depth))
        return parts[0] if len(parts) == 1 else Logic(word, parts)

    def unary(self, depth: int) -> Any:
        if depth > MAX_DEPTH:
            raise self.error(f"_filter nests more than {MAX_DEPTH} levels")
        token = self.take()
        if token == "not":
            if self.take() != "(":
                raise self.error("_filter: `not` takes a parenthesised filter: not (…)")
            inner = self.or_(depth + 1)
            self.expect(")")
            return Logic("not", [inner])
        if token == "(":
            inner = self.or_(depth + 1)
            self.expect(")")
            return inner
        if token in (")", "[", "]") or token.startswith('"'):
            raise self.error(f"_filter: a parameter name was expected, not {token!r}")
        path = token
        if self.peek() == "[":
            raise self.error(f"_filter: filters inside a parameter path ({path}[…]) are not supported")
        op = self.take()
        if op not in OPERATORS:
            raise self.error(f"_filter: {op!r} is not an operator (one of {', '.join(OPERATORS)})")
        raw = self.take()
        if raw in ("(", ")", "[", "]"):
            raise self.error(f"_filter: a value was expected after {path} {op}")
        if raw.startswith('"'):
            try:
                value = json.loads(raw)
            except ValueError:
                raise self.error(f"_filter: {raw} is not a valid string") from None
        else:
            value = raw
        return Compare(path, op, value)

    def expect(self, token: str) -> None:
        if self.take() != token:
            raise self.error(f"_filter: {token!r} expected at token {self.pos}")


def parse(text: str, error) -> Any:
    if len(text) > MAX_LENGTH:
        raise error(f"_filter is longer than {MAX_LENGTH} characters")
    return _Parser(text, error).parse()


def terms(ctx, type_: str, text: str, depth: int) -> list[Term]:
    """The terms of a `_filter` value on `type_` (several when it is a top-level `and`)."""
    tree = parse(text, ctx.error)
    check_size(tree, ctx.server.settings.max_filter_terms)
    parts = tree.parts if isinstance(tree, Logic) and tree.op == "and" else [tree]
    return [_term(ctx, type_, part, depth) for part in parts]


def comparisons(tree: Any) -> int:
    """How many comparisons (leaves) a parsed filter holds."""
    count, stack = 0, [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, Compare):
            count += 1
        else:
            stack.extend(node.parts)
    return count


def check_size(tree: Any, max_terms: int) -> None:
    """422 when the filter holds more comparisons than the server evaluates in one search."""
    found = comparisons(tree)
    if found > max_terms:
        raise FhirError(422, Issue("error", "too-costly", (
            f"_filter holds {found} comparisons; this server takes at most {max_terms} (FHIR_MAX_FILTER_TERMS): "
            f"split the search, or use one criterion with comma-separated values (name=a,b,c) for a list of "
            f"alternatives")))


def _term(ctx, type_: str, node: Any, depth: int) -> Term:
    budget.check()
    if isinstance(node, Compare):
        return _compare(ctx, type_, node, depth)
    inner = [_term(ctx, type_, part, depth) for part in node.parts]
    if node.op == "not":
        only = inner[0]
        return Term(None, [], lambda doc: not only.match(doc), SCAN)
    if node.op == "and":
        return _all_of(inner)
    return _any_of(inner)


def _all_of(inner: list[Term]) -> Term:
    """Every part: driven, when one of them can, by the part the planner prefers."""
    def match(doc) -> bool:
        return all(t.match(doc) for t in inner)

    driver = plan(inner)
    if driver is None:
        return Term(None, [], match, SCAN)
    return Term(driver.field, list(driver.conditions), match, driver.rank)


def _any_of(inner: list[Term]) -> Term:
    """Any part: driven by the union of the parts' index keys (or ids) when every part is an
    equality on some (`eq` on tokens, references, strings, ids); else a scan. Prefixes and
    ranges stay a scan: many overlapping ones (`sw a or sw ab or …`) would read the same
    resources again for each part."""
    def match(doc) -> bool:
        return any(t.match(doc) for t in inner)

    rank = max(t.rank for t in inner)
    if all(t.field == IDS for t in inner):
        ids = dict.fromkeys(i for t in inner for i in t.conditions)
        return Term(IDS, list(ids), match, rank)
    keys: dict[str, None] = {}
    for part in inner:
        found = _keys(part)
        if found is None:
            return Term(None, [], match, SCAN)
        keys.update(dict.fromkeys(found))
    return Term(KEYS, list(keys), match, rank)


def _keys(term: Term) -> list[str] | None:
    """The exact index keys that select a superset of the term's matches; None if it has none
    (no index, ids, ranges, or no conditions to read)."""
    if term.field is None or term.field == IDS or not term.conditions:
        return None
    if term.field != KEYS and any(key_condition(term.field, c) is None for c in term.conditions):
        return None
    keys = list(term.conditions) if term.field == KEYS else list(selection(term).keys)
    return keys if all(isinstance(key, str) for key in keys) else None


def _escape(value: str) -> str:
    """A value as one criterion value (commas and `$` are criterion syntax)."""
    return value.replace("\\", "\\\\").replace(",", "\\,").replace("$", "\\$")


def _param_type(ctx, type_: str, path: str) -> str | None:
    """The type of the parameter a path ends on (through reference chains)."""
    params = ctx.server.search_parameters
    head, dot, tail = path.partition(".")
    code = head.split(":", 1)[0]
    if code == "_id":
        return "token"
    param = params.get(type_, code)
    if param is None:
        return None
    if not dot:
        return param.type
    target_type = head.split(":", 1)[1] if ":" in head else None
    targets = [target_type] if target_type else list(param.targets or ())
    found = {_param_type(ctx, t, tail) for t in targets if ctx.is_resource_type(t)}
    found.discard(None)
    return found.pop() if len(found) == 1 else None


def _compare(ctx, type_: str, node: Compare, depth: int) -> Term:
    from fhir_server.search.query import criterion_term

    kind = _param_type(ctx, type_, node.path)
    if kind is None:
        raise ctx.error(f"_filter: {node.path!r} is not a search parameter of {type_} "
                        "(or its chain leads to parameters of different types)")
    op, value = node.op, node.value

    def criterion(modifier: str | None, text: str) -> Term:
        name = node.path + (f":{modifier}" if modifier else "")
        built = criterion_term(ctx, type_, name, text, depth + 1)
        if built is None:  # lenient mode ignored it: in a filter that would change its meaning
            raise ctx.error(f"_filter: {node.path!r} cannot be searched on {type_}")
        return built

    def negated(term: Term) -> Term:
        return Term(None, [], lambda doc: not term.match(doc), SCAN)

    if op == "pr":
        if value not in ("true", "false"):
            raise ctx.error(f"_filter: {node.path} pr takes true or false, not {value!r}")
        return criterion("missing", "false" if value == "true" else "true")
    if kind in ("number", "date", "quantity"):
        if op not in _PREFIXED:
            raise _unsupported(ctx, node, kind)
        return criterion(None, op + _escape(value))
    if kind == "string":
        return _string(ctx, type_, node, criterion, negated)
    if kind in ("token", "reference", "uri"):
        modifiers = {"token": {"in": "in", "ni": "not-in", "sb": "below", "ss": "above"},
                     "uri": {"sw": "below", "sb": "below", "ss": "above"}}.get(kind, {})
        if op in ("eq", "re") and (op == "eq" or kind == "reference"):
            return criterion(None, _escape(value))
        if op == "ne":
            return negated(criterion(None, _escape(value)))
        if op in modifiers:
            return criterion(modifiers[op], _escape(value))
    raise _unsupported(ctx, node, kind)


def _string(ctx, type_: str, node: Compare, criterion, negated) -> Term:
    op, value = node.op, node.value
    if op == "sw":
        return criterion(None, _escape(value))
    if op == "co":
        return criterion("contains", _escape(value))
    if "." in node.path and op in ("eq", "ne", "ew"):
        raise ctx.error(f"_filter: {op} on a chained string ({node.path}) is not supported; use sw or co")
    code, folded = node.path, fold(value)
    if op in ("eq", "ne"):
        equal = Term(f"{code}", [folded], lambda doc: folded in values(doc, code), EXACT)
        return equal if op == "eq" else negated(equal)
    if op == "ew":
        return Term(None, [], lambda doc: any(v.endswith(folded) for v in values(doc, code)), SCAN)
    raise _unsupported(ctx, node, "string")


def _unsupported(ctx, node: Compare, kind: str):
    return ctx.error(f"_filter: the operator {node.op} is not supported on {node.path} (a {kind} parameter)")
