"""Search values computed when a resource is written, stored beside its JSON and indexed.

`ix` holds the values per parameter code (and `code:suffix` for modifier-specific ones), in the
structure each parameter type's module (`search/params/`) defines: what the exact predicates,
sorting and includes read. `k` holds the same values flattened into ordered string keys
(`search/keys.py`), under the one index every search drives with.
"""

from __future__ import annotations

from typing import Any

from fhir_server.search.keys import flatten
from fhir_server.search.parameters import SearchParameters

INDEXED_FIELDS = ("k",)


def index_values(params: SearchParameters, resource: dict[str, Any]) -> dict[str, Any]:
    """The fields to store beside the resource's JSON."""
    ix = params.index_resource(resource)
    return {"ix": ix, "k": flatten(ix)}
