"""Binary over plain HTTP (FHIR R4 binary.html and http.html#binary; IHE MHD ITI-68): a read of
a Binary answers its content as itself unless FHIR is asked for, and a POST or PUT of a body
that is not FHIR stores it as a Binary.

R4: "unless specifically requested, the FHIR XML or JSON representation is not returned". So a
read with no Accept (RFC 9110: any type), a wildcard, the Binary's own type, or a browser's Accept
gets the bytes with `Content-Type` = `Binary.contentType`; an Accept naming a FHIR format, or
`_format`, `_summary` or `_elements`, gets the resource. The HTTP layer only says which media
ranges the client accepts (`FhirRequest.accept`); what they mean for a Binary is decided here,
after the access check, so a Binary out of reach is a 404 whatever the Accept.

The stored resource is JSON with base64 `data`: the content is decoded chunk by chunk while it is
sent, never held decoded whole next to the stored copy (a 10 MB Binary costs its stored JSON and
its `data` text, as a FHIR read does, and a chunk).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from urllib.parse import quote

from fhir_server import jsonio
from fhir_server.errors import FhirError, Issue, bad_request
from fhir_server.interactions.request import FhirRequest, FhirResponse, RawContent, etag
from fhir_server.storage.store import Version

OCTET_STREAM = "application/octet-stream"
CHUNK = 256 * 1024  # base64 characters decoded at a time (a multiple of 4): 192 KiB of content
# A media type as a header may carry it (RFC 9110 §8.3.1, ASCII): what else a stored
# contentType holds is answered as application/octet-stream, never put in a header as is.
_MEDIA_TYPE = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+/[!#$%&'*+.^_`|~0-9A-Za-z-]+"
                         r"(\s*;\s*[!#$%&'*+.^_`|~0-9A-Za-z-]+=(\"[ !#-\[\]-~]*\"|[!#$%&'*+.^_`|~0-9A-Za-z-]+))*",
                         re.ASCII)
_CANONICAL = re.compile(r"[A-Za-z0-9+/]*={0,2}", re.ASCII)  # no white space, padding at the end only
_SPACE = re.compile(r"\s")
_FHIR_VIEWS = ("_summary", "_elements")
# Served content is a download, never a page of this origin: a stored text/html or SVG must not
# run script here (HAPI FHIR sends `Content-Disposition: attachment` for the same reason).
_DOWNLOAD = {"Content-Disposition": "attachment", "Content-Security-Policy": "sandbox; default-src 'none'"}


def answers_raw(type_: str | None, shape: str, method: str) -> bool:
    """Whether this request may be answered with a Binary's content (read and vread)."""
    return type_ == "Binary" and shape in ("instance", "version") and method in ("GET", "HEAD")


def takes_raw(type_: str | None, shape: str, method: str) -> bool:
    """Whether a body that is not FHIR may be stored as a Binary here (create, update by id)."""
    return type_ == "Binary" and (shape, method) in (("type", "POST"), ("instance", "PUT"))


# -- writes ----------------------------------------------------------------------------------------

def upload(content_type: str, data: bytes, security_context: str | None, id_: str | None) -> dict:
    """The Binary a raw POST or PUT stores: `contentType` from the Content-Type header,
    `securityContext` from X-Security-Context, the body as `data` (none for an empty body)."""
    media_type = content_type.strip()
    if not _MEDIA_TYPE.fullmatch(media_type):
        raise bad_request(f"the Content-Type header {media_type[:100]!r} is not a media type (type/subtype, "
                          f"then ;name=value parameters)", code="value")
    resource: dict = {"resourceType": "Binary"}
    if id_ is not None:
        resource["id"] = id_
    resource["contentType"] = media_type
    if security_context is not None:
        reference = security_context.strip()
        if not reference:
            raise bad_request("the X-Security-Context header is empty; send the reference of the resource "
                              "whose access rules the Binary follows (e.g. DocumentReference/123)", code="value")
        resource["securityContext"] = {"reference": reference}
    if data:
        resource["data"] = base64.b64encode(data).decode("ascii")
    return resource


# -- reads -----------------------------------------------------------------------------------------

def wants_raw(req: FhirRequest) -> bool:
    """Whether a read of a Binary answers its content: FHIR was not asked for."""
    return req.accept is not None and req.type == "Binary" and not any(req.param(p) for p in _FHIR_VIEWS)


def raw_response(req: FhirRequest, stored: Version) -> FhirResponse:
    """The content of a stored Binary version, with the headers of a read; 406 when the Accept
    names neither its type nor FHIR."""
    resource = jsonio.loads(stored.json or b"{}")
    content_type = resource.get("contentType") or OCTET_STREAM
    if not acceptable(content_type, req.accept or ()):
        raise FhirError(406, Issue("error", "not-supported", f"Binary/{stored.id} holds {content_type[:100]}, which "
                                   f"the Accept header ({', '.join(req.accept or ()) or 'nothing'}) does not "
                                   f"accept; ask for {content_type[:100]}, */* or application/fhir+json"))
    headers = dict(_DOWNLOAD)
    context = (resource.get("securityContext") or {}).get("reference")
    if isinstance(context, str) and context:
        headers["X-Security-Context"] = quote(context, safe="/:?#[]@!$&'()*+,;=%-._~")
    data = _canonical(stored, resource.get("data") or "")
    return FhirResponse(200, etag=etag(stored.version), last_modified=stored.last_updated, headers=headers,
                        touched=[stored.json] if stored.json else [],
                        raw=RawContent(_header_type(content_type), decoded_length(data), _decoded(data)))


def acceptable(content_type: str, ranges: tuple[str, ...]) -> bool:
    """Whether one of the Accept's media ranges (`*/*`, `type/*`, `type/subtype`) covers it."""
    kind = content_type.split(";")[0].strip().lower()
    main = kind.split("/")[0]
    return any(r == "*/*" or r == kind or r == f"{main}/*" for r in ranges)


def _header_type(content_type: str) -> str:
    return content_type if _MEDIA_TYPE.fullmatch(content_type) else OCTET_STREAM


def _canonical(stored: Version, data: str) -> str:
    """`data` as unbroken base64, padded at its end only, so that it decodes in independent
    chunks to a length known beforehand. R4's base64Binary lets white space (and `=`) stand
    anywhere; such data is normalised once (a copy), and data no decoder reads is 422."""
    if _is_canonical(data):
        return data
    joined = "".join(data.split()) if _SPACE.search(data) else data
    if _is_canonical(joined):
        return joined
    try:
        return base64.b64encode(base64.b64decode(joined)).decode("ascii")
    except ValueError:
        raise FhirError(422, Issue("error", "invalid", f"Binary/{stored.id} version {stored.version} holds data "
                                   f"that is not decodable base64; read it as application/fhir+json",
                                   ["Binary.data"])) from None


def _is_canonical(data: str) -> bool:
    return len(data) % 4 == 0 and _CANONICAL.fullmatch(data) is not None


def decoded_length(data: str) -> int:
    """The number of bytes canonical base64 `data` decodes to."""
    return len(data) // 4 * 3 - (2 if data.endswith("==") else 1 if data.endswith("=") else 0)


def _decoded(data: str) -> Iterator[bytes]:
    for start in range(0, len(data), CHUNK):
        yield base64.b64decode(data[start:start + CHUNK])
