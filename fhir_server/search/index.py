"""Search values computed when a resource is written, stored beside its JSON and indexed.

`values` holds them per parameter code (and `code:suffix` for modifier-specific ones), in the
structure each parameter type's module (`search/params/`) defines: what the exact predicates,
sorting and includes read. `keys` holds the same values flattened into ordered string keys
(`search/keys.py`), under the one index every search drives with.
"""

from __future__ import annotations

from typing import Any

from fhir_server.search import fulltext
from fhir_server.search.keys import contained_prefix, flatten
from fhir_server.search.parameters import SearchParameters
from fhir_server.storage.records import ContainedValues, IndexValues


def index_values(params: SearchParameters, resource: dict[str, Any], base_urls: tuple[str, ...] = ()) -> IndexValues:
    """The search values to store beside the resource's JSON.

    Contained resources are indexed too, for `_contained` searches: their values apart, and
    their keys among the container's, prefixed with `#Type:`."""
    ix = {**params.index_resource(resource, base_urls), **fulltext.index(resource)}
    keys = flatten(ix)
    contained = []
    for inner in resource.get("contained") or ():
        if isinstance(inner, dict) and isinstance(inner.get("resourceType"), str) and isinstance(inner.get("id"), str):
            inner_ix = {**params.index_resource(inner, base_urls), **fulltext.index(inner)}
            contained.append(ContainedValues(inner["resourceType"], inner["id"], inner_ix))
            keys.extend(contained_prefix(inner["resourceType"]) + k for k in flatten(inner_ix))
    return IndexValues(ix, keys, contained)
