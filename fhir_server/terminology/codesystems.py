"""One CodeSystem resource read once into what questions about it need.

Concepts by code (folded when the system says `caseSensitive: false`), in definition order;
the hierarchy from nested `concept` and from the `parent` / `child` properties (and
`subsumedBy`); the status of each concept (`notSelectable`/`abstract`, `inactive`, `status`
retired/deprecated, `deprecationDate`); and the filters of ValueSet.compose.include over them.

A property's meaning is taken from its `uri` when it points into
http://hl7.org/fhir/concept-properties (whatever the CodeSystem calls it), else from its code.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from fhir_server.terminology.errors import TerminologyError

CONCEPT_PROPERTIES = "http://hl7.org/fhir/concept-properties#"
# How much of the system the resource carries (CodeSystem.content).
COMPLETE = "complete"
INCOMPLETE = ("example", "fragment")
# Property meanings the terminology layer understands, by their concept-properties name.
_MEANINGS = ("parent", "child", "subsumedBy", "notSelectable", "abstract", "inactive", "status",
             "deprecated", "deprecationDate", "retirementDate")


@dataclass
class Concept:
    code: str
    display: str | None = None
    definition: str | None = None
    designations: list[dict[str, Any]] = field(default_factory=list)
    properties: list[dict[str, Any]] = field(default_factory=list)  # as in the resource (code, value[x])
    abstract: bool = False
    inactive: bool = False
    deprecated: bool = False
    status: str | None = None


def property_value(prop: dict[str, Any]) -> Any:
    """The value of a concept property (`valueCode`, `valueCoding`, `valueBoolean`…)."""
    for key, value in prop.items():
        if key.startswith("value"):
            return value
    return None


def value_text(value: Any) -> str | None:
    """A property value as the text a filter compares with."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):  # Coding
        return value.get("code")
    return None if value is None else str(value)


