"""Which web pages may call this server from a browser: none, unless `FHIR_CORS_ORIGINS` names them.

CORS is opened only to the origins listed (exact `scheme://host[:port]`, never `*`): their
pages may send the FHIR headers and read the answers. Independently, a browser names the page
behind every request that can change data (`Origin`); such a request from a page that is
neither this server's own nor listed is refused with 403, so no web page the user happens to
open can write here — not even with the requests a browser sends without asking first (an
empty POST, a form). Clients that are not browsers send no `Origin` and are not concerned.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.middleware.cors import CORSMiddleware

from fhir_server.api import http
from fhir_server.config import Settings
from fhir_server.errors import Issue, operation_outcome

ALLOWED_HEADERS = ["Authorization", "Content-Type", "Accept", "If-Match", "If-None-Exist", "If-None-Match",
                   "If-Modified-Since", "Prefer", "X-Provenance", "X-Request-Id", "X-Security-Context"]
EXPOSED_HEADERS = ["Location", "ETag", "Content-Location", "Last-Modified", "X-Request-Id", "Retry-After",
                   "WWW-Authenticate", "X-Security-Context", "Content-Disposition"]
METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class OriginError(ValueError):
    """FHIR_CORS_ORIGINS cannot be used as written."""


def parse(value: str) -> list[str]:
    """FHIR_CORS_ORIGINS as exact origins; wildcards, paths and `null` are refused."""
    origins = []
    for part in (p.strip().rstrip("/") for p in value.split(",")):
        if not part:
            continue
        url = urlsplit(part)
        if "*" in part or url.scheme not in ("http", "https") or not url.netloc or url.path or url.query:
            raise OriginError(f"FHIR_CORS_ORIGINS: {part!r} is not an origin; list exact origins such as "
                              "https://app.example.org (scheme, host and port only; no wildcard)")
        origins.append(f"{url.scheme}://{url.netloc}".lower())
    return origins


def install(app, settings: Settings) -> None:
    """The cross-site check, and in front of it CORS when origins are configured."""
    origins = parse(settings.cors_origins)
    app.add_middleware(CrossSiteWrites, allowed=frozenset(origins), base_url=settings.base_url)
    if origins:
        app.add_middleware(CORSMiddleware, allow_origins=origins, allow_methods=METHODS,
                           allow_headers=ALLOWED_HEADERS, expose_headers=EXPOSED_HEADERS, max_age=600)


def _own_origin(scope) -> str | None:
    host = next((v.decode("latin-1") for k, v in scope.get("headers", ()) if k == b"host"), None)
    return f"{scope.get('scheme', 'http')}://{host}".lower() if host else None


class CrossSiteWrites:
    """403 for a request that may change data, sent by a web page of another, unlisted origin."""

    def __init__(self, app, allowed: frozenset[str], base_url: str | None):
        self.app = app
        self.allowed = set(allowed)
        if base_url:
            url = urlsplit(base_url)
            self.allowed.add(f"{url.scheme}://{url.netloc}".lower())

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope.get("method") in _SAFE_METHODS:
            return await self.app(scope, receive, send)
        origin = next((v.decode("latin-1") for k, v in scope.get("headers", ()) if k == b"origin"), None)
        if origin is None or origin.lower() in self.allowed or origin.lower() == _own_origin(scope):
            return await self.app(scope, receive, send)
        text = (f"a {scope.get('method')} from the web page of {origin[:100]!r} is refused: this server takes "
                "changes only from its own pages and from the origins listed in FHIR_CORS_ORIGINS")
        response = http.fhir_response(403, operation_outcome([Issue("error", "forbidden", text)]), http.FHIR_JSON,
                                      False)
        await response(scope, receive, send)
