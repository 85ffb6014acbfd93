"""One log line per request (method, path, status, duration, request id), and `X-Request-Id`.

The id comes from the client's `X-Request-Id` when it is a sensible token (so a proxy's or an
EHR's id follows the request through), otherwise it is generated; it is returned on the
response and handed to the FHIR layer (audit records name it). A plain ASGI middleware: the
Starlette `BaseHTTPMiddleware` would copy every response body.
"""

from __future__ import annotations

import logging
import re
import time
import uuid

log = logging.getLogger("fhir_server.requests")
_ACCEPTED_ID = re.compile(r"^[A-Za-z0-9._:@/+=-]{1,128}$")


class RequestLog:
    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        request_id = _request_id(scope)
        scope.setdefault("state", {})["request_id"] = request_id
        started = time.perf_counter()
        status = 500

        async def send_with_id(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            # the path only: query strings carry patient identifiers, which belong in the audit trail
            log.info("%s %s %d %.1fms id=%s", scope.get("method"), scope.get("path", ""), status,
                     (time.perf_counter() - started) * 1000, request_id)


def _request_id(scope) -> str:
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id":
            text = value.decode("latin-1").strip()
            if _ACCEPTED_ID.match(text):
                return text
    return uuid.uuid4().hex
