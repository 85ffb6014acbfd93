"""`CodeSystem/$lookup` (type level) and `CodeSystem/$subsumes` (type and instance level).

`$lookup` takes `system` + `code` (or `coding`), `version`, `property` (repeatable) and answers
a `Parameters`: `name`, `version`, `display`, `abstract` when true, `designation` (language,
use, value) and `property` (code, value) parts. `$subsumes` takes `codeA`/`codeB` (or
`codingA`/`codingB`) and `system` and answers `outcome`. 404 for an unknown code system or
code, 400 for missing or contradictory inputs, 422 when the system's codes are not held here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fhir_server.errors import bad_request, not_found
from fhir_server.interactions.request import FhirRequest, FhirResponse
from fhir_server.operations.expand import stored_resource, terminology_error
from fhir_server.operations.terminology_params import read_inputs
from fhir_server.terminology import TerminologyError

if TYPE_CHECKING:
    from fhir_server.server import FhirServer

LOOKUP_DEFINITION = "http://hl7.org/fhir/OperationDefinition/CodeSystem-lookup"
SUBSUMES_DEFINITION = "http://hl7.org/fhir/OperationDefinition/CodeSystem-subsumes"


def lookup(server: FhirServer, req: FhirRequest) -> FhirResponse:
    inputs = read_inputs(server, req, LOOKUP_DEFINITION, ("date",))
    code, system, version = inputs.get("code"), inputs.get("system"), inputs.get("version")
    coding = inputs.get("coding")
    if coding is not None:
        if code is not None or (system and coding.get("system") and system != coding.get("system")):
            raise bad_request("$lookup: give either code and system, or coding", code="invalid")
        code, system = coding.get("code"), coding.get("system") or system
        version = version or coding.get("version")
    if not code or not system:
        raise bad_request("$lookup needs a code and its system (code + system, or coding)", code="required")
    if server.terminology.codesystem(system) is None:
        raise not_found(f"no CodeSystem {system} is known here (loaded packages and stored CodeSystems)")
    try:
        found = server.terminology.lookup(system, code, version, inputs.all("property") or None)
    except TerminologyError as exc:
        if exc.code == "not-found":
            raise not_found(str(exc)) from exc
        raise terminology_error(exc, "cannot look up here") from exc
    if found is None:
        raise not_found(f"{code!r} is not a code of {system}")
    params: list[dict[str, Any]] = [{"name": "name", "valueString": found["name"]}]
    if found.get("version"):
        params.append({"name": "version", "valueString": found["version"]})
    params.append({"name": "display", "valueString": found["display"]})
    if found.get("abstract"):
        params.append({"name": "abstract", "valueBoolean": True})
    for designation in found.get("designation") or ():
        parts = []
        if designation.get("language"):
            parts.append({"name": "language", "valueCode": designation["language"]})
        if designation.get("use"):
            parts.append({"name": "use", "valueCoding": designation["use"]})
        parts.append({"name": "value", "valueString": designation.get("value", "")})
        params.append({"name": "designation", "part": parts})
    for prop in found.get("property") or ():
        parts = [{"name": "code", "valueCode": prop["code"]}]
        parts += [{"name": "value", key: value} for key, value in prop.items() if key.startswith("value")]
        params.append({"name": "property", "part": parts})
    return FhirResponse(200, {"resourceType": "Parameters", "parameter": params})


def subsumes(server: FhirServer, req: FhirRequest) -> FhirResponse:
    inputs = read_inputs(server, req, SUBSUMES_DEFINITION, ())
    system, version = inputs.get("system"), inputs.get("version")
    if req.id is not None:
        stored = stored_resource(server, req)
        if system and system != stored.get("url"):
            raise bad_request(f"$subsumes on CodeSystem/{req.id}: system {system} is not its url", code="invalid")
        system = stored.get("url")
    codes = []
    for which in ("A", "B"):
        code, coding = inputs.get(f"code{which}"), inputs.get(f"coding{which}")
        if (code is None) == (coding is None):
            raise bad_request(f"$subsumes needs one of code{which} or coding{which}", code="required")
        if coding is not None:
            if coding.get("system") and system and coding["system"] != system:
                raise bad_request(f"$subsumes: coding{which} is in {coding['system']}, not {system}", code="invalid")
            system = system or coding.get("system")
            code = coding.get("code")
        codes.append(code)
    if not system:
        raise bad_request("$subsumes needs the code system (system, or codings with their system)", code="required")
    if server.terminology.codesystem(system) is None:
        raise not_found(f"no CodeSystem {system} is known here (loaded packages and stored CodeSystems)")
    try:
        outcome = server.terminology.subsumes(system, codes[0], codes[1], version)
    except TerminologyError as exc:
        raise not_found(str(exc)) from exc
    if outcome is None:
        raise terminology_error(TerminologyError(f"the codes of {system} are not held here"), "cannot tell")
    return FhirResponse(200, {"resourceType": "Parameters", "parameter": [{"name": "outcome", "valueCode": outcome}]})
