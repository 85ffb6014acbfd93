"""Search values computed when a resource is written, stored beside its JSON and indexed.

Token values are flat strings so that one single-field (multikey) index answers every token
query form: `system|code`, `code` (any system), `|code` (no system) and `system|` (any code).
"""

from __future__ import annotations

from typing import Any

from fhir_server.search.parameters import SearchParameters

# Parameters indexed today; the search engine widens this to every parameter type.
INDEXED_TYPES = frozenset({"token"})


def token_keys(value: Any) -> list[str]:
    """Index keys of one token-ish value (Identifier, Coding, CodeableConcept, code, boolean…)."""
    if isinstance(value, bool):
        return ["true" if value else "false"]
    if isinstance(value, str):
        return [value]
    if not isinstance(value, dict):
        return []
    if "coding" in value:
        return [k for coding in value["coding"] if isinstance(coding, dict) for k in token_keys(coding)]
    code = value.get("code", value.get("value"))
    system = value.get("system")
    keys = []
    if isinstance(code, str):
        keys.append(code)
        keys.append(f"{system}|{code}" if system else f"|{code}")
    if system:
        keys.append(f"{system}|")
    return keys


def indexed_fields(params: SearchParameters, resource_type: str) -> list[str]:
    return sorted(p.field for code, p in params.for_type(resource_type).items()
                  if p.type in INDEXED_TYPES and not code.startswith("_"))


def index_values(params: SearchParameters, resource: dict[str, Any]) -> dict[str, Any]:
    """The `ix` sub-document of a stored resource: parameter code → sorted index keys."""
    out: dict[str, list[str]] = {}
    for code, param in params.for_type(resource["resourceType"]).items():
        if param.type not in INDEXED_TYPES or code.startswith("_"):
            continue
        keys = {k for value in params.evaluate(param, resource) for k in token_keys(value)}
        if keys:
            out[code] = sorted(keys)
    return {"ix": out} if out else {}