class CodeSystemIndex:
    """Read-only view of one CodeSystem; safe to share between threads once built."""

    def __init__(self, resource: dict[str, Any]):
        self.resource = resource
        self.url: str = resource.get("url") or ""
        self.version: str | None = resource.get("version")
        self.name: str = resource.get("title") or resource.get("name") or self.url
        self.content: str = resource.get("content") or COMPLETE
        self.case_sensitive: bool = resource.get("caseSensitive") is not False
        # property code → meaning (parent, child, notSelectable…) and declared type
        self.meaning: dict[str, str] = {}
        self.property_types: dict[str, str | None] = {}
        for prop in resource.get("property") or ():
            code = prop.get("code")
            if not code:
                continue
            self.property_types[code] = prop.get("type")
            uri = prop.get("uri") or ""
            name = uri[len(CONCEPT_PROPERTIES):] if uri.startswith(CONCEPT_PROPERTIES) else code
            if name in _MEANINGS:
                self.meaning[code] = name
        for name in _MEANINGS:  # undeclared but used under their usual code
            if name not in self.property_types and name not in self.meaning.values():
                self.meaning.setdefault(name, name)
        self.concepts: dict[str, Concept] = {}
        self.order: list[str] = []
        self.parents: dict[str, list[str]] = {}
        self.children: dict[str, list[str]] = {}
        self.used_properties: set[str] = set()
        self._walk(resource.get("concept") or (), None)
        for code, concept in self.concepts.items():
            for prop in concept.properties:
                target = value_text(property_value(prop))
                meaning = self.meaning.get(prop.get("code"))
                if not target:
                    continue
                if meaning in ("parent", "subsumedBy"):
                    self._link(self.key(target), code)
                elif meaning == "child":
                    self._link(code, self.key(target))

    # -- building ------------------------------------------------------------------------------
    def _walk(self, concepts, parent: str | None) -> None:
        for item in concepts:
            code = item.get("code")
            if not code:
                continue
            key = self.key(code)
            if key not in self.concepts:
                self.concepts[key] = self._concept(item)
                self.order.append(key)
            if parent is not None:
                self._link(parent, key)
            self._walk(item.get("concept") or (), key)

    def _concept(self, item: dict[str, Any]) -> Concept:
        concept = Concept(item["code"], item.get("display"), item.get("definition"),
                          list(item.get("designation") or ()), list(item.get("property") or ()))
        for prop in concept.properties:
            self.used_properties.add(prop.get("code"))
            meaning = self.meaning.get(prop.get("code"))
            value = property_value(prop)
            if meaning in ("notSelectable", "abstract") and value is True:
                concept.abstract = True
            elif meaning == "inactive" and value is True:
                concept.inactive = True
            elif meaning == "deprecated" and value is True:
                concept.deprecated = True
            elif meaning == "status" and isinstance(value, str):
                concept.status = value
                if value in ("retired", "inactive"):
                    concept.inactive = True
                elif value == "deprecated":
                    concept.deprecated = True
            elif meaning in ("deprecationDate", "retirementDate") and value:
                concept.deprecated = True
        return concept

    def _link(self, parent: str, child: str) -> None:
        if parent == child:
            return
        siblings = self.children.setdefault(parent, [])
        if child not in siblings:
            siblings.append(child)
            self.parents.setdefault(child, []).append(parent)

    # -- questions -----------------------------------------------------------------------------
    @property
    def complete(self) -> bool:
        """Whether every code of the system is here (`content: complete`)."""
        return self.content == COMPLETE

    @property
    def holds_codes(self) -> bool:
        return self.content == COMPLETE or self.content in INCOMPLETE

    def key(self, code: str) -> str:
        return code if self.case_sensitive else code.casefold()

    def get(self, code: str) -> Concept | None:
        return self.concepts.get(self.key(code))

    def __len__(self) -> int:
        return len(self.order)

    def __iter__(self) -> Iterator[Concept]:
        return (self.concepts[k] for k in self.order)

    def descendants(self, code: str) -> set[str]:
        """Keys of every concept below `code` (not itself)."""
        return self._closure(self.key(code), self.children)

    def ancestors(self, code: str) -> set[str]:
        return self._closure(self.key(code), self.parents)

    @staticmethod
    def _closure(start: str, links: dict[str, list[str]]) -> set[str]:
        out: set[str] = set()
        todo = [start]
        while todo:
            for nxt in links.get(todo.pop(), ()):
                if nxt not in out:
                    out.add(nxt)
                    todo.append(nxt)
        out.discard(start)
        return out

    def parents_of(self, code: str) -> list[str]:
        return [self.concepts[k].code for k in self.parents.get(self.key(code), ()) if k in self.concepts]

    def children_of(self, code: str) -> list[str]:
        return [self.concepts[k].code for k in self.children.get(self.key(code), ()) if k in self.concepts]

    def values(self, concept: Concept, prop: str) -> list[str]:
        """Text values of one property of a concept."""
        return [t for p in concept.properties if p.get("code") == prop
                if (t := value_text(property_value(p))) is not None]

    # -- ValueSet.compose filters --------------------------------------------------------------
    def predicate(self, flt: dict[str, Any]) -> Callable[[Concept], bool]:
        """A test on concepts for one `include.filter`; TerminologyError if it cannot be
        evaluated on this system (unknown property or operator)."""
        prop, op, value = flt.get("property"), flt.get("op"), flt.get("value")
        if not prop or not op or value is None:
            raise TerminologyError(f"filter {prop!r} {op!r} {value!r} on {self.url} is incomplete", "invalid")
        what = f"the filter '{prop} {op} {value}' on {self.url}"
        if prop in ("concept", "code"):
            return self._concept_predicate(op, value, what)
        meaning = self.meaning.get(prop)
        if meaning in ("parent", "child"):
            return self._hierarchy_predicate(meaning, op, value, what)
        if prop == "display":
            return _text_predicate(op, value, lambda c: [c.display] if c.display else [], what)
        if prop == "inactive" and prop not in self.property_types:
            return _text_predicate(op, value, lambda c: ["true" if c.inactive else "false"], what)
        if prop in self.property_types or prop in self.used_properties:
            return _text_predicate(op, value, lambda c: self.values(c, prop), what)
        raise TerminologyError(f"{what} cannot be evaluated here: {self.url} has no property {prop!r}")

    def _concept_predicate(self, op: str, value: str, what: str) -> Callable[[Concept], bool]:
        if op in ("is-a", "descendent-of", "is-not-a", "generalizes"):
            root = self.key(value)
            if root not in self.concepts and not self.complete:
                raise TerminologyError(f"{what} cannot be evaluated here: {value!r} is not in the part of "
                                       f"{self.url} held here (content: {self.content})")
            if op == "generalizes":
                keys = self.ancestors(value) | {root} if root in self.concepts else set()
            else:
                keys = self.descendants(value) if root in self.concepts else set()
                if op != "descendent-of" and root in self.concepts:
                    keys.add(root)
            if op == "is-not-a":
                return lambda c: self.key(c.code) not in keys
            return lambda c: self.key(c.code) in keys
        return _text_predicate(op, value, lambda c: [c.code], what, fold=not self.case_sensitive)

    def _hierarchy_predicate(self, meaning: str, op: str, value: str, what: str) -> Callable[[Concept], bool]:
        links = self.parents if meaning == "parent" else self.children

        def related(c: Concept) -> list[str]:
            return [self.concepts[k].code for k in links.get(self.key(c.code), ()) if k in self.concepts]

        return _text_predicate(op, value, related, what, fold=not self.case_sensitive)


def _text_predicate(op: str, value: str, values: Callable[[Concept], list[str]], what: str,
                    fold: bool = False) -> Callable[[Concept], bool]:
    norm: Callable[[str], str] = str.casefold if fold else (lambda s: s)
    if op == "=":
        wanted = norm(value)
        return lambda c: any(norm(v) == wanted for v in values(c))
    if op in ("in", "not-in"):
        wanted_set = {norm(v.strip()) for v in value.split(",") if v.strip()}
        if op == "in":
            return lambda c: any(norm(v) in wanted_set for v in values(c))
        return lambda c: not any(norm(v) in wanted_set for v in values(c))
    if op == "regex":
        try:
            pattern = re.compile(value, re.IGNORECASE if fold else 0)
        except re.error as exc:
            raise TerminologyError(f"{what}: the regex is not valid ({exc})", "invalid") from exc
        return lambda c: any(pattern.fullmatch(v) for v in values(c))
    if op == "exists":
        if value not in ("true", "false"):
            raise TerminologyError(f"{what}: exists takes true or false", "invalid")
        present = value == "true"
        return lambda c: bool(values(c)) == present
    raise TerminologyError(f"{what} cannot be evaluated here: the operator {op!r} is not supported on it")
