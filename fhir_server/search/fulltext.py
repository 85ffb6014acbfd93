"""`_content` and `_text`: the words of a whole resource, and of its narrative.

Stored when a resource is written, beside the other search values: `ix["_text:words"]` (the
narrative) and `ix["_content:words"]` (every other text of the resource: strings, codes and
displays, contained resources; `_content` looks in both), each the sorted distinct words,
folded (case and accents: "Diabète" is `diabete`, "Œdème" `oedeme`). They are not keyed in
`k`: a key per word would make every write pay an index entry per word, so a criterion is an exact predicate on
what the other criteria found (alone, it reads the whole type). Identifiers of things rather
than text (`id`, `meta`, `url`, `system`, `reference`, URIs, base64 `data`) and dates are left out.

A search value is words; each must begin a word of the resource (`diab` finds "Diabète",
`insuff card` finds "insuffisance cardiaque"); a comma separates alternatives. Resources stored
before this existed are found after a `$reindex`.
"""

from __future__ import annotations

import bisect
import html
import re
from typing import Any

from fhir_server.search.terms import SCAN, Term, values
from fhir_server.text import fold

CODES = ("_content", "_text")
CONTENT = "_content:words"
TEXT = "_text:words"
_WORD = re.compile(r"\w+")
_TAG = re.compile(r"<[^>]*>")
_URI = re.compile(r"(https?|urn|ftp|mailto|tel):", re.IGNORECASE)  # names of things, not text
_DATE = re.compile(r"\d{4}(-\d\d(-\d\d(T[\d:.]+(Z|[+-]\d\d:\d\d)?)?)?)?$")  # dates and times: the date params
_NOT_TEXT = frozenset({"id", "meta", "url", "system", "reference", "fullUrl", "data", "div", "resourceType"})
MAX_WORDS = 5000  # distinct words kept per resource: the stored document stays small
MAX_WORD = 40  # longer "words" (hashes, base64 that slipped through) are cut


def _words(texts: list[str]) -> list[str]:
    found: set[str] = set()
    for text in texts:
        for word in _WORD.findall(fold(text)):
            found.add(word[:MAX_WORD])
    return sorted(found)[:MAX_WORDS]


def _narrative(resource: dict[str, Any]) -> list[str]:
    text = resource.get("text")
    div = text.get("div") if isinstance(text, dict) else None
    return [html.unescape(_TAG.sub(" ", div))] if isinstance(div, str) else []


def _strings(value: Any, out: list[str]) -> None:
    if isinstance(value, str):
        if not _DATE.match(value) and not _URI.match(value):
            out.append(value)
    elif isinstance(value, dict):
        for key, inner in value.items():
            if key not in _NOT_TEXT:
                _strings(inner, out)
    elif isinstance(value, list):
        for inner in value:
            _strings(inner, out)


def index(resource: dict[str, Any]) -> dict[str, list[str]]:
    """The stored words of a resource (nothing for a resource without text)."""
    texts: list[str] = []
    _strings(resource, texts)
    out = {}
    content = _words(texts)
    if content:
        out[CONTENT] = content
    narrative = _words(_narrative(resource))
    if narrative:
        out[TEXT] = narrative
    return out


def term(code: str, modifier: str | None, texts: list[str], ctx) -> Term:
    if modifier is not None:
        raise ctx.unsupported_modifier(code, modifier)
    alternatives = [_WORD.findall(fold(text)) for text in texts]
    alternatives = [words for words in alternatives if words]
    if not alternatives:
        raise ctx.error(f"{code} needs at least one word, got {','.join(texts)!r}")

    def begins_a_word(stored: list[str], prefix: str) -> bool:
        at = bisect.bisect_left(stored, prefix)
        return at < len(stored) and stored[at].startswith(prefix)

    def match(doc) -> bool:
        narrative = values(doc, TEXT)
        stored = values(doc, CONTENT) if code == "_content" else []
        return any(all(begins_a_word(narrative, w) or begins_a_word(stored, w) for w in words)
                   for words in alternatives)

    return Term(None, [], match, SCAN)
