"""batch and transaction (`POST [base]` with a Bundle).

The Bundle is checked here; `batch.py` runs each entry on its own, `transaction.py` runs them
all or none. Entries become requests in `bundle_entries.py`, references between them are
rewritten by `references.py`, and the answers are built by `bundle_responses.py`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fhir_server.errors import FhirError, Issue, bad_request
from fhir_server.interactions import batch, transaction
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
    if kind == "batch":
        return batch.run(server, req, raw)
    return transaction.run(server, req, raw)


