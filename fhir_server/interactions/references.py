"""Reference rewriting in a transaction: every link to another entry (`urn:uuid:…`, its fullUrl,
or a relative URL resolved against an entry's fullUrl) becomes the `Type/id` the server assigns,
and conditional references (`Patient?identifier=…`) the one resource they match.

What counts as a link follows R4 http.html#trules ("Servers SHALL replace all matching links in
the bundle … resource references, elements of type uri, url, oid, uuid, and <a href> & <img src>
in the narrative. Elements of type canonical are not replaced."), read off the element types of
the StructureDefinitions, never off element names:

* `Reference.reference`, wherever a Reference is (extensions, backbones, contained resources);
  a `urn:uuid:`/`urn:oid:` reference naming no entry is a 400;
* values of elements typed `uri` or `url` (`Attachment.url`, `valueUri`, `valueUrl`…) equal to a
  fullUrl: replaced, anything else kept (an identifier namespace is no error);
* `href`/`src` of `<a>`/`<img>` in a narrative (`xhtml`) div, by the same rule.

Left alone, on purpose: `canonical` (the spec says so: a canonical names a resource by its `url`,
not by where it is stored); `oid`/`uuid` (a `Type/id` is not a valid value of either, the entry
stays reachable by its urn); `string`, `markdown` and every other type; `Extension.url`,
`Resource.id`, `Element.id` (System types: names, not links); a value equal to the canonical `url`
of a resource the transaction writes (the common fullUrl = url of conformance resources: there
it is that resource's name, and rewriting `Coding.system` or `CodeSystem.url` itself to
`CodeSystem/x` would break it); and the `entry` of a Bundle resource stored by an entry (its
references are resolved inside that Bundle, bundle.html#references: a document keeps its
`urn:uuid:` references to its own entries).

Pure: it is handed the compiled element models, the map of fullUrls, and the function that
resolves conditional references (a search in the transaction's snapshot), so the rules here are
tested without a database.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Collection, Mapping
from typing import Any

from fhir_server.definitions.model import PRIMITIVE, RESOURCE, Models, Slot, Structure
from fhir_server.errors import bad_request

_CONDITIONAL_REF = re.compile(r"^[A-Z][A-Za-z]+\?")
_RESTFUL = re.compile(r"^(?P<base>.+)/[A-Z][A-Za-z]+/[A-Za-z0-9\-.]{1,64}$")
_LINK_TYPES = frozenset({"uri", "url"})
_REFERENCE = "Reference.reference"
_NARRATIVE = "xhtml"
_LINK_TAG = re.compile(r"<(?:a|img)\b[^>]*>", re.IGNORECASE)
_LINK_ATTRIBUTE = re.compile(r"(\s(?:href|src)\s*=\s*)([\"'])(.*?)\2", re.IGNORECASE | re.DOTALL)


def base_of(full_url: str | None) -> str | None:
    """`http://x/fhir/Patient/1` → `http://x/fhir`: relative references in that entry are
    relative to it (R4 bundle.html#references)."""
    match = _RESTFUL.match(full_url or "")
    return match["base"] if match and "://" in full_url else None


def rewrite(resource: dict[str, Any], models: Models, ids: Mapping[str, str], base: str | None,
            conditional: Callable[[str], str], canonical: Collection[str] = ()) -> dict[str, Any]:
    """`resource` (a copy) with its links to bundle entries replaced by the `Type/id` of the
    entry's resource: `ids` maps fullUrls (and absolute URLs of what the bundle writes) to
    `Type/id`, `base` is the entry's own base, `canonical` the canonical `url`s of what the bundle
    writes. The resource's type must be known (validation ran before)."""
    return _Links(models, ids, base, conditional, frozenset(canonical)).resource(resource)


class _Links:
    """One walk over one entry's resource, typed by the element models."""

    def __init__(self, models: Models, ids: Mapping[str, str], base: str | None,
                 conditional: Callable[[str], str], canonical: frozenset[str]):
        self.models, self.ids, self.base = models, ids, base
        self.conditional, self.canonical = conditional, canonical

    def resource(self, obj: dict[str, Any]) -> dict[str, Any]:
        type_ = obj.get("resourceType")
        model = self.models.resource(type_) if isinstance(type_, str) else None
        if model is None:
            return dict(obj)  # not a resource validation accepts: nothing in it is understood as a link
        own_scope = ("entry",) if model.name == "Bundle" else ()
        return self.object(obj, model.structure, own_scope)

    def object(self, obj: dict[str, Any], structure: Structure, kept: tuple[str, ...] = ()) -> dict[str, Any]:
        out = {}
        for key, value in obj.items():
            slot = structure.slots.get(key)
            if key in kept:
                out[key] = value
            elif slot is not None:
                out[key] = [self.value(v, slot) for v in value] if isinstance(value, list) else self.value(value, slot)
            else:
                out[key] = self.companion(key, value, structure)
        return out

    def companion(self, key: str, value: Any, structure: Structure) -> Any:
        """A primitive's `_name` (its extensions may hold references); other keys as they are."""
        primitive = structure.slots.get(key[1:]) if key.startswith("_") else None
        if primitive is None or primitive.kind != PRIMITIVE or primitive.type.model is None:
            return value
        inner = primitive.type.model.element_structure
        if isinstance(value, list):
            return [self.object(v, inner) if isinstance(v, dict) else v for v in value]
        return self.object(value, inner) if isinstance(value, dict) else value

    def value(self, value: Any, slot: Slot) -> Any:
        if isinstance(value, dict):
            if slot.kind == RESOURCE:
                return self.resource(value)
            structure = slot.structure
            return self.object(value, structure) if structure is not None else value
        if not isinstance(value, str):
            return value
        if slot.element.path == _REFERENCE:
            return self.reference(value)
        if slot.kind == PRIMITIVE and slot.type.code in _LINK_TYPES:
            return self.link(value) or value
        if slot.kind == PRIMITIVE and slot.type.code == _NARRATIVE:
            return self.narrative(value)
        return value

    def reference(self, ref: str) -> str:
        found = self.entry(ref)
        if found is not None:
            return found
        if _CONDITIONAL_REF.match(ref):
            return self.conditional(ref)
        if ref.startswith(("urn:uuid:", "urn:oid:")):
            raise bad_request(f"the reference {ref!r} names no entry of this transaction", code="not-found")
        return ref

    def link(self, value: str) -> str | None:
        """The `Type/id` a uri/url value names, None when it names no entry (or is a canonical name)."""
        if value in self.canonical or (self.base and f"{self.base}/{value}" in self.canonical):
            return None
        return self.entry(value)

    def entry(self, value: str) -> str | None:
        if value in self.ids:
            return self.ids[value]
        if self.base and f"{self.base}/{value}" in self.ids:
            return self.ids[f"{self.base}/{value}"]
        return None

    def narrative(self, div: str) -> str:
        return _LINK_TAG.sub(lambda tag: _LINK_ATTRIBUTE.sub(self._attribute, tag[0]), div)

    def _attribute(self, match: re.Match[str]) -> str:
        found = self.link(html.unescape(match[3]))
        return match[0] if found is None else f"{match[1]}{match[2]}{html.escape(found)}{match[2]}"
