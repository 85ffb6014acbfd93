"""What every write does to the resource it stores: check it, then stamp id and meta."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from fhir_server import jsonio
from fhir_server.errors import FhirError, Issue, bad_request
from fhir_server.interactions.request import ID_RE, FhirRequest
from fhir_server.search.index import index_values
from fhir_server.storage.store import Version, Write, format_instant
from fhir_server.validation import pipeline

if TYPE_CHECKING:
    from fhir_server.server import FhirServer

# Elements the server owns in `meta`; the rest of the client's meta (profile, tag, security,
# source, extension) is kept as sent.
_SERVER_META = ("versionId", "lastUpdated", "_versionId", "_lastUpdated")


def require_body(req: FhirRequest) -> dict[str, Any]:
    """The request body as a resource of the URL's type, or a 400 saying what is wrong."""
    body = req.body
    if body is None:
        raise bad_request(f"a {req.type} resource is required in the body", code="required")
    if not isinstance(body, dict):
        raise bad_request(f"the body must be a JSON object (a {req.type} resource), not a JSON "
                          f"{type(body).__name__}", code="structure")
    kind = body.get("resourceType")
    if kind is None:
        raise bad_request(f"the body has no resourceType; add \"resourceType\": \"{req.type}\"", code="required",
                          expression="resourceType")
    if kind != req.type:
        raise bad_request(f"resourceType is {kind!r} but the URL is for {req.type}", code="invalid",
                          expression="resourceType")
    for i, inner in enumerate(body.get("contained") or ()):
        if isinstance(inner, dict) and isinstance(inner.get("id"), str) and not ID_RE.match(inner["id"]):
            raise bad_request(f"contained resource id {inner['id']!r} is not a valid FHIR id: 1 to 64 letters, "
                              f"digits, '-' or '.'", code="value", expression=f"{req.type}.contained[{i}].id")
    return body


# Issue codes of a resource that is not well-formed FHIR (400); others break a rule (422).
_STRUCTURAL = frozenset({"structure", "required", "value", "invalid", "not-supported", "too-costly"})


def validate(server: FhirServer, resource: dict[str, Any], status: int = 400) -> None:
    """Validation as `validation/pipeline.py` runs it, listing every problem found: 400 when the
    resource is not well-formed (422 for a patched resource), 422 when it breaks a rule of its
    definition or of a profile (binding, invariant, INS key…)."""
    issues = pipeline.blocking(pipeline.structural(server, resource))
    if issues:
        structural = all(i.code in _STRUCTURAL for i in issues)
        raise FhirError(status if structural else 422, issues)
    issues = pipeline.blocking(pipeline.rules(server, resource))
    if issues:
        raise FhirError(422, issues)
    if resource["resourceType"] == "SearchParameter":
        from fhir_server.search import custom

        custom.check(server, resource)


def stamp(resource: dict[str, Any], id_: str, version: int, last_updated: datetime) -> dict[str, Any]:
    """The resource to store and serve: server-set id, versionId and lastUpdated, in FHIR order."""
    meta = resource.get("meta")
    meta = {k: v for k, v in meta.items() if k not in _SERVER_META} if isinstance(meta, dict) else {}
    meta = {"versionId": str(version), "lastUpdated": format_instant(last_updated), **meta}
    out: dict[str, Any] = {"resourceType": resource["resourceType"], "id": id_, "meta": meta}
    for key, value in resource.items():
        if key not in out:
            out[key] = value
    return out


def new_version(server: FhirServer, resource: dict[str, Any], id_: str, version: int, expected: int | None,
                last_updated: datetime, method: str, base_url: str | None = None,
                previous: Version | None = None) -> Write:
    """The write storing `resource` as version `version` of its type/id, with its search values
    (references to this server, written with `base_url` or FHIR_BASE_URL, count as local),
    once the coordination rules accept it as the successor of `previous`."""
    if server.write_rules.applies(resource["resourceType"]):
        before = jsonio.loads(previous.json) if previous is not None and previous.json else None
        server.write_rules.check(before, resource)
    stored = stamp(resource, id_, version, last_updated)
    base_urls = tuple(u.rstrip("/") for u in (base_url, server.settings.base_url) if u)
    return Write(resource["resourceType"], id_, version, expected, last_updated, method,
                 jsonio.dumps(stored), index_values(server.search_parameters, stored, base_urls))


def outcome_issue(severity: str, code: str, text: str) -> dict[str, Any]:
    return {"resourceType": "OperationOutcome", "issue": [Issue(severity, code, text).to_json()]}
