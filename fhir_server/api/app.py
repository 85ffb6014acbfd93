"""The FastAPI application: URL shapes → interactions, and every outcome → an HTTP response.

Routing is by URL shape (type, instance, history, version…) and method, through the
interaction table; the handlers are sync and run in the thread pool, since pymongo blocks.
"""

from __future__ import annotations

import logging
import os
import threading
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import Response

from fhir_server import interactions, operations
from fhir_server.api import http
from fhir_server.config import Settings
from fhir_server.errors import FhirError, Issue, operation_outcome
from fhir_server.interactions.capabilities import capability_statement
from fhir_server.interactions.request import FhirRequest, FhirResponse
from fhir_server.operations import reindex
from fhir_server.server import FhirServer
from fhir_server.terminology import ucum

log = logging.getLogger(__name__)

ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]
BASE = "/fhir"


def create_app(server: FhirServer | None = None) -> FastAPI:
    """The ASGI app; without a server, one is opened from the environment (uvicorn workers)."""
    if server is None:
        settings = Settings.from_env()
        uri = settings.mongodb_uri or os.environ.get("FHIR_EMBEDDED_MONGODB_URI")
        if not uri:
            raise RuntimeError("no database: set FHIR_MONGODB_URI or start with `fhir-server serve`")
        server = FhirServer.open(settings, uri)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        from fhir_server.search.custom import Watcher

        try:
            await run_in_threadpool(server.database.ensure_indexes)
        except FhirError as exc:  # the database may come later; writes retry the indexes
            log.warning("indexes not checked at start: %s", exc)
        await run_in_threadpool(lambda: server.search_parameters)
        try:  # search values stored by an older version are recomputed in the background
            await run_in_threadpool(reindex.upgrade, server)
        except Exception as exc:  # noqa: BLE001 — the database may come later: checked at the next start
            log.warning("format of the stored search values not checked at start: %s", exc)
        # the UCUM unit table takes most of a second to build: not in the first request's time
        threading.Thread(target=ucum.converter, args=("g",), name="ucum-warm-up", daemon=True).start()
        watcher = Watcher(server)
        watcher.start()
        yield
        watcher.stop()
        server.close()

    app = FastAPI(title="fhir-server", description="FHIR R4 server for coordinated care",
                  lifespan=lifespan, docs_url=f"{BASE}/_docs", openapi_url=f"{BASE}/_openapi.json",
                  redoc_url=None)
    app.state.server = server
    _install_error_handlers(app)

    @app.api_route(f"{BASE}/metadata", methods=ALL_METHODS)
    async def metadata(request: Request) -> Response:
        if request.method == "OPTIONS":
            return Response(status_code=204, headers={"Allow": "GET, HEAD"})
        if request.method not in ("GET", "HEAD"):
            raise FhirError(405, Issue("error", "not-supported", f"{request.method} is not supported on "
                                       f"{BASE}/metadata; use GET"), headers={"Allow": "GET, HEAD"})
        media_type = http.negotiate(request)
        body = await run_in_threadpool(capability_statement, server, _base_url(server, request))
        return http.fhir_response(200, body, media_type, http.is_pretty(request),
                                  head=request.method == "HEAD")

    @app.api_route(BASE, methods=ALL_METHODS)
    async def system(request: Request) -> Response:
        return await _dispatch(server, request, "system")

    @app.api_route(f"{BASE}/_search", methods=ALL_METHODS)
    async def system_search(request: Request) -> Response:
        return await _dispatch(server, request, "system-search")

    @app.api_route(f"{BASE}/_history", methods=ALL_METHODS)
    async def system_history(request: Request) -> Response:
        return await _dispatch(server, request, "system-history")

    @app.api_route(BASE + "/{type}", methods=ALL_METHODS)
    async def type_level(request: Request, type: str) -> Response:
        return await _dispatch(server, request, "type", type)

    @app.api_route(BASE + "/{type}/_search", methods=ALL_METHODS)
    async def type_search(request: Request, type: str) -> Response:
        return await _dispatch(server, request, "type-search", type)

    @app.api_route(BASE + "/{type}/_history", methods=ALL_METHODS)
    async def type_history(request: Request, type: str) -> Response:
        return await _dispatch(server, request, "type-history", type)

    @app.api_route(BASE + "/{type}/{id}", methods=ALL_METHODS)
    async def instance(request: Request, type: str, id: str) -> Response:
        return await _dispatch(server, request, "instance", type, id)

    @app.api_route(BASE + "/{type}/{id}/_history", methods=ALL_METHODS)
    async def instance_history(request: Request, type: str, id: str) -> Response:
        return await _dispatch(server, request, "instance-history", type, id)

    @app.api_route(BASE + "/{type}/{id}/_history/{vid}", methods=ALL_METHODS)
    async def version(request: Request, type: str, id: str, vid: str) -> Response:
        return await _dispatch(server, request, "version", type, id, vid)

    @app.api_route(BASE + "/{type}/{id}/{compartment}", methods=ALL_METHODS)
    async def compartment(request: Request, type: str, id: str, compartment: str) -> Response:
        return await _dispatch(server, request, "compartment", type, id, compartment=compartment)

    return app


