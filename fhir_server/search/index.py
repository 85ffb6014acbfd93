"""Search values computed when a resource is written, stored beside its JSON and indexed.

`ix` holds the values per parameter code (and `code:suffix` for modifier-specific ones), in the
structure each parameter type's module (`search/params/`) defines: what the exact predicates,
sorting and includes read. `k` holds the same values flattened into ordered string keys
(`search/keys.py`), under the one index every search drives with.
"""

from __future__ import annotations

from typing import Any

from fhir_server.search import fulltext
from fhir_server.search.keys import contained_prefix, flatten
from fhir_server.search.parameters import SearchParameters

INDEXED_FIELDS = ("k",)


def index_values(params: SearchParameters, resource: dict[str, Any], base_urls: tuple[str, ...] = ()) -> dict[str, Any]:
    """The fields to store beside the resource's JSON.

    Contained resources are indexed too, for `_contained` searches: their values under `cix`
    (`[{"t": type, "id": id, "ix": {...}}]`) and their keys in `k` prefixed with `#Type:`."""
    ix = {**params.index_resource(resource, base_urls), **fulltext.index(resource)}
    keys = flatten(ix)
    contained = []
    for inner in resource.get("contained") or ():
        if isinstance(inner, dict) and isinstance(inner.get("resourceType"), str) and isinstance(inner.get("id"), str):
            inner_ix = {**params.index_resource(inner, base_urls), **fulltext.index(inner)}
            contained.append({"t": inner["resourceType"], "id": inner["id"], "ix": inner_ix})
            keys.extend(contained_prefix(inner["resourceType"]) + k for k in flatten(inner_ix))
    out: dict[str, Any] = {"ix": ix, "k": keys}
    if contained:
        out["cix"] = contained
    return out
