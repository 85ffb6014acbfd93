"""The FastAPI application: HTTP in, one `FhirRequest` to the router, HTTP out.

Every path under `/fhir` is parsed by the same parser as bundle entry URLs (interactions.urls) and
dispatched by the one router (`FhirServer.dispatch`); this module only reads HTTP (headers,
body, format) and writes it back. Handlers run in the thread pool, since pymongo blocks.
"""

from __future__ import annotations

import logging
import traceback
from collections import deque
from pathlib import Path

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import Response

from fhir_server import routing
from fhir_server.api import http, origins
from fhir_server.api.headers import SecurityHeaders
from fhir_server.api.hosts import AllowedHosts
from fhir_server.api.lanes import Lanes
from fhir_server.api.request_log import RequestLog
from fhir_server.config import Settings
from fhir_server.errors import FhirError, Issue, operation_outcome
from fhir_server.interactions import binary, urls
from fhir_server.interactions.request import FhirRequest, FhirResponse
from fhir_server.security.identity import Identity
from fhir_server.server import FhirServer

log = logging.getLogger(__name__)

ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]
BASE = "/fhir"


def create_app(server: FhirServer | None = None) -> FastAPI:
    """The ASGI app; without a server, one is opened from the environment (uvicorn workers)."""
    if server is None:
        server = FhirServer.open(Settings.from_env())

    async def lifespan(app: FastAPI):
        await run_in_threadpool(server.start)
        yield
        await run_in_threadpool(server.stop)

    app = FastAPI(title="fhir-server", description="FHIR R4 server for coordinated care",
                  lifespan=lifespan, redoc_url=None, redirect_slashes=False,
                  # Swagger UI loads its scripts from a public CDN: only when asked for (FHIR_API_DOCS)
                  docs_url=f"{BASE}/_docs" if server.settings.api_docs else None,
                  openapi_url=f"{BASE}/_openapi.json" if server.settings.api_docs else None)
    app.state.server = server
    lanes = Lanes(server.settings.max_heavy_requests)
    _install_error_handlers(app)
    origins.install(app, server.settings)  # innermost: CORS, then the cross-site check
    app.add_middleware(AllowedHosts, settings=server.settings)
    app.add_middleware(RequestLog)
    app.add_middleware(SecurityHeaders)  # outermost: on every answer, the others' refusals too

    @app.api_route(BASE, methods=ALL_METHODS)
    async def base(request: Request) -> Response:
        return await _handle(server, lanes, request, "")

    @app.api_route(BASE + "/{path:path}", methods=ALL_METHODS)
    async def anything(request: Request, path: str) -> Response:
        return await _handle(server, lanes, request, path)

    return app


def _base_url(server: FhirServer, request: Request) -> str:
    return server.settings.base_url or f"{str(request.base_url).rstrip('/')}{BASE}"


async def _handle(server: FhirServer, lanes: Lanes, request: Request, path: str) -> Response:
    params = list(request.query_params.multi_items())
    base_url = _base_url(server, request)
    address = request.client.host if request.client else None
    url = path + (f"?{request.url.query}" if request.url.query else "")
    identity = None
    try:
        target = urls.parse_path(path, params)
        if target.shape in routing.PUBLIC_SHAPES:
            identity = Identity.nobody(address)
        else:  # before the body is read: nothing is parsed for a caller who is nobody
            identity = await run_in_threadpool(server.authenticate, request.headers.get("authorization"),
                                               base_url, address)
        accept = http.raw_ranges(request) if binary.answers_raw(target.type, target.shape, request.method) else None
        media_type = http.FHIR_JSON if accept is not None else http.negotiate(request)  # else decided on the Binary
        fhir_request = await _fhir_request(server, request, target, base_url, url, identity, params, accept)
    except FhirError as exc:  # refused before the router, which audits the rest
        server.audit_refusal(request.method, url, exc.status, str(exc), request.state.request_id, address,
                             identity)
        raise
    result: FhirResponse = await lanes.run(server, fhir_request, routing.heavy(target.shape, request.method),
                                           request.receive)
    return _respond(result, media_type, http.is_pretty(request), head=request.method == "HEAD")


