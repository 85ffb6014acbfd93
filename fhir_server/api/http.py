"""HTTP details with no FHIR logic: formats, Prefer, conditional headers, body limits, responses."""

from __future__ import annotations

from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import Response

from fhir_server import jsonio
from fhir_server.errors import FhirError, Issue

FHIR_JSON = "application/fhir+json"
_JSON_TYPES = {"application/fhir+json", "application/json", "application/json+fhir", "json", "text/json"}
_PATCH_TYPES = {"application/json-patch+json"}
_XML_TYPES = {"application/fhir+xml", "application/xml", "application/xml+fhir", "xml", "text/xml"}
_ANY = {"*/*", "application/*", "text/*"}


def negotiate(request: Request) -> str:
    """The response media type, or 406 when only formats we do not produce are acceptable."""
    fmt = request.query_params.get("_format")
    if fmt is not None:
        kind = fmt.split(";")[0].strip().lower()
        if kind in _JSON_TYPES:
            return "application/json" if kind == "application/json" else FHIR_JSON
        raise FhirError(406, Issue("error", "not-supported",
                                   f"_format={fmt} is not available: this server speaks FHIR JSON only "
                                   f"(_format=json)"))
    accept = request.headers.get("accept")
    if not accept:
        return FHIR_JSON
    kinds = [part.split(";")[0].strip().lower() for part in accept.split(",")]
    for kind in kinds:
        if kind in _JSON_TYPES:
            return "application/json" if kind == "application/json" else FHIR_JSON
        if kind in _ANY:
            return FHIR_JSON
    if any(k in _XML_TYPES for k in kinds):
        raise FhirError(406, Issue("error", "not-supported",
                                   "XML is not supported yet; ask for application/fhir+json"))
    raise FhirError(406, Issue("error", "not-supported",
                               f"none of the formats in Accept: {accept} is available; ask for "
                               f"application/fhir+json"))


async def read_body(request: Request, limit: int, form: bool = False) -> Any:
    """The parsed JSON body (None if empty), or with `form` the pairs of a form-encoded body;
    413 past the limit, 415 for other media types."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    data = b"".join(chunks)
    if not data.strip():
        return None
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if form:
        if content_type != "application/x-www-form-urlencoded":
            raise FhirError(415, Issue("error", "not-supported", "POST _search takes a form body "
                                       "(application/x-www-form-urlencoded)"))
        try:
            return parse_qsl(data.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
        except UnicodeDecodeError:
            raise FhirError(400, Issue("error", "structure", "the form body is not UTF-8")) from None
    if content_type and content_type not in _JSON_TYPES and content_type not in _PATCH_TYPES:
        if content_type in _XML_TYPES:
            raise FhirError(415, Issue("error", "not-supported",
                                       "XML bodies are not supported yet; send application/fhir+json"))
        raise FhirError(415, Issue("error", "not-supported",
                                   f"Content-Type {content_type} is not supported; send application/fhir+json"))
    try:
        return jsonio.loads(data)
    except jsonio.JSONError as exc:
        raise FhirError(400, Issue("error", "structure", f"the body is not valid JSON: {exc}")) from None


def _too_large(limit: int) -> FhirError:
    return FhirError(413, Issue("error", "too-costly",
                                f"the body is larger than this server accepts ({limit} bytes, FHIR_MAX_BODY_BYTES)"))


def prefer(request: Request) -> dict[str, str]:
    out = {}
    for header in request.headers.getlist("prefer"):
        for token in header.replace(",", ";").split(";"):
            key, _, value = token.strip().partition("=")
            if key:
                out[key.strip().lower()] = value.strip().strip('"')
    return out


def http_date(value: str | None) -> datetime | None:
    """RFC 9110: an If-Modified-Since that cannot be read is ignored."""
    if not value:
        return None
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def is_pretty(request: Request) -> bool:
    return request.query_params.get("_pretty", "false").lower() == "true"


def fhir_response(status: int, body: bytes | dict | None, media_type: str, pretty: bool,
                  headers: dict[str, str] | None = None, head: bool = False) -> Response:
    if body is None or status == 304:
        content = b""
    else:
        content = body if isinstance(body, (bytes, bytearray)) else jsonio.dumps(body)
        if pretty:
            content = jsonio.pretty(content)
    response = Response(b"" if head else content, status_code=status, headers=headers or {},
                        media_type=None if not content else f"{media_type}; charset=utf-8")
    if head and content:
        response.headers["content-length"] = str(len(content))
    return response


def last_modified_header(value: datetime) -> str:
    return format_datetime(value.astimezone(UTC), usegmt=True)
