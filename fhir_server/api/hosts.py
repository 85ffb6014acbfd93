"""The Host header values this server answers to when `FHIR_BASE_URL` is unset.

Without a configured public base URL, links (Location, paging, fullUrl) are built from the
request's Host; a forged Host would put another site's address in them, and a DNS-rebinding
page reaches a loopback server under its own name. So the Host must be a loopback name, the
address `serve` binds, or one of `FHIR_ALLOWED_HOSTS`; anything else is 400 before the request
goes further. Forwarded headers (X-Forwarded-Host…) are never read: behind a proxy, set
`FHIR_BASE_URL`. A plain ASGI middleware (no body copies), in front of every path.
"""

from __future__ import annotations

from fhir_server.api import http
from fhir_server.config import Settings
from fhir_server.errors import Issue, operation_outcome

LOOPBACK = frozenset({"localhost", "127.0.0.1", "[::1]"})
_EVERY_INTERFACE = frozenset({"", "0.0.0.0", "::", "[::]"})


class HostError(ValueError):
    """FHIR_ALLOWED_HOSTS cannot be used as written."""


def parse(value: str) -> frozenset[str]:
    """FHIR_ALLOWED_HOSTS as lower-case `name` or `name:port` entries; a wildcard is refused
    (it would accept any Host, the very thing this check is for)."""
    entries = frozenset(_normal(part) for part in value.split(",") if part.strip())
    if any("*" in entry or "/" in entry or "@" in entry for entry in entries):
        raise HostError(f"FHIR_ALLOWED_HOSTS={value!r}: list host names (name or name:port, comma-separated); "
                        "wildcards and URLs are not accepted — to accept any Host, set FHIR_BASE_URL instead")
    return entries


def with_bound(allowed: str, bound: str) -> str:
    """FHIR_ALLOWED_HOSTS plus the address `serve` binds, unless it binds every interface (then
    the names clients use are unknown: they must be listed, or FHIR_BASE_URL set)."""
    name = _normal(bound)
    if name in _EVERY_INTERFACE or name in parse(allowed):
        return allowed
    return ",".join(part for part in (allowed.strip(), name) if part)


def _normal(host: str) -> str:
    host = host.strip().lower().rstrip(".")
    if host.count(":") > 1 and not host.startswith("["):  # a bare IPv6 address
        host = f"[{host}]"
    return host


def _name(host: str) -> str:
    """`name` of `name:port` (IPv6 literals keep their brackets)."""
    if host.startswith("["):
        return host[:host.find("]") + 1]
    return host.partition(":")[0]


def is_allowed(host: str, allowed: frozenset[str]) -> bool:
    """Loopback names on any port; an entry without a port on any port; with a port, exactly."""
    host = _normal(host)
    name = _name(host)
    return name in LOOPBACK or name in allowed or host in allowed


class AllowedHosts:
    """400 OperationOutcome for a request whose Host is not accepted (see the module's text)."""

    def __init__(self, app, settings: Settings):
        self.app = app
        self.open = settings.base_url is not None  # the configured URL is used: Host plays no part
        self.allowed = parse(settings.allowed_hosts)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or self.open:
            return await self.app(scope, receive, send)
        host = next((value.decode("latin-1") for name, value in scope.get("headers", ()) if name == b"host"), None)
        if host is None or is_allowed(host, self.allowed):  # no Host (HTTP/1.0): the bound address is used
            return await self.app(scope, receive, send)
        text = (f"this server does not answer to the host name {host[:100]!r}: set FHIR_BASE_URL to the public "
                "base URL, or list the name in FHIR_ALLOWED_HOSTS")
        response = http.fhir_response(400, operation_outcome([Issue("error", "invalid", text)]), http.FHIR_JSON,
                                      False)
        await response(scope, receive, send)
