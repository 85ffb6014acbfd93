"""Slicing: which slice each item of a sliced element belongs to, and the slicing rules.

For every slice, each discriminator is turned once into an *expectation* by looking at the
slice's definition at the discriminator's path (following the children in the snapshot, else
the definition of the element's type or type profile, and `extension('url')` to the
extension's slice or definition):

* `value` / `pattern`: the `fixed[x]` (equal) or `pattern[x]` (contained) found there, or a
  required binding (the value must be in the ValueSet);
* `type`: the types allowed there (`$this` of a choice: the JSON name's type; a resource:
  its `resourceType`);
* `profile`: the profiles on the type there: the item's value must conform to one of them
  (validated on the spot, no error found);
* `exists`: `min ≥ 1` → must be present, `max = 0` → must be absent.

Paths: element names (`code.coding.system`), `$this`, `extension('url')`, `ofType(T)`.
`resolve()` cannot be followed without fetching the target: such a discriminator is ignored
(with an `information` issue) and the others decide; a slice none of whose discriminators can
be evaluated matches nothing and is reported once (information), its cardinality unchecked.

An item matches a slice when every usable discriminator matches; it belongs to the first slice
it matches (in the profile's order). Rules: `closed` — every item must match a slice;
`openAtEnd` — items matching no slice come after all the others; `ordered` — items appear in
the order of their slices. Each slice's cardinality is then checked on the items it got.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from fhir_server.errors import Issue
from fhir_server.validation import values as values_mod

if TYPE_CHECKING:
    from fhir_server.validation.profile_model import Node, Profiles

_FUNCTION = re.compile(r"^(\w+)\((.*)\)$")
UNSUPPORTED = object()


def split_path(path: str) -> list[str]:
    """`extension('http://x.y/z').value` → ["extension('http://x.y/z')", "value"]."""
    parts, depth, quote, start = [], 0, False, 0
    for i, ch in enumerate(path):
        if ch == "'":
            quote = not quote
        elif not quote and ch == "(":
            depth += 1
        elif not quote and ch == ")":
            depth -= 1
        elif not quote and depth == 0 and ch == ".":
            parts.append(path[start:i])
            start = i + 1
    parts.append(path[start:])
    return [p.strip() for p in parts if p.strip()]


def _function(segment: str) -> tuple[str, str] | None:
    match = _FUNCTION.match(segment)
    if not match:
        return None
    return match.group(1), match.group(2).strip().strip("'\"")


class Expectation:
    """What one discriminator requires of an item to be in one slice."""

    __slots__ = ("kind", "mode", "value")

    def __init__(self, kind: str, mode: str, value: Any):
        self.kind = kind  # value | pattern | type | profile | exists
        self.mode = mode  # fixed | pattern | binding (value/pattern); else unused
        self.value = value


class Matcher:
    """The compiled discriminators of one sliced element."""

    def __init__(self, node: Node, profiles: Profiles):
        self.node = node
        self.profiles = profiles
        slicing = node.slicing
        self.paths = [(kind, split_path(path)) for kind, path in (slicing.discriminators if slicing else ())]
        self.unsupported: list[str] = []  # discriminators ignored (resolve())
        self.expectations: list[list[Expectation | None]] = []
        self.unmatchable: list[Node] = []
        for slice_node in node.slices:
            row: list[Expectation | None] = []
            for kind, segments in self.paths:
                if any(s == "resolve()" for s in segments):
                    row.append(None)
                    continue
                row.append(self._expect(slice_node, kind, segments))
            self.expectations.append(row)
            if self.paths and all(e is None for e in row):
                self.unmatchable.append(slice_node)
        for (_, segments), (dkind, dpath) in zip(self.paths, slicing.discriminators if slicing else (),
                                                 strict=False):
            if "resolve()" in segments:
                self.unsupported.append(f"{dkind} of {dpath}")

    # -- definition side ---------------------------------------------------------------------
    def _children(self, node: Node, code: str | None = None) -> dict[str, Node]:
        if node.children:
            return node.children
        urls = node.type_urls(code)
        if len(urls) != 1:
            return {}
        profile = self.profiles.get(urls[0])
        return profile.root.children if profile is not None else {}

    def _at(self, node: Node, segments: list[str], code: str | None = None) -> list[tuple[Node, str | None]]:
        """The definitions at a path below a slice (with a type restriction met on the way): the
        element itself, then, where an element on the way is sliced, its required slices (the
        value of `code.coding.code` in a blood-pressure component is fixed in `coding:SBPCode`)."""
        if not segments:
            return [(node, code)]
        segment, rest = segments[0], segments[1:]
        if segment == "$this":
            return self._at(node, rest, code)
        call = _function(segment)
        if call is not None:
            name, arg = call
            if name == "extension":
                holder = self._children(node, code).get("extension")
                found = None
                if holder is not None:
                    found = next((s for s in holder.slices
                                  if any(arg in t.profiles for t in s.types)
                                  or (s.children.get("url") is not None
                                      and (s.children["url"].fixed or ("", None))[1] == arg)), None)
                if found is None:
                    profile = self.profiles.get(arg)
                    found = profile.root if profile is not None else None
                return self._at(found, rest, "Extension") if found is not None else []
            if name in ("ofType", "as"):
                if node.choice_prefix:
                    typed = node.slice(node.choice_prefix + arg[:1].upper() + arg[1:])
                    if typed is not None:
                        node = typed
                return self._at(node, rest, arg)
            return []
        children = self._children(node, code)
        child = children.get(segment) or children.get(segment + "[x]")
        if child is None:
            return []
        out = self._at(child, rest)
        for slice_node in child.slices:
            if slice_node.min >= 1:
                out.extend(self._at(slice_node, rest))
        return out

    def _expect(self, slice_node: Node, kind: str, segments: list[str]) -> Expectation | None:
        candidates = self._at(slice_node, segments)
        extension_url = None
        if segments == ["url"]:  # an extension slice: its url is its profile's
            urls = [p for t in slice_node.types if t.code == "Extension" for p in t.profiles]
            extension_url = urls[0] if len(urls) == 1 else None
        if not candidates:
            return Expectation(kind, "fixed", extension_url) if kind == "value" and extension_url else None
        node, code = candidates[0]
        if kind in ("value", "pattern"):
            for candidate, _ in candidates:
                if candidate.fixed is not None:
                    return Expectation(kind, "fixed", candidate.fixed[1])
                if candidate.pattern is not None:
                    return Expectation(kind, "pattern", candidate.pattern[1])
                if candidate.choice_prefix and len(candidate.slices) == 1:  # value[x] through its type slice
                    only = candidate.slices[0]
                    if only.fixed is not None:
                        return Expectation(kind, "fixed", only.fixed[1])
                    if only.pattern is not None:
                        return Expectation(kind, "pattern", only.pattern[1])
            if extension_url is not None:
                return Expectation(kind, "fixed", extension_url)
            for candidate, _ in candidates:
                if candidate.binding is not None and candidate.binding[0] == "required":
                    return Expectation(kind, "binding", candidate.binding[1])
            return None
        if kind == "type":
            codes = frozenset([code] if code else [t.code for t in node.types])
            return Expectation(kind, "", codes) if codes else None
        if kind == "profile":
            urls = [p for t in node.types for p in t.profiles]
            return Expectation(kind, "", urls) if urls else None
        if kind == "exists":
            if node.min >= 1:
                return Expectation(kind, "", True)
            if node.max == 0:
                return Expectation(kind, "", False)
            return None
        return None

    # -- instance side -----------------------------------------------------------------------
    def _values(self, value: Any, code: str | None, segments: list[str]) -> list[tuple[Any, str | None]]:
        current: list[tuple[Any, str | None]] = [(value, code)]
        for segment in segments:
            if segment == "$this":
                continue
            call = _function(segment)
            nxt: list[tuple[Any, str | None]] = []
            if call is not None:
                name, arg = call
                if name == "extension":
                    for v, _ in current:
                        if isinstance(v, dict):
                            nxt.extend((e, "Extension") for e in v.get("extension") or ()
                                       if isinstance(e, dict) and e.get("url") == arg)
                elif name in ("ofType", "as"):
                    nxt = [(v, c) for v, c in current if c == arg]
                current = nxt
                continue
            for v, _ in current:
                if not isinstance(v, dict):
                    continue
                if segment in v:
                    found = v[segment]
                    for item in found if isinstance(found, list) else (found,):
                        if item is not None:
                            nxt.append((item, item.get("resourceType") if isinstance(item, dict) else None))
                    continue
                for key, found in v.items():  # a choice: `value` → `valueQuantity`
                    if key.startswith(segment) and len(key) > len(segment) and key[len(segment)].isupper():
                        nxt.append((found, self.profiles.type_of_suffix(key[len(segment):])))
            current = nxt
        return current

    def matches(self, index: int, value: Any, code: str | None, terminology: Any,
                conforms: Callable[[Any, str, str], bool]) -> bool:
        row = self.expectations[index]
        usable = False
        for (kind, segments), expectation in zip(self.paths, row, strict=True):
            if expectation is None:
                continue
            usable = True
            found = self._values(value, code, segments)
            if kind in ("value", "pattern"):
                if expectation.mode == "fixed":
                    ok = any(values_mod.equals(expectation.value, v) for v, _ in found)
                elif expectation.mode == "pattern":
                    ok = any(values_mod.contains(expectation.value, v) for v, _ in found)
                else:
                    ok = any(_in_valueset(terminology, expectation.value, v) for v, _ in found)
            elif kind == "type":
                ok = any(c in expectation.value for _, c in found)
            elif kind == "profile":
                ok = any(conforms(v, c or "", url) for v, c in found for url in expectation.value)
            else:  # exists
                ok = bool(found) == expectation.value
            if not ok:
                return False
        return usable


def _in_valueset(terminology: Any, valueset: str, value: Any) -> bool:
    if terminology is None:
        return False
    if isinstance(value, str):
        return bool(terminology.contains(valueset, None, value))
    if isinstance(value, dict):
        codings = value.get("coding") if "coding" in value else [value]
        return any(isinstance(c, dict) and isinstance(c.get("code"), str)
                   and terminology.contains(valueset, c.get("system"), c["code"]) for c in codings or ())
    return False


def matcher(node: Node, profiles: Profiles) -> Matcher:
    found = node.matcher
    if found is None:
        found = node.matcher = Matcher(node, profiles)
    return found


def assign(m: Matcher, items: list[Any], terminology: Any,
           conforms: Callable[[Any, str, str], bool]) -> list[int | None]:
    """The index of the slice each item belongs to (None: no slice)."""
    out: list[int | None] = []
    for item in items:
        chosen = None
        for index, slice_node in enumerate(m.node.slices):
            if slice_node in m.unmatchable:
                continue
            if m.matches(index, item.value, item.code, terminology, conforms):
                chosen = index
                break
        out.append(chosen)
    return out


def check_rules(m: Matcher, items: list[Any], chosen: list[int | None], where: str, label: str,
                issues: list[Issue]) -> None:
    """closed / openAtEnd / ordered, for the items of one sliced element."""
    node = m.node
    slicing = node.slicing
    if slicing is None:
        return
    described = slicing.describe()
    if slicing.rules == "closed":
        for item, index in zip(items, chosen, strict=True):
            if index is None:
                names = ", ".join(s.slice_name or "?" for s in node.slices)
                issues.append(Issue("error", "structure",
                                    f"This item matches none of the slices of {node.path} ({names}; discriminator: "
                                    f"{described}) and the slicing is closed in {label}: make it match one of "
                                    "them or remove it", [item.expr]))
    elif slicing.rules == "openAtEnd":
        last_sliced = max((i for i, index in enumerate(chosen) if index is not None), default=-1)
        for i, (item, index) in enumerate(zip(items, chosen, strict=True)):
            if index is None and i < last_sliced:
                issues.append(Issue("error", "structure",
                                    f"Items of {node.path} that match no slice must come after all the sliced ones "
                                    f"(slicing openAtEnd in {label})", [item.expr]))
    if slicing.ordered:
        highest = -1
        for item, index in zip(items, chosen, strict=True):
            if index is None:
                continue
            if index < highest:
                issues.append(Issue("error", "structure",
                                    f"Slice {node.slices[index].slice_name!r} of {node.path} is out of order: the "
                                    f"slicing is ordered in {label}, so its items must come before those of slice "
                                    f"{node.slices[highest].slice_name!r}", [item.expr]))
            highest = max(highest, index)