async def _fhir_request(server: FhirServer, request: Request, target: urls.Target, base_url: str, url: str,
                        identity: Identity, params: list[tuple[str, str]],
                        accept: tuple[str, ...] | None) -> FhirRequest:
    method = request.method
    if target.shape.endswith("-search"):
        body = await http.read_body(request, server.settings.max_form_bytes, form=True, setting="FHIR_MAX_FORM_BYTES")
    elif binary.takes_raw(target.type, target.shape, method) and http.is_content(request):
        content = await http.read_bytes(request, server.settings.max_body_bytes)
        body = binary.upload(request.headers["content-type"], content, request.headers.get("x-security-context"),
                             target.id)
    elif method in ("POST", "PUT", "PATCH"):
        body = await http.read_body(request, server.settings.max_body_bytes)
    else:
        body = None
    prefer = http.prefer(request)
    return FhirRequest(
        method=method, base_url=base_url, shape=target.shape, operation=target.operation, identity=identity,
        type=target.type, id=target.id, version=target.version, compartment=target.compartment,
        params=params, body=body, url=url, accept=accept,
        if_match=request.headers.get("if-match"), if_none_match=request.headers.get("if-none-match"),
        if_modified_since=http.http_date(request.headers.get("if-modified-since")),
        if_none_exist=request.headers.get("if-none-exist"), provenance=request.headers.get("x-provenance"),
        prefer_return=prefer.get("return"), prefer_handling=prefer.get("handling"),
        request_id=request.state.request_id)


def _respond(result: FhirResponse, media_type: str, pretty: bool, head: bool = False) -> Response:
    headers = dict(result.headers)
    if result.etag:
        headers["ETag"] = result.etag
    if result.last_modified:
        headers["Last-Modified"] = http.last_modified_header(result.last_modified)
    if result.location:
        headers["Location"] = result.location
    if result.content_location:
        headers["Content-Location"] = result.content_location
    if result.raw is not None:
        return http.raw_response(result.status, result.raw.media_type, result.raw.length, result.raw.chunks,
                                 headers, head)
    return http.fhir_response(result.status, result.body, media_type, pretty, headers, head)


def _error_response(request: Request, status: int, body: dict, headers: dict[str, str]) -> Response:
    return http.fhir_response(status, body, http.FHIR_JSON, http.is_pretty(request), headers)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(FhirError)
    async def fhir_error(request: Request, exc: FhirError) -> Response:
        return _error_response(request, exc.status, exc.outcome(), exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        text = {404: f"no FHIR endpoint at {request.url.path}; the base is {BASE}",
                405: f"{request.method} is not supported on {request.url.path}"}.get(exc.status_code, str(exc.detail))
        code = "not-found" if exc.status_code == 404 else "not-supported" if exc.status_code == 405 else "processing"
        return _error_response(request, exc.status_code, operation_outcome([Issue("error", code, text)]),
                               dict(exc.headers or {}))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        return _error_response(request, 400, operation_outcome([Issue("error", "invalid", "malformed request")]), {})

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:  # raised by a middleware
        return _unexpected(request, exc)

    app.add_middleware(CatchUnexpected)  # innermost: the others see (and log) a plain 500


def _unexpected(request: Request, exc: BaseException) -> Response:
    """One compact ERROR line per 500 (the full traceback at DEBUG only), and an OperationOutcome."""
    log.error("unexpected error on %s %s (request %s): %s", request.method, request.url.path,
              getattr(request.state, "request_id", "-"), describe(exc))
    log.debug("traceback of the unexpected error", exc_info=exc)
    return _error_response(request, 500, operation_outcome([Issue(
        "fatal", "exception", "internal error; it is logged on the server")]), {})


def describe(exc: BaseException, frames: int = 4, length: int = 300) -> str:
    """`Type: message … at file:line in function < …`, innermost frame first, a few frames only:
    a RecursionError's traceback is a thousand frames, and a message may quote a client's text."""
    message = " ".join(str(exc).split())
    if len(message) > length:
        message = message[:length] + "…"
    innermost = traceback.StackSummary.extract(deque(traceback.walk_tb(exc.__traceback__), maxlen=frames),
                                               lookup_lines=False)
    where = " < ".join(f"{Path(f.filename).name}:{f.lineno} in {f.name}" for f in reversed(innermost))
    return f"{type(exc).__name__}: {message} at {where or '?'}"


class CatchUnexpected:
    """An exception no handler knows becomes the 500 here, inside the other middleware: the answer
    carries their headers and the request log its status. Left to Starlette's outermost handler,
    it is re-raised and uvicorn logs the whole traceback once more, and drops the connection."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = False

        async def watch(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, watch)
        except Exception as exc:  # noqa: BLE001 - the last resort; cancellation (BaseException) passes
            response = _unexpected(Request(scope), exc)
            if not started:  # else the answer is cut short: the client sees the connection end
                await response(scope, receive, send)
