"""ValueSets and CodeSystems written through the API, found by canonical URL with the search engine."""

from __future__ import annotations

from typing import Any

from fhir_server import jsonio


def stored_finder(server):
    """`find_stored(resource_type, "url" or "url|version")` over this server's current resources:
    with a version, the resource of that version; without, the most recently updated one."""

    def find_stored(resource_type: str, canonical: str) -> dict[str, Any] | None:
        from fhir_server.search.execute import find
        from fhir_server.search.params.token import keys_term

        url, _, version = canonical.partition("|")
        docs = find(server, resource_type, [keys_term("url", {url})], projection={"json": 1, "del": 1, "ix": 1})
        found = [jsonio.loads(doc["json"]) for doc in docs if doc.get("json")]
        found = [r for r in found if r.get("url") == url and (not version or r.get("version") == version)]
        if not found:
            return None
        return max(found, key=lambda r: (r.get("meta") or {}).get("lastUpdated") or "")

    return find_stored


def for_server(server):
    """The `Terminology` of a running server: its packages, then what is stored on it."""
    from fhir_server.terminology.service import Terminology

    return Terminology(server.definitions, stored_finder(server))