def _base_url(server: FhirServer, request: Request) -> str:
    return server.settings.base_url or f"{str(request.base_url).rstrip('/')}{BASE}"


async def _dispatch(server: FhirServer, request: Request, shape: str, type_: str | None = None,
                    id_: str | None = None, vid: str | None = None, compartment: str | None = None) -> Response:
    method = "GET" if request.method == "HEAD" else request.method
    operation = _operation_call(shape, type_, id_, compartment)
    if operation is not None:
        return await _run_operation(server, request, method, *operation)
    if type_ is not None and not server.definitions.is_resource_type(type_):
        raise FhirError(404, Issue("error", "not-supported",
                                   f"{type_!r} is not a FHIR R4 resource type this server knows "
                                   f"(see {BASE}/metadata)"))
    if method == "OPTIONS":
        allowed = interactions.methods(shape)
        return Response(status_code=204, headers={"Allow": ", ".join(allowed + (["HEAD"] if "GET" in allowed else []))})
    interaction = interactions.find(shape, method)
    if interaction is None:
        allowed = interactions.methods(shape)
        raise FhirError(405, Issue("error", "not-supported",
                                   f"{request.method} is not supported on this URL; use {', '.join(allowed)}"),
                        headers={"Allow": ", ".join(allowed + (["HEAD"] if "GET" in allowed else []))})
    media_type = http.negotiate(request)
    if shape.endswith("-search"):
        body = await http.read_body(request, server.settings.max_body_bytes, form=True)
    elif method in ("POST", "PUT", "PATCH"):
        body = await http.read_body(request, server.settings.max_body_bytes)
    else:
        body = None
    prefer = http.prefer(request)
    fhir_request = FhirRequest(
        method=method, base_url=_base_url(server, request), type=type_, id=id_, version=vid,
        compartment=compartment,
        params=list(request.query_params.multi_items()), body=body,
        if_match=request.headers.get("if-match"), if_none_match=request.headers.get("if-none-match"),
        if_modified_since=http.http_date(request.headers.get("if-modified-since")),
        if_none_exist=request.headers.get("if-none-exist"),
        prefer_return=prefer.get("return"), prefer_handling=prefer.get("handling"))
    result: FhirResponse = await run_in_threadpool(interaction.handler, server, fhir_request)
    return _respond(result, media_type, http.is_pretty(request), head=request.method == "HEAD")


def _operation_call(shape: str, type_: str | None, id_: str | None, last: str | None):
    """(level, name, type, id) when the URL names an operation (`$name`), else None."""
    if shape == "type" and type_ and type_.startswith("$"):
        return "system", type_[1:], None, None
    if shape == "instance" and id_ and id_.startswith("$"):
        return "type", id_[1:], type_, None
    if shape == "compartment" and last and last.startswith("$"):
        return "instance", last[1:], type_, id_
    return None


async def _run_operation(server: FhirServer, request: Request, method: str, level: str, name: str,
                         type_: str | None, id_: str | None) -> Response:
    if type_ is not None and not server.definitions.is_resource_type(type_):
        raise FhirError(404, Issue("error", "not-supported", f"{type_!r} is not a FHIR R4 resource type"))
    operation = operations.find(name, level, type_)
    if operation is None:
        raise FhirError(404, Issue("error", "not-supported",
                                   f"${name} is not an operation of this server at the {level} level "
                                   f"(see {BASE}/metadata)"))
    if method not in operation.methods:
        raise FhirError(405, Issue("error", "not-supported", f"${name} takes {' or '.join(operation.methods)}"),
                        headers={"Allow": ", ".join(operation.methods)})
    media_type = http.negotiate(request)
    body = await http.read_body(request, server.settings.max_body_bytes) if method == "POST" else None
    fhir_request = FhirRequest(method=method, base_url=_base_url(server, request), type=type_, id=id_,
                               params=list(request.query_params.multi_items()), body=body,
                               prefer_return=http.prefer(request).get("return"),
                               prefer_handling=http.prefer(request).get("handling"))
    result = await run_in_threadpool(operation.handler, server, fhir_request)
    return _respond(result, media_type, http.is_pretty(request), head=request.method == "HEAD")


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
    return http.fhir_response(result.status, result.body, media_type, pretty, headers, head)


def _error_response(request: Request, status: int, body: dict[str, Any], headers: dict[str, str]) -> Response:
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
    async def unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return _error_response(request, 500, operation_outcome([Issue(
            "fatal", "exception", "internal error; it is logged on the server")]), {})
