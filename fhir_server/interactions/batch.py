"""batch: each entry runs on its own, as if it came alone, and its outcome is reported."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fhir_server.errors import FhirError, bad_request
from fhir_server.interactions.bundle_entries import ORDER, Entry, dispatch, parse_entry
from fhir_server.interactions.bundle_responses import error_entry, response_entry
from fhir_server.interactions.request import FhirRequest, FhirResponse

if TYPE_CHECKING:
    from fhir_server.server import FhirServer


def run(server: FhirServer, req: FhirRequest, raw: list[Any]) -> FhirResponse:
    responses: list[dict[str, Any] | None] = [None] * len(raw)
    parsed: list[Entry] = []
    for index, item in enumerate(raw):
        try:
            parsed.append(parse_entry(server, req, index, item))
        except FhirError as exc:
            responses[index] = error_entry(exc)
    full_urls = {e.full_url: e.index for e in parsed if e.full_url}
    for entry in sorted(parsed, key=lambda e: (ORDER[e.method], e.index)):
        try:
            _independent(entry, full_urls)
            responses[entry.index] = response_entry(req, dispatch(server, entry))
        except FhirError as exc:
            responses[entry.index] = error_entry(exc)
    return FhirResponse(200, {"resourceType": "Bundle", "type": "batch-response", "entry": responses})


def _independent(entry: Entry, full_urls: dict[str, int]) -> None:
    """Batch entries may not refer to each other (R4 http.html#brules): that needs a transaction."""
    for ref in _references(entry.resource):
        other = full_urls.get(ref)
        if other is not None and other != entry.index:
            raise bad_request(f"{entry.where()} refers to entry {other} ({ref}); entries of a batch are independent: "
                              f"send them as a transaction", code="invariant")


def _references(value: Any):
    if isinstance(value, list):
        for item in value:
            yield from _references(item)
    elif isinstance(value, dict):
        if isinstance(value.get("reference"), str):
            yield value["reference"]
        for item in value.values():
            if isinstance(item, (dict, list)):
                yield from _references(item)
