"""The HTTP-free shape of a FHIR interaction: what comes in and what goes out.

The HTTP layer fills a `FhirRequest` from headers and URL, the interactions answer a
`FhirResponse`; a batch or transaction entry (with its own `ifMatch`, `ifNoneExist`…) maps to
the same two objects, so every interaction has one implementation whatever carries it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from fhir_server.errors import FhirError, Issue, bad_request
from fhir_server.security.identity import Identity
from fhir_server.storage.store import Version, format_instant

ID_RE = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
_ETAG_RE = re.compile(r'^\s*(?:W/)?"?([^"\s]+)"?\s*$')


@dataclass
class FhirRequest:
    method: str
    base_url: str  # e.g. http://host:8080/fhir
    type: str | None = None
    id: str | None = None
    version: str | None = None
    compartment: str | None = None  # Patient/123/CarePlan → "CarePlan" ("*": every type)
    params: list[tuple[str, str]] = field(default_factory=list)
    body: Any = None
    if_match: str | None = None
    if_none_match: str | None = None
    if_modified_since: datetime | None = None
    if_none_exist: str | None = None
    prefer_return: str | None = None  # minimal | representation | OperationOutcome
    prefer_handling: str | None = None  # strict | lenient
    request_id: str | None = None  # the X-Request-Id of the HTTP request that carried it
    identity: Identity | None = None  # who asks (None: not through the router, e.g. a direct call)
    shape: str = ""  # the URL's shape (interactions.urls): instance, type-search, …
    operation: str | None = None  # `$name` without the $, for the *-operation shapes
    url: str = ""  # the URL relative to the base, with its query, as received (the audit trail's)
    entry: int | None = None  # the index of the batch or transaction entry this request is
    provenance: str | None = None  # the X-Provenance header: a Provenance (JSON) for the write
    # a Binary read's acceptable media ranges when the client did not ask for FHIR (`*/*` for no
    # Accept): its content may be the answer (interactions/binary.py); None: a FHIR answer
    accept: tuple[str, ...] | None = None
    # what the request may see, per scope letters (interactions/access.py `reach`), built once
    reaches: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def param(self, name: str) -> str | None:
        for key, value in self.params:
            if key == name:
                return value
        return None


@dataclass(frozen=True)
class RawContent:
    """A body that is not FHIR (a Binary's content): its type, its size, and its bytes, produced
    while the answer is sent."""

    media_type: str
    length: int
    chunks: Iterator[bytes] = field(repr=False)


@dataclass
class FhirResponse:
    status: int
    body: bytes | dict[str, Any] | None = None  # stored JSON bytes, or a resource to serialise
    etag: str | None = None
    last_modified: datetime | None = None
    location: str | None = None
    content_location: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    # what the interaction read or wrote besides the body (a deleted version, a written one
    # answered with Prefer: return=minimal): the audit trail finds the patients concerned in it
    touched: list[bytes] = field(default_factory=list)
    raw: RawContent | None = None  # answered instead of a FHIR body (then `body` is None)


def check_id(value: str, what: str = "id") -> str:
    if not ID_RE.match(value):
        raise bad_request(f"{what} {value!r} is not a valid FHIR id: 1 to 64 letters, digits, '-' or '.'",
                          code="value")
    return value


def parse_etag(value: str) -> str:
    """`W/"3"`, `"3"` or `3` → "3"."""
    match = _ETAG_RE.match(value)
    if not match:
        raise bad_request(f"cannot read the version in If-Match {value!r}; send W/\"<versionId>\"",
                          code="value")
    return match.group(1)


def check_if_match(key: str, current: Version | None, expected: str | None) -> None:
    """If-Match, the one check: 412 unless `key` exists at the `expected` version ("*": any)."""
    if expected is None:
        return
    if current is None:
        raise FhirError(412, Issue("error", "not-found", f"If-Match {etag(expected)} given but {key} does not exist"))
    if expected != "*" and str(current.version) != expected:
        raise FhirError(412, Issue("error", "conflict", f"{key} is at version {current.version}, not {expected}: "
                                   f"read it again and apply your change to the current version"))


def etag(version: int | str) -> str:
    return f'W/"{version}"'


def versioned_response(req: FhirRequest, stored: Version, status: int, *, body: bool = True,
                       location: bool = False) -> FhirResponse:
    """Headers every response about one stored version carries, with `Prefer: return` applied."""
    url = f"{req.base_url}/{stored.type}/{stored.id}/_history/{stored.version}"
    response = FhirResponse(status, etag=etag(stored.version), last_modified=stored.last_updated,
                            location=url if location else None,
                            content_location=url if location else None,
                            touched=[stored.json] if stored.json else [])
    if body:
        if req.prefer_return == "minimal":
            response.body = None
        elif req.prefer_return == "OperationOutcome":
            response.body = {"resourceType": "OperationOutcome", "issue": [Issue(
                "information", "informational",
                f"{stored.type}/{stored.id} is at version {stored.version} "
                f"({format_instant(stored.last_updated)})").to_json()]}
        else:
            response.body = stored.json
    return response
