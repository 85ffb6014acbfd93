"""Headers every response carries: patient data is not kept by caches, nor sniffed into HTML.

`Cache-Control: no-store` keeps answers out of browser and proxy caches (a shared machine's
cache holds no record after logout); `X-Content-Type-Options: nosniff` stops a browser from
reading a JSON answer holding user text as a page or a script. Set on errors too, and on
what the middlewares in front of the router answer. A plain ASGI middleware: the Starlette
`BaseHTTPMiddleware` would copy every response body. (The `server` banner is uvicorn's, turned
off where `serve` starts it.)
"""

from __future__ import annotations

SECURITY_HEADERS = ((b"cache-control", b"no-store"), (b"x-content-type-options", b"nosniff"))
_NAMES = {name for name, _ in SECURITY_HEADERS}


class SecurityHeaders:
    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                kept = [(k, v) for k, v in message.get("headers", ()) if k.lower() not in _NAMES]
                message["headers"] = [*kept, *SECURITY_HEADERS]
            await send(message)

        await self.app(scope, receive, send_with_headers)
