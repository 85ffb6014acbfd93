"""The SSRF guard: a Subscription's endpoint must be a public http(s) address, so a client cannot
make the server POST to itself, its database, the cloud's metadata service or the private
network behind it (unless FHIR_SUBSCRIPTION_ALLOW_PRIVATE).

The host is resolved and every address it resolves to is checked, at create and again before
each delivery (a name that resolved to a public address may later resolve to a private one).
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from fhir_server.config import Settings

# cloud metadata services that are not in a private or link-local range
_METADATA = frozenset({ipaddress.ip_address("fd00:ec2::254"), ipaddress.ip_address("100.100.100.200")})


class EndpointRefused(ValueError):
    """Why an endpoint may not be notified (the text names the address)."""


def allows_private(settings: Settings) -> bool:
    """FHIR_SUBSCRIPTION_ALLOW_PRIVATE, by default on only in open mode (which listens on loopback)."""
    if settings.subscription_allow_private is not None:
        return settings.subscription_allow_private
    return not settings.auth_issuer


def check(url: str, settings: Settings) -> None:
    """Raise EndpointRefused unless `url` is an http(s) URL whose host resolves only to
    addresses the server may call."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise EndpointRefused(f"{url!r} is not an http or https URL with a host")
    if parts.username or parts.password:
        raise EndpointRefused("the endpoint must not carry credentials in its URL: send them in channel.header")
    if allows_private(settings):
        return
    for address in _addresses(parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)):
        reason = _forbidden(address)
        if reason:
            raise EndpointRefused(f"{parts.hostname} resolves to {address}, {reason}; notifications go to public "
                                  f"addresses only (FHIR_SUBSCRIPTION_ALLOW_PRIVATE)")


def _addresses(host: str, port: int) -> set[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise EndpointRefused(f"the host {host!r} cannot be resolved ({exc})") from None
    return {ipaddress.ip_address(info[4][0].split("%", 1)[0]) for info in infos}


def _forbidden(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """What makes an address one the server must not call (None: a public address)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address in _METADATA:
        return "a cloud metadata service"
    for test, what in ((address.is_loopback, "a loopback address"), (address.is_link_local, "a link-local address "
                       "(cloud metadata services live there)"), (address.is_private, "a private address"),
                       (address.is_multicast, "a multicast address"), (address.is_unspecified, "no address"),
                       (address.is_reserved, "a reserved address")):
        if test:
            return what
    if isinstance(address, ipaddress.IPv4Address) and address in ipaddress.ip_network("100.64.0.0/10"):
        return "a shared (carrier-grade NAT) address"
    return None
