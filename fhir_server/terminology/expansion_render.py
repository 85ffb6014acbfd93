"""The `$expand` answer: a ValueSet with its `expansion` (text filter, activeOnly, paging,
designations, the code systems used and the warnings), from a computed `Expansion`."""

from __future__ import annotations

import copy
import re
import uuid
from datetime import UTC, datetime
from typing import Any

from fhir_server.terminology.expand import Entry, Expansion
from fhir_server.text import fold

_WORD = re.compile(r"\w+")


def text_matches(entry: Entry, text: str) -> bool:
    """Every word of the filter starts a word of the display (or of a designation), or the
    filter starts the code; case and accents ignored."""
    folded = fold(text).strip()
    words = _WORD.findall(folded)
    if not words:
        return True
    if fold(entry.code).startswith(folded):
        return True
    texts = [entry.display or ""] + [d.get("value") or "" for d in entry.designations]
    have = [w for t in texts for w in _WORD.findall(fold(t))]
    return all(any(h.startswith(w) for h in have) for w in words)


def render(valueset: dict[str, Any], expansion: Expansion, *, filter: str | None = None, offset: int = 0,
           count: int | None = None, include_designations: bool = False, active_only: bool = False) -> dict[str, Any]:
    """The ValueSet with its `expansion`: `total` codes after filter/activeOnly, from `offset`."""
    if offset < 0 or (count is not None and count < 0):
        raise ValueError("offset and count are not negative")
    entries = expansion.entries
    if active_only:
        entries = [e for e in entries if not e.inactive]
    if filter:
        entries = [e for e in entries if text_matches(e, filter)]
    page = entries[offset:] if count is None else entries[offset:offset + count]
    parameters: list[dict[str, Any]] = []
    if filter:
        parameters.append({"name": "filter", "valueString": filter})
    if offset:
        parameters.append({"name": "offset", "valueInteger": offset})
    if count is not None:
        parameters.append({"name": "count", "valueInteger": count})
    if include_designations:
        parameters.append({"name": "includeDesignations", "valueBoolean": True})
    if active_only:
        parameters.append({"name": "activeOnly", "valueBoolean": True})
    for system, version in expansion.used.items():
        parameters.append({"name": "used-codesystem", "valueUri": f"{system}|{version}" if version else system})
    for warning in expansion.warnings:
        parameters.append({"name": "warning", "valueString": warning})
    out = copy.deepcopy({k: v for k, v in valueset.items() if k not in ("text", "expansion")})
    out.setdefault("resourceType", "ValueSet")
    body: dict[str, Any] = {
        "identifier": f"urn:uuid:{uuid.uuid4()}",
        "timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "total": len(entries),
        "offset": offset,
    }
    if parameters:
        body["parameter"] = parameters
    if page:
        body["contains"] = [_item(e, include_designations) for e in page]
    out["expansion"] = body
    return out


def _item(entry: Entry, include_designations: bool) -> dict[str, Any]:
    item: dict[str, Any] = {"system": entry.system}
    if entry.version:
        item["version"] = entry.version
    if entry.abstract:
        item["abstract"] = True
    if entry.inactive:
        item["inactive"] = True
    item["code"] = entry.code
    if entry.display:
        item["display"] = entry.display
    if include_designations and entry.designations:
        item["designation"] = copy.deepcopy(entry.designations)
    return item
