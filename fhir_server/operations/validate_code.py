"""`ValueSet/$validate-code` and `CodeSystem/$validate-code` (type and instance level).

The code comes as `code` (+ `system`, `display`), `coding` or `codeableConcept`; the answer is
a `Parameters` with `result`, `message` (why not, or a warning) and `display` (the code's
display). 404 for an unknown ValueSet/CodeSystem, 400 for missing or contradictory inputs,
422 when the answer cannot be known here (a code system not held, held only in part, an
unknown filter), with the reason.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fhir_server.errors import FhirError, Issue, bad_request, not_found
from fhir_server.interactions.request import FhirRequest, FhirResponse
from fhir_server.operations.expand import stored_resource, target_valueset
from fhir_server.operations.terminology_params import Inputs, read_inputs

if TYPE_CHECKING:
    from fhir_server.server import FhirServer

VALUESET_DEFINITION = "http://hl7.org/fhir/OperationDefinition/ValueSet-validate-code"
CODESYSTEM_DEFINITION = "http://hl7.org/fhir/OperationDefinition/CodeSystem-validate-code"


def valueset_validate_code(server: FhirServer, req: FhirRequest) -> FhirResponse:
    inputs = read_inputs(server, req, VALUESET_DEFINITION, ("context", "date"))
    valueset = target_valueset(server, req, inputs)
    code, system = inputs.get("code"), inputs.get("system")
    if code is not None and not system:
        raise bad_request("$validate-code: a code needs its system (or send a coding)", code="required")
    if code is None and system:
        raise bad_request("$validate-code: system is given without a code", code="required")
    return _answer(server, inputs, valueset=valueset, code=code, system=system)


def codesystem_validate_code(server: FhirServer, req: FhirRequest) -> FhirResponse:
    inputs = read_inputs(server, req, CODESYSTEM_DEFINITION, ("date",))
    url, inline, version = inputs.get("url"), inputs.get("codeSystem"), inputs.get("version")
    coding = inputs.get("coding")
    if req.id is not None:
        codesystem: dict[str, Any] | str = stored_resource(server, req)
        if inline is not None or (url and url != codesystem.get("url")):
            raise bad_request(f"$validate-code on CodeSystem/{req.id}: url or codeSystem contradict the instance",
                              code="invalid")
    elif inline is not None:
        if url:
            raise bad_request("$validate-code: give either url or codeSystem, not both", code="invalid")
        codesystem = inline
    else:
        url = url or (coding or {}).get("system")
        if not url:
            raise bad_request("$validate-code needs the code system: url, codeSystem, a coding with its system, or "
                              "call it on CodeSystem/[id]", code="required")
        canonical = f"{url}|{version}" if version and "|" not in url else url
        found = server.terminology.codesystem(canonical)
        if found is None:
            raise not_found(f"no CodeSystem {url} is known here (loaded packages and stored CodeSystems)")
        if version and found.get("version") and found["version"] != version:
            raise not_found(f"version {version} of the CodeSystem {url} is not held here ({found['version']} is)")
        codesystem = url
    return _answer(server, inputs, codesystem=codesystem, code=inputs.get("code"))


def _answer(server: FhirServer, inputs: Inputs, **target: Any) -> FhirResponse:
    try:
        result = server.terminology.validate_code(
            **target, display=inputs.get("display"), coding=inputs.get("coding"),
            codeable_concept=inputs.get("codeableConcept"), abstract=bool(inputs.get("abstract")))
    except ValueError as exc:
        raise bad_request(f"{inputs.op}: {exc}", code="required") from exc
    if result["result"] is None:
        raise FhirError(422, Issue("error", "not-supported", f"cannot validate here: {result['message']}"))
    params: list[dict[str, Any]] = [{"name": "result", "valueBoolean": result["result"]}]
    if result.get("message"):
        params.append({"name": "message", "valueString": result["message"]})
    if result.get("display"):
        params.append({"name": "display", "valueString": result["display"]})
    return FhirResponse(200, {"resourceType": "Parameters", "parameter": params})
