"""A request URL relative to the FHIR base, split into its shape and parts.

The one parser of FHIR URLs: HTTP request paths and the `request.url` of batch and transaction
entries both go through it, so both name interactions the same way. Shapes: metadata, system,
smart-configuration, system-search, system-history, system-operation, type, type-search, type-history,
type-operation, instance, instance-history, instance-operation, version, compartment.
A trailing slash changes nothing (`[base]/`, `[base]/Patient/`).

`whole_number` reads the numbers of URLs (version ids, `_count`) without handing a client's text
to `int()`: `²` is a digit to `str.isdigit` but not to `int`, and `int` refuses 4,300 digits.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlsplit

from fhir_server.errors import FhirError, Issue, bad_request


@dataclass
class Target:
    shape: str
    type: str | None = None
    id: str | None = None
    version: str | None = None
    compartment: str | None = None
    operation: str | None = None
    params: list[tuple[str, str]] = field(default_factory=list)


VERSION_DIGITS = 18  # a version id fits a 64-bit integer, as the database stores it


def whole_number(text: str | None, maximum: int | None = None) -> int | None:
    """`text` as an integer when it is ASCII digits, else None. With `maximum`, any number of
    digits is read and capped; without, more than VERSION_DIGITS significant digits is None."""
    if not text or not text.isascii() or not text.isdigit():
        return None
    digits = text.lstrip("0") or "0"
    if maximum is not None:
        return maximum if len(digits) > len(str(maximum)) else min(int(digits), maximum)
    return int(digits) if len(digits) <= VERSION_DIGITS else None


def parse(url: str, base_url: str) -> Target:
    """A bundle entry's `request.url`: relative, or absolute on this server's base."""
    if url.startswith(base_url.rstrip("/") + "/"):
        url = url[len(base_url.rstrip("/")) + 1:]
    elif "://" in url.split("?", 1)[0]:
        raise bad_request(f"request.url {url!r} is not on this server ({base_url}); use a relative URL")
    parts = urlsplit(url)
    return parse_path(parts.path, parse_qsl(parts.query, keep_blank_values=True))


def parse_path(path: str, params: list[tuple[str, str]]) -> Target:
    """A path relative to the base (`Patient/1/_history`), with the query's parameters."""
    segments = [s for s in path.strip("/").split("/") if s]
    n = len(segments)
    if segments == ["metadata"]:
        return Target("metadata", params=params)
    if segments == [".well-known", "smart-configuration"]:
        return Target("smart-configuration", params=params)
    if n == 0:
        return Target("system", params=params)
    if segments[0].startswith("$"):
        return Target("system-operation", operation=segments[0][1:], params=params)
    if segments[0] == "_history" and n == 1:
        return Target("system-history", params=params)
    if segments[0] == "_search" and n == 1:
        return Target("system-search", params=params)
    type_ = segments[0]
    if n == 1:
        return Target("type", type_, params=params)
    if n == 2:
        if segments[1] == "_history":
            return Target("type-history", type_, params=params)
        if segments[1] == "_search":
            return Target("type-search", type_, params=params)
        if segments[1].startswith("$"):
            return Target("type-operation", type_, operation=segments[1][1:], params=params)
        return Target("instance", type_, segments[1], params=params)
    if n == 3:
        if segments[2] == "_history":
            return Target("instance-history", type_, segments[1], params=params)
        if segments[2].startswith("$"):
            return Target("instance-operation", type_, segments[1], operation=segments[2][1:], params=params)
        return Target("compartment", type_, segments[1], compartment=segments[2], params=params)
    if n == 4 and segments[2] == "_history":
        return Target("version", type_, segments[1], segments[3], params=params)
    raise FhirError(404, Issue("error", "not-found", f"{path!r} does not name a FHIR interaction: the URL forms are "
                               f"[type], [type]/[id], [type]/[id]/_history/[vid], [type]/[id]/[type] and their "
                               f"_search, _history and $operation forms"))
