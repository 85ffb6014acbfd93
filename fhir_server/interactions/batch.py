"""batch: each entry runs on its own, as if it came alone, and its outcome is reported.

The answer is followed as it grows (`bundle_responses.ResponseSize`) and the time budget checked
before every entry. When either runs out before the batch has written anything, the whole batch
answers that error (nothing was done: the client may send it again, split). Once an entry has
written, the batch must report it: the entries not run are then answered with the error instead.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fhir_server import budget
from fhir_server.errors import FhirError, bad_request
from fhir_server.interactions.bundle_entries import ORDER, Entry, dispatch, parse_entry
from fhir_server.interactions.bundle_responses import (
    ResponseSize,
    error_entry,
    measured_entry,
    measured_error,
    without_resource,
)
from fhir_server.interactions.request import FhirRequest, FhirResponse

if TYPE_CHECKING:
    from fhir_server.server import FhirServer


def run(server: FhirServer, req: FhirRequest, raw: list[Any]) -> FhirResponse:
    responses: list[dict[str, Any] | None] = [None] * len(raw)
    parsed: list[Entry] = []
    size = ResponseSize(server.settings.max_response_bytes, "batch")
    for index, item in enumerate(raw):
        try:
            parsed.append(parse_entry(server, req, index, item))
        except FhirError as exc:
            responses[index], used = measured_error(exc)
            size.fits(used)
    full_urls = {e.full_url: e.index for e in parsed if e.full_url}
    wrote, stopped = False, None
    for entry in sorted(parsed, key=lambda e: (ORDER[e.method], e.index)):
        if stopped is None:
            stopped = _out_of_time(wrote)
        if stopped is not None:
            responses[entry.index] = error_entry(stopped)
            continue
        item, used, done = _run_entry(server, req, entry, full_urls)
        if not size.fits(used):
            stopped = size.refusal(entry.where())
            if not wrote:
                raise stopped
            item = without_resource(item)[0] if done and _writes(entry) else error_entry(stopped)
        responses[entry.index] = item
        wrote = wrote or (done and _writes(entry))
    return FhirResponse(200, {"resourceType": "Bundle", "type": "batch-response", "entry": responses})


def _run_entry(server: FhirServer, req: FhirRequest, entry: Entry,
               full_urls: dict[str, int]) -> tuple[dict[str, Any], int, bool]:
    """(its response entry, about how many bytes it takes, whether it succeeded)."""
    try:
        _independent(entry, full_urls)
        return (*measured_entry(req, dispatch(server, entry)), True)
    except FhirError as exc:
        return (*measured_error(exc), False)


def _out_of_time(wrote: bool) -> FhirError | None:
    """The budget's 408 before the next entry: raised while nothing is written, else returned."""
    try:
        budget.check()
    except FhirError as exc:
        if not wrote:
            raise
        return exc
    return None


def _writes(entry: Entry) -> bool:
    """Whether the entry may have changed something (operations may write too)."""
    return entry.method not in ("GET", "HEAD")


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
