"""HTTP details with no FHIR logic: formats, Prefer, conditional headers, body limits, responses."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from fhir_server import jsonio
from fhir_server.errors import FhirError, Issue

FHIR_JSON = "application/fhir+json"
_JSON_TYPES = {"application/fhir+json", "application/json", "application/json+fhir", "json", "text/json"}
_PATCH_TYPES = {"application/json-patch+json"}
_XML_TYPES = {"application/fhir+xml", "application/xml", "application/xml+fhir", "xml", "text/xml"}
_FHIR_XML = {"application/fhir+xml", "application/xml+fhir"}  # XML that can only mean FHIR
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


def raw_ranges(request: Request) -> tuple[str, ...] | None:
    """The media ranges (q > 0) of an Accept that asks for no FHIR format, for an answer that
    may be other content (a Binary's); None when `_format` or a FHIR type is named (a FHIR
    answer, negotiated as any other). No Accept means any type (RFC 9110 §12.5.1): `*/*`.
    Plain XML is not FHIR here: a browser names it, and a CDA document is application/xml."""
    if request.query_params.get("_format") is not None:
        return None
    accept = request.headers.get("accept", "").strip()
    if not accept:
        return ("*/*",)
    ranges = []
    for part in accept.split(","):
        kind, *params = (p.strip() for p in part.split(";"))
        kind = kind.lower()
        if not kind or _quality(params) <= 0:
            continue
        if kind in _JSON_TYPES or kind in _FHIR_XML:
            return None
        ranges.append(kind)
    return tuple(ranges)


def _quality(params: list[str]) -> float:
    """The `q` of a media range (1 when absent or unreadable)."""
    for param in params:
        name, _, value = param.partition("=")
        if name.strip().lower() == "q":
            try:
                return float(value.strip())
            except ValueError:
                return 1.0
    return 1.0


_FORM = "application/x-www-form-urlencoded"
_ACCEPTED = "application/fhir+json (or application/json; application/json-patch+json for a JSON Patch)"


async def read_body(request: Request, limit: int, form: bool = False, setting: str = "FHIR_MAX_BODY_BYTES") -> Any:
    """The parsed JSON body (None if empty), or with `form` the pairs of a form-encoded body;
    413 past `limit` (the `setting` that sets it), 415 for other media types.

    A non-empty body must say what it is: a browser page may send text/plain, a form or
    multipart to any site without asking first, so accepting those (or no type at all) would
    let any web page the user opens write here. The size is checked on Content-Length, then on
    every chunk: a body over the limit is never held whole."""
    content_type = _content_type(request)
    if content_type in _CROSS_SITE_TYPES and not (form and content_type == _FORM):
        raise _unsupported(content_type, form)  # even empty: a web page's form, never a client's request
    data = await read_bytes(request, limit, setting)
    if not data.strip():
        return None
    if form:
        if content_type != _FORM:
            raise _unsupported(content_type, form)
        try:
            return parse_qsl(data.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
        except UnicodeDecodeError:
            raise FhirError(400, Issue("error", "structure", "the form body is not UTF-8")) from None
    if content_type not in _JSON_TYPES and content_type not in _PATCH_TYPES:
        raise _unsupported(content_type, form)
    try:
        return jsonio.loads(data)
    except jsonio.JSONError as exc:
        raise FhirError(400, Issue("error", "structure", f"the body is not valid JSON: {exc}")) from None


def _content_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


async def read_bytes(request: Request, limit: int, setting: str = "FHIR_MAX_BODY_BYTES") -> bytes:
    """The body as sent; 413 past `limit`, on Content-Length, then on every chunk: a body over
    the limit is never held whole."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit, setting)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit, setting)
        chunks.append(chunk)
    return b"".join(chunks)


def is_content(request: Request) -> bool:
    """Whether the body declares a type that is neither FHIR, JSON nor a form: content to store
    as it is (a Binary's). text/plain is content too: what keeps a web page from sending it
    here is the cross-site check (api/origins.py) and, with an issuer, the bearer token a
    page cannot add without a CORS preflight. Forms and multipart stay refused (415)."""
    content_type = _content_type(request)
    return bool(content_type) and content_type not in _JSON_TYPES and content_type not in _FHIR_XML \
        and content_type not in (_FORM, "multipart/form-data")


# What a web page may send anywhere without a CORS preflight (the "CORS-safelisted" types).
_CROSS_SITE_TYPES = {"text/plain", "multipart/form-data", _FORM}


def _unsupported(content_type: str, form: bool) -> FhirError:
    """415 naming the types this body may have."""
    accepted = f"{_FORM} (the search parameters)" if form else _ACCEPTED
    if not content_type:
        text = f"the body has no Content-Type: send it as {accepted}"
    elif content_type in _XML_TYPES and not form:
        text = "XML bodies are not supported yet; send application/fhir+json"
    else:
        text = f"Content-Type {content_type} is not accepted here; send the body as {accepted}"
    return FhirError(415, Issue("error", "not-supported", text))


def _too_large(limit: int, setting: str) -> FhirError:
    return FhirError(413, Issue("error", "too-costly",
                                f"the body is larger than this server accepts ({limit} bytes, {setting})"))


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


def raw_response(status: int, media_type: str, length: int, chunks: Iterator[bytes], headers: dict[str, str],
                 head: bool = False) -> Response:
    """Content that is not FHIR, streamed as it is produced, with its exact type (no charset
    added) and length."""
    headers = {**headers, "Content-Type": media_type, "Content-Length": str(length)}
    if head or length == 0:
        return Response(b"", status_code=status, headers=headers)
    return StreamingResponse(chunks, status_code=status, headers=headers)


def last_modified_header(value: datetime) -> str:
    return format_datetime(value.astimezone(UTC), usegmt=True)
