"""batch and transaction (`POST [base]` with a Bundle).

The Bundle is checked here (its entries, and how many are searches: each may cost as much as a
request of its own); `batch.py` runs each entry on its own, `transaction.py` runs them all or
none. Entries become requests in `bundle_entries.py`, references between them are rewritten by
`references.py`, and the answers are built by `bundle_responses.py`, whose size is capped.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fhir_server import budget
from fhir_server.errors import FhirError, Issue, bad_request
from fhir_server.interactions import batch, transaction, urls
from fhir_server.interactions.request import FhirRequest, FhirResponse

if TYPE_CHECKING:
    from fhir_server.server import FhirServer


def process(server: FhirServer, req: FhirRequest) -> FhirResponse:
    bundle = req.body
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise bad_request("POST to the base URL takes a Bundle of type batch or transaction", code="invalid")
    kind = bundle.get("type")
    if kind not in ("batch", "transaction"):
        raise bad_request(f"Bundle.type is {kind!r}: POST [base] processes batch and transaction bundles "
                          f"(store other bundles with POST [base]/Bundle)", code="invalid", expression="Bundle.type")
    raw = bundle.get("entry") or []
    if not isinstance(raw, list):
        raise bad_request("Bundle.entry must be an array", code="structure", expression="Bundle.entry")
    if len(raw) > server.settings.max_bundle_entries:
        raise FhirError(413, Issue("error", "too-costly", f"the bundle has {len(raw)} entries; this server takes "
                                   f"at most {server.settings.max_bundle_entries} (FHIR_MAX_BUNDLE_ENTRIES)"))
    _check_searches(server, req, raw)
    if kind == "batch":
        return batch.run(server, req, raw)
    return transaction.run(server, req, raw)


# URL shapes that search when read (GET/HEAD), and those that search whatever the method (_search)
_READ_SEARCHES = ("type", "system", "compartment")
_SEARCHES = ("type-search", "system-search")


def _check_searches(server: FhirServer, req: FhirRequest, raw: list[Any]) -> None:
    """413 before any entry runs when the bundle holds more searches than FHIR_MAX_BATCH_SEARCHES."""
    limit = server.settings.max_batch_searches
    count = sum(1 for item in budget.checked(raw, every=500) if _is_search(item, req.base_url))
    if count > limit:
        raise FhirError(413, Issue("error", "too-costly", (
            f"the bundle holds {count} searches; this server runs at most {limit} in one batch or transaction "
            f"(FHIR_MAX_BATCH_SEARCHES): send them in several bundles, or combine criteria into fewer searches")))


def _is_search(item: Any, base_url: str) -> bool:
    """A search entry (malformed entries are not: `parse_entry` reports them)."""
    request = item.get("request") if isinstance(item, dict) else None
    if not isinstance(request, dict) or not isinstance(request.get("url"), str):
        return False
    try:
        shape = urls.parse(request["url"], base_url).shape
    except FhirError:
        return False
    return shape in _SEARCHES or (request.get("method") in ("GET", "HEAD") and shape in _READ_SEARCHES)
