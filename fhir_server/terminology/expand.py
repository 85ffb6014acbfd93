"""ValueSet expansion, from `compose` (or a ValueSet's own `expansion`).

`compose.include` may enumerate concepts, take a whole code system, filter it (see
`CodeSystemIndex.predicate`), and import other ValueSets (the include is then the
intersection of its system part and every imported set); `compose.exclude` removes what it
selects; `compose.inactive: false` drops inactive codes. Enumerated concepts need no
CodeSystem (the ValueSet is the enumeration: that is how implicit or external systems such as
SNOMED CT subsets expand); anything else needs the CodeSystem with `content: complete`:
`example`/`fragment` ones carry only part of their codes and `not-present` ones none, so an
expansion over them is refused (TerminologyError), never guessed.

The expansion is flat: concepts of a hierarchy are listed one after the other, in definition
order, without nested `contains` (paging then means the same thing for every ValueSet).

What a ValueSet holds is answered without expanding by `membership.member`; an expansion is
turned into the `$expand` answer by `expansion_render.render`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from fhir_server.terminology.codesystems import CodeSystemIndex, Concept
from fhir_server.terminology.errors import TerminologyError

MAX_EXPANSION = 100_000  # codes; beyond, `too-costly`


@dataclass
class Entry:
    system: str
    code: str
    display: str | None = None
    version: str | None = None
    abstract: bool = False
    inactive: bool = False
    designations: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Expansion:
    """Every code of a ValueSet, in order, with what was used to compute it."""

    entries: list[Entry]
    used: dict[str, str | None] = field(default_factory=dict)  # code system url → version used
    warnings: list[str] = field(default_factory=list)
    folded: set[str] = field(default_factory=set)  # systems whose codes compare case-insensitively
    _index: dict[tuple[str, str], Entry] | None = None
    _by_code: dict[str, list[Entry]] | None = None

    def _key(self, system: str, code: str) -> tuple[str, str]:
        return system, code.casefold() if system in self.folded else code

    def find(self, system: str | None, code: str) -> Entry | None:
        if self._by_code is None:  # built once; shared expansions may be read by several threads
            index: dict[tuple[str, str], Entry] = {}
            by_code: dict[str, list[Entry]] = {}
            for entry in self.entries:
                index.setdefault(self._key(entry.system, entry.code), entry)
                by_code.setdefault(entry.code.casefold(), []).append(entry)
            self._index = index
            self._by_code = by_code
        if system is not None:
            assert self._index is not None
            return self._index.get(self._key(system, code))
        for entry in self._by_code.get(code.casefold(), ()):
            if entry.code == code or entry.system in self.folded:
                return entry
        return None


class Resolver(Protocol):
    def valueset(self, canonical: str) -> dict[str, Any] | None: ...

    def codesystem(self, canonical: str) -> CodeSystemIndex | None: ...

    def expansion(self, valueset: dict[str, Any], seen: frozenset[str]) -> Expansion: ...


def name_of(valueset: dict[str, Any]) -> str:
    url = valueset.get("url")
    if url:
        return url + (f"|{valueset['version']}" if valueset.get("version") else "")
    return f"ValueSet/{valueset['id']}" if valueset.get("id") else "the ValueSet given inline"


def enter(valueset: dict[str, Any], seen: frozenset[str]) -> tuple[str, frozenset[str]]:
    """(name, the ValueSets being evaluated with this one); an import cycle is an error."""
    name = name_of(valueset)
    url = valueset.get("url")
    if url and url in seen:
        raise TerminologyError(f"ValueSet {name} imports itself (through {', '.join(sorted(seen))})", "invalid")
    return name, seen | {url} if url else seen


def compute(scope: Resolver, valueset: dict[str, Any], seen: frozenset[str]) -> Expansion:
    """The full expansion of a ValueSet (no filter, no paging)."""
    name, seen = enter(valueset, seen)
    compose = valueset.get("compose")
    if not compose:
        if valueset.get("expansion") is not None:
            return from_expansion(valueset)
        raise TerminologyError(f"ValueSet {name} has neither compose nor expansion", "invalid")
    try:
        return _compose(scope, valueset, compose, seen)
    except TerminologyError as exc:
        if exc.code == "not-supported" and complete_expansion(valueset):
            result = from_expansion(valueset)
            result.warnings.append(f"the expansion carried by {name} is used: {exc}")
            return result
        raise


def _compose(scope: Resolver, valueset: dict[str, Any], compose: dict[str, Any], seen: frozenset[str]) -> Expansion:
    result = Expansion([])
    chosen: dict[tuple[str, str], Entry] = {}
    for include in compose.get("include") or ():
        for entry in _include(scope, valueset, include, seen, result):
            chosen.setdefault(result._key(entry.system, entry.code), entry)
            if len(chosen) > MAX_EXPANSION:
                raise TerminologyError(f"ValueSet {name_of(valueset)} has more than {MAX_EXPANSION} codes: "
                                       f"too many to expand here", "too-costly")
    present = {system for system, _ in chosen}
    for exclude in compose.get("exclude") or ():
        if exclude.get("system") and exclude["system"] not in present:
            continue  # nothing of that system to remove
        for entry in _include(scope, valueset, exclude, seen, result):
            chosen.pop(result._key(entry.system, entry.code), None)
    entries = list(chosen.values())
    if compose.get("inactive") is False:
        entries = [e for e in entries if not e.inactive]
    result.entries = entries
    return result


def _include(scope: Resolver, valueset: dict[str, Any], include: dict[str, Any], seen: frozenset[str],
             result: Expansion) -> list[Entry]:
    system = include.get("system")
    version = include.get("version")
    entries: list[Entry] | None = None
    if system:
        cs = scope.codesystem(system)
        _note_system(result, system, version, cs)
        if include.get("concept"):
            entries = []
            for item in include["concept"]:
                if not item.get("code"):
                    continue
                concept = cs.get(item["code"]) if cs is not None else None
                if concept is None and cs is not None and cs.complete:
                    result.warnings.append(f"{name_of(valueset)} lists {item['code']!r}, which is not a code of "
                                           f"{system}" + (f" version {cs.version}" if cs.version else ""))
                entries.append(enumerated(system, version, cs, item, concept))
        else:
            cs = complete_system(cs, system, include, valueset)
            predicates = [cs.predicate(f) for f in include.get("filter") or ()]
            entries = [entry_of(cs, c) for c in cs if all(p(c) for p in predicates)]
    for vs_url in include.get("valueSet") or ():
        other = scope.valueset(vs_url)
        if other is None:
            raise TerminologyError(f"ValueSet {vs_url} (imported by {name_of(valueset)}) is not known here: "
                                   f"not in the loaded packages nor stored on this server", "not-supported")
        imported = scope.expansion(other, seen)
        result.used.update(imported.used)
        result.folded |= imported.folded
        result.warnings.extend(w for w in imported.warnings if w not in result.warnings)
        if entries is None:
            entries = list(imported.entries)
        else:
            entries = [e for e in entries if imported.find(e.system, e.code) is not None]
    return entries or []


def _note_system(result: Expansion, system: str, version: str | None, cs: CodeSystemIndex | None) -> None:
    if cs is not None:
        if not cs.case_sensitive:
            result.folded.add(system)
        if version and cs.version and version != cs.version:
            message = f"{system} version {version} is asked for; version {cs.version} is the one held and used"
            if message not in result.warnings:
                result.warnings.append(message)
        result.used.setdefault(system, cs.version)
    else:
        result.used.setdefault(system, version)


def complete_system(cs: CodeSystemIndex | None, system: str, include: dict[str, Any],
           valueset: dict[str, Any]) -> CodeSystemIndex:
    """The code system an include takes (all of, or filtered); only a complete one will do."""
    what = "the codes of" if not include.get("filter") else "the filter on"
    if cs is None:
        raise TerminologyError(f"ValueSet {name_of(valueset)} needs {what} {system}, a code system not held here "
                               f"(no CodeSystem with this URL in the loaded packages or stored on this server)")
    if not cs.complete:
        held = "none of its codes" if not cs.holds_codes else "only part of its codes"
        raise TerminologyError(f"ValueSet {name_of(valueset)} needs {what} {system} ({cs.name}), whose CodeSystem "
                               f"here has content '{cs.content}': {held}")
    return cs


def entry_of(cs: CodeSystemIndex, concept: Concept) -> Entry:
    return Entry(cs.url, concept.code, concept.display, cs.version, concept.abstract, concept.inactive,
                 list(concept.designations))


def enumerated(system: str, version: str | None, cs: CodeSystemIndex | None, item: dict[str, Any],
                concept: Concept | None) -> Entry:
    designations = list(item.get("designation") or ())
    if concept is None:
        return Entry(system, item["code"], item.get("display"), version or (cs.version if cs else None),
                     designations=designations)
    return Entry(system, concept.code, item.get("display") or concept.display, cs.version if cs else version,
                 concept.abstract, concept.inactive, designations + list(concept.designations))


def complete_expansion(valueset: dict[str, Any]) -> bool:
    expansion = valueset.get("expansion")
    if not expansion or not expansion.get("contains"):
        return False
    count = sum(1 for _ in _flatten(expansion["contains"]))
    return not expansion.get("offset") and expansion.get("total", count) <= count


def from_expansion(valueset: dict[str, Any]) -> Expansion:
    """A ValueSet's own `expansion`, when it is whole (not one page of it)."""
    expansion = valueset.get("expansion") or {}
    if expansion.get("contains") and not complete_expansion(valueset):
        raise TerminologyError(f"ValueSet {name_of(valueset)} carries only part of its expansion "
                               f"(total {expansion.get('total')}, offset {expansion.get('offset', 0)})",
                               "not-supported")
    entries = [Entry(item.get("system", ""), item["code"], item.get("display"), item.get("version"),
                     bool(item.get("abstract")), bool(item.get("inactive")), list(item.get("designation") or ()))
               for item in _flatten(expansion.get("contains") or ())]
    return Expansion(entries, {e.system: e.version for e in entries if e.system})


def _flatten(items):
    for item in items:
        if item.get("code"):
            yield item
        yield from _flatten(item.get("contains") or ())
