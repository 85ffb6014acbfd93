"""`ValueSet/$expand` (type level with `url` or an inline `valueSet`; instance level on a stored
ValueSet): the ValueSet with its expansion, from the server's `Terminology`.

`filter`, `offset`, `count`, `includeDesignations`, `activeOnly` apply; `total` counts the
codes after filter/activeOnly, `offset`/`count` page them (no paging links). Errors: 404 for
an unknown ValueSet, 400 for missing or contradictory inputs, 422 when the ValueSet cannot be
expanded here (a code system not held, an unknown filter…), saying what and why.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fhir_server import jsonio
from fhir_server.errors import FhirError, Issue, bad_request, not_found
from fhir_server.interactions.access import reach
from fhir_server.interactions.read import current
from fhir_server.interactions.request import FhirRequest, FhirResponse
from fhir_server.operations.terminology_params import Inputs, read_inputs
from fhir_server.terminology import TerminologyError

if TYPE_CHECKING:
    from fhir_server.server import FhirServer

DEFINITION = "http://hl7.org/fhir/OperationDefinition/ValueSet-expand"
# Inputs that change which codes are in the answer in ways not implemented here.
REFUSED = ("context", "contextDirection", "date", "exclude-system", "system-version", "check-system-version",
           "force-system-version")


def expand(server: FhirServer, req: FhirRequest) -> FhirResponse:
    inputs = read_inputs(server, req, DEFINITION, REFUSED)
    valueset = target_valueset(server, req, inputs)
    offset, count = inputs.get("offset") or 0, inputs.get("count")
    if offset < 0 or (count is not None and count < 0):
        raise bad_request("$expand: offset and count cannot be negative", code="value")
    try:
        result = server.terminology.expand(
            valueset, filter=inputs.get("filter"), offset=offset, count=count,
            include_designations=bool(inputs.get("includeDesignations")), active_only=bool(inputs.get("activeOnly")))
    except TerminologyError as exc:
        raise terminology_error(exc, "cannot expand here") from exc
    return FhirResponse(200, result)


def target_valueset(server: FhirServer, req: FhirRequest, inputs: Inputs) -> dict[str, Any]:
    """The ValueSet an operation is about: stored (instance level), inline (`valueSet`) or by `url`
    (with `valueSetVersion`)."""
    url, inline, version = inputs.get("url"), inputs.get("valueSet"), inputs.get("valueSetVersion")
    if req.id is not None:
        stored = stored_resource(server, req)
        if inline is not None:
            raise bad_request(f"{inputs.op} on ValueSet/{req.id}: a valueSet parameter contradicts the instance",
                              code="invalid")
        if url and url != stored.get("url"):
            raise bad_request(f"{inputs.op} on ValueSet/{req.id}: url {url} is not this ValueSet's url "
                              f"({stored.get('url')})", code="invalid")
        return stored
    if inline is not None:
        if url:
            raise bad_request(f"{inputs.op}: give either url or valueSet, not both", code="invalid")
        return inline
    if not url:
        raise bad_request(f"{inputs.op} needs the ValueSet: url, or valueSet in a Parameters body, or call it on "
                          f"ValueSet/[id]", code="required")
    canonical = url if "|" in url or not version else f"{url}|{version}"
    found = server.terminology.valueset(canonical)
    if found is None:
        raise not_found(f"no ValueSet {canonical} is known here (loaded packages and stored ValueSets)")
    return found


def stored_resource(server: FhirServer, req: FhirRequest) -> dict[str, Any]:
    return jsonio.loads(current(server, req.type, req.id, reach(server, req, "r")).json)


def terminology_error(exc: TerminologyError, what: str) -> FhirError:
    """422 for what this server cannot answer (404 is for the resource asked about, checked before)."""
    code = exc.code if exc.code in ("not-supported", "too-costly", "not-found", "invalid") else "processing"
    return FhirError(422, Issue("error", code, f"{what}: {exc}"))
