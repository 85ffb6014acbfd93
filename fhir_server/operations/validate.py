"""`$validate` (`[type]/$validate`, `[type]/[id]/$validate`): is this resource valid here?

The body is the resource, or a `Parameters` with `resource`, `profile` and `mode`
(create | update | delete). The answer is always 200 with an OperationOutcome, as the spec
asks: one issue per problem (severity, code, expression, diagnostics), or one `information`
issue saying all is well. Nothing is stored.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fhir_server import jsonio
from fhir_server.errors import Issue, bad_request, operation_outcome
from fhir_server.interactions.access import reach, sees
from fhir_server.interactions.read import gone, unknown
from fhir_server.interactions.request import FhirRequest, FhirResponse, check_id
from fhir_server.validation import pipeline

if TYPE_CHECKING:
    from fhir_server.server import FhirServer

MODES = ("create", "update", "delete", "profile")


def validate(server: FhirServer, req: FhirRequest) -> FhirResponse:
    resource, profile, mode = _arguments(req)
    if mode is not None and mode not in MODES:
        raise bad_request(f"mode {mode!r} is not one of {', '.join(MODES)}", code="value")
    if req.id is not None:
        check_id(req.id)
        stored = server.store.read(req.type, req.id, values=True)
        if stored is not None and not sees(server, reach(server, req, "r"), stored):
            stored = None  # out of the caller's reach: as absent as an unknown id
        if mode == "delete":
            if stored is None:
                raise unknown(req.type, req.id)
            return _answer([])  # deleting is always possible: no referential integrity is enforced
        if resource is None:
            if stored is None:
                raise unknown(req.type, req.id)
            if stored.deleted:
                raise gone(stored)
            resource = jsonio.loads(stored.json)
    if resource is None:
        raise bad_request("$validate needs a resource: in the body, or as the `resource` parameter of a "
                          "Parameters body", code="required")
    if not isinstance(resource, dict) or resource.get("resourceType") != req.type:
        raise bad_request(f"the resource to validate must be a {req.type}", code="invalid")
    issues = _mode_issues(req, resource, mode)
    issues += pipeline.validate(server, resource, [profile] if profile else [])
    return _answer(issues)


def _arguments(req: FhirRequest) -> tuple[dict[str, Any] | None, str | None, str | None]:
    body = req.body
    profile, mode = req.param("profile"), req.param("mode")
    if isinstance(body, dict) and body.get("resourceType") == "Parameters":
        resource = None
        for parameter in body.get("parameter") or ():
            name = parameter.get("name")
            if name == "resource":
                resource = parameter.get("resource")
            elif name == "profile":
                profile = parameter.get("valueUri") or parameter.get("valueCanonical") or parameter.get("valueString")
            elif name == "mode":
                mode = parameter.get("valueCode") or parameter.get("valueString")
        return resource, profile, mode
    return body, profile, mode


def _mode_issues(req: FhirRequest, resource: dict[str, Any], mode: str | None) -> list[Issue]:
    if mode == "update":
        if resource.get("id") is None:
            return [Issue("error", "required", "an update needs the resource's id", [f"{req.type}.id"])]
        if req.id is not None and resource.get("id") != req.id:
            return [Issue("error", "invariant", f"the id {resource.get('id')!r} is not {req.id!r}", [f"{req.type}.id"])]
    return []


def _answer(issues: list[Issue]) -> FhirResponse:
    if not any(i.severity in ("error", "fatal") for i in issues):
        warned = any(i.severity == "warning" for i in issues)
        issues = issues + [Issue("information", "informational",
                                 "the resource is valid" + (" (see the warnings)" if warned else ""))]
    return FhirResponse(200, operation_outcome(issues))

