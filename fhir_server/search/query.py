"""From URL parameters to terms: parameter lookup, modifiers, chains, `_has`, `_id`, `_list`.

Each criterion (`name[:modifier][.chain]=v1,v2`) becomes one `Term`; criteria are ANDed, the
comma-separated values of one criterion ORed. Chains and `_has` run their inner search first
and become a term on the ids it found. Values are data, never query syntax: they only ever
reach MongoDB as string or number operands.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from fhir_server import budget
from fhir_server.errors import FhirError, Issue
from fhir_server.search import filter as filter_param
from fhir_server.search import fulltext
from fhir_server.search.params import reference
from fhir_server.search.params.token import keys_term, unescape
from fhir_server.search.reach import Reach
from fhir_server.search.terms import EXACT, IDS, KEYS, RANGE, SCAN, Term, values
from fhir_server.storage.records import KeyRange

_COMMA = re.compile(r"(?<!\\),")
MAX_CHAIN_DEPTH = 4
# Parameters about the result's form, handled by the search interaction, not by terms.
RESULT_PARAMS = frozenset({"_count", "_sort", "_include", "_revinclude", "_summary", "_elements", "_total",
                           "_contained", "_containedType", "_format", "_pretty", "_type", "_page"})


def split_values(value: str) -> list[str]:
    return [v for v in _COMMA.split(value)]


@dataclass
class Context:
    """What a term needs from the server while it is built; also collects lenient warnings."""

    server: Any
    base_url: str
    strict: bool = False
    session: Any = None
    strict_because: str = "Prefer: handling=strict"
    warnings: list[Issue] = field(default_factory=list)
    reach: Reach = field(kw_only=True)  # what the request may see: chains and _has search within it
    unknowns: set[str] = field(default_factory=set)  # the unknown parameters warned of
    _more: Issue | None = None

    NAMED_UNKNOWNS = 20  # unknown parameters named in warnings; past them, one warning counts the rest

    def error(self, message: str) -> FhirError:
        return FhirError(400, Issue("error", "invalid", message))

    def unsupported_modifier(self, code: str, modifier: str) -> FhirError:
        return FhirError(400, Issue("error", "not-supported",
                                    f"the modifier :{modifier} is not supported on {code}"))

    def is_resource_type(self, name: str) -> bool:
        return self.server.definitions.is_resource_type(name)

    def relative(self, url: str) -> str:
        """A reference to this server written as an absolute URL, made relative."""
        for base in (self.base_url, self.server.settings.base_url):
            if base and url.startswith(base.rstrip("/") + "/"):
                return url[len(base.rstrip("/")) + 1:]
        return url

    def codes_for(self, modifier: str, value: str) -> set[str]:
        """Token keys for `:in`/`:not-in` (a ValueSet) and `:above`/`:below` (a code's family)."""
        from fhir_server.search.terminology import codes_for

        return codes_for(self.server.definitions, modifier, value, self)

    def unknown(self, resource_type: str, name: str) -> None:
        text = f"unknown search parameter {name[:100]!r} for {resource_type}"
        if self.strict:
            raise FhirError(400, Issue("error", "not-supported", f"{text} ({self.strict_because})"))
        if text in self.unknowns:  # one warning per parameter, however often it is repeated
            return
        self.unknowns.add(text)
        if len(self.unknowns) <= self.NAMED_UNKNOWNS:
            self.warnings.append(Issue("warning", "not-supported", text + "; it was ignored"))
        else:  # a form of 100,000 different names answers with one more warning, not 100,000
            if self._more is None:
                self._more = Issue("warning", "not-supported", "")
                self.warnings.append(self._more)
            self._more.diagnostics = (f"{len(self.unknowns) - self.NAMED_UNKNOWNS} more unknown search parameters "
                                      f"were ignored")


def build_terms(ctx: Context, type_: str, criteria: list[tuple[str, str]],
                depth: int = 0) -> tuple[list[Term], list[tuple[str, str]]]:
    """Terms for the criteria on one type, and the criteria actually applied (for `self`)."""
    terms, applied = [], []
    for name, value in budget.checked(criteria):
        if name == "_filter":
            terms.extend(filter_param.terms(ctx, type_, value, depth))
            applied.append((name, value))
            continue
        term = criterion_term(ctx, type_, name, value, depth)
        if term is not None:
            terms.append(term)
            applied.append((name, value))
    return terms, applied


def criterion_term(ctx: Context, type_: str, name: str, value: str, depth: int = 0) -> Term | None:
    params = ctx.server.search_parameters
    if depth > MAX_CHAIN_DEPTH:
        raise ctx.error(f"{name}: chains and _has nest at most {MAX_CHAIN_DEPTH} levels")
    if name.startswith("_has:"):
        return _has_term(ctx, type_, name, value, depth)
    head, dot, tail = name.partition(".")
    code, _, modifier = head.partition(":")
    modifier = modifier or None
    if code == "_id":
        ids = {unescape(v) for v in split_values(value)}
        if modifier == "not":
            return Term(None, [], lambda doc: doc.id not in ids, SCAN)
        if modifier:
            raise ctx.unsupported_modifier(code, modifier)
        return Term(IDS, sorted(ids), lambda doc: doc.id in ids, EXACT)
    if code == "_list":
        return _list_term(ctx, type_, value)
    if code in fulltext.CODES and not dot:
        return fulltext.term(code, modifier, split_values(value), ctx)
    param = params.get(type_, code)
    if param is None or (not param.expression and param.type != "composite"):
        ctx.unknown(type_, name)
        return None
    if modifier == "missing":
        return _missing_term(code, value, ctx)
    if dot:
        if param.type != "reference":
            raise ctx.error(f"{name}: only reference parameters can be chained, {code} is a {param.type}")
        return _chain_term(ctx, type_, code, modifier, param.targets, tail, value, depth)
    return params.term_for(param, code, modifier, split_values(value), ctx)


def _missing_term(code: str, value: str, ctx: Context) -> Term:
    if value not in ("true", "false"):
        raise ctx.error(f"{code}:missing takes true or false, not {value!r}")
    if value == "false":  # has a value: any key of this parameter (`code=…`, `code.l=…`, `code:…=`)
        keyed = [KeyRange(f"{code}.", f"{code}=\U0010ffff")]
        return Term(KEYS, keyed, lambda doc: _present(doc, code), RANGE)
    return Term(None, [], lambda doc: not _present(doc, code), SCAN)


def _present(doc, code: str) -> bool:
    """A value under any form of the parameter: `subject`, `subject:identifier`, `code:text`…"""
    stored = doc.values
    return bool(stored.get(code)) or any(k.startswith(f"{code}:") and stored[k] for k in stored)


def _chain_term(ctx: Context, type_: str, code: str, modifier: str | None, targets: tuple[str, ...],
                tail: str, value: str, depth: int) -> Term:
    from fhir_server.search.execute import find

    types = (modifier,) if modifier else targets
    if modifier and (modifier not in targets if targets else not ctx.is_resource_type(modifier)):
        raise ctx.error(f"{code}:{modifier}: {code} cannot refer to {modifier}")
    if not types:  # a parameter that names no target (the ANS PDSm guide's List authorOrg) may refer to anything
        raise ctx.error(f"{code}.{tail}: {code} names no target type; say which one it refers to, as in "
                        f"{code}:Organization.{tail}")
    keys = set()
    chained_somewhere = False
    tail_code = tail.partition(".")[0].partition(":")[0]
    for target in budget.checked(types):
        if tail_code not in ("_id", "_list", "_has") and ctx.server.search_parameters.get(target, tail_code) is None:
            continue  # an untyped chain goes through the targets that have the parameter
        inner = criterion_term(_quiet(ctx), target, tail, value, depth + 1)
        if inner is None:
            continue
        chained_somewhere = True
        keys.update(record.key for record in find(ctx.server, target, [inner], reach=ctx.reach, session=ctx.session))
    if not chained_somewhere:
        ctx.unknown(type_, f"{code}.{tail}")
        return None  # type: ignore[return-value]
    term = keys_term(code, keys)
    term.rank = EXACT + len(keys)
    return term


def _has_term(ctx: Context, type_: str, name: str, value: str, depth: int) -> Term:
    from fhir_server.search.execute import find

    parts = name.split(":", 3)
    if len(parts) != 4 or not all(parts[1:]):
        raise ctx.error(f"{name}: _has takes the form _has:Type:reference:parameter=value")
    _, other, ref_code, rest = parts
    if not ctx.is_resource_type(other):
        raise ctx.error(f"{name}: {other!r} is not a resource type")
    ref = ctx.server.search_parameters.get(other, ref_code)
    if ref is None or ref.type != "reference":
        raise ctx.error(f"{name}: {ref_code!r} is not a reference parameter of {other}")
    inner = criterion_term(_quiet(ctx), other, rest, value, depth + 1)
    if inner is None:
        ctx.unknown(type_, name)
        return None  # type: ignore[return-value]
    ids = set()
    for record in budget.checked(find(ctx.server, other, [inner], reach=ctx.reach, session=ctx.session), every=1024):
        for key in values(record, ref_code):
            local = reference.local_type(key)
            if local and local[0] == type_:
                ids.add(local[1])
    return Term(IDS, sorted(ids), lambda doc: doc.id in ids, EXACT + len(ids))


def _list_term(ctx: Context, type_: str, value: str) -> Term:
    from fhir_server import jsonio
    from fhir_server.search.execute import find

    ids = set()
    list_ids = {unescape(v) for v in split_values(value)}
    lists = find(ctx.server, "List", [Term(IDS, sorted(list_ids), lambda doc: doc.id in list_ids)],
                 reach=ctx.reach, session=ctx.session, json=True)
    for stored in budget.checked(lists):
        for entry in jsonio.loads(stored.json).get("entry") or ():
            ref = (entry.get("item") or {}).get("reference", "")
            local = reference.local_type(ctx.relative(ref))
            if local and local[0] == type_:
                ids.add(local[1])
    return Term(IDS, sorted(ids), lambda doc: doc.id in ids, EXACT + len(ids))


def _quiet(ctx: Context) -> Context:
    """Inner searches report unknown parameters as errors: a chain that means nothing must not
    silently match everything."""
    return Context(ctx.server, ctx.base_url, strict=True, session=ctx.session,
                   strict_because="a chain or _has must use known parameters", reach=ctx.reach)
