"""Where a request's FHIR work runs: in the thread pool, under its time budget, in its lane,
stopped when its client goes away.

pymongo blocks, so the work runs in threads; a thread cannot be killed, so a request is stopped
by its budget (`fhir_server.budget`): past `FHIR_REQUEST_TIMEOUT_S`, or as soon as the client
closes the connection, the next checkpoint raises 408 and its database calls carry the time
left as `maxTimeMS`. Requests whose work grows with what they ask for (searches, histories,
bundles, operations: `routing.heavy`) run at most `FHIR_MAX_HEAVY_REQUESTS` at once per worker
and wait their turn within their budget, so that a burst of them never takes the threads reads
and single writes need.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
from starlette.concurrency import run_in_threadpool

from fhir_server import budget
from fhir_server.errors import FhirError, Issue
from fhir_server.interactions.request import FhirRequest, FhirResponse
from fhir_server.server import FhirServer

_WAIT_STEP_S = 0.25  # how often a request waiting for the heavy lane looks whether its client left


class Lanes:
    """The heavy lane of one worker (made on first use: it belongs to the running event loop)."""

    def __init__(self, heavy: int):
        self.size = max(1, heavy)
        self._heavy: anyio.CapacityLimiter | None = None

    @property
    def heavy(self) -> anyio.CapacityLimiter:
        if self._heavy is None:
            self._heavy = anyio.CapacityLimiter(self.size)
        return self._heavy

    async def run(self, server: FhirServer, req: FhirRequest, heavy: bool,
                  receive: Callable[[], Awaitable[dict[str, Any]]]) -> FhirResponse:
        """Dispatch `req` under a fresh budget, in its lane, cancelled if the client disconnects."""
        work = budget.Budget(server.settings.request_timeout_s)
        watcher = asyncio.create_task(_watch_disconnect(receive, work))
        try:
            if not heavy:
                return await run_in_threadpool(_dispatch, server, req, work)
            await self._admit(work)
            try:
                return await run_in_threadpool(_dispatch, server, req, work)
            finally:
                self.heavy.release()
        finally:
            watcher.cancel()

    async def _admit(self, work: budget.Budget) -> None:
        """Wait for a place in the heavy lane while the budget lasts and the client is there."""
        while True:
            if work.cancelled.is_set():
                work.check()
            left = work.remaining()
            if left <= 0:
                raise FhirError(503, Issue("transient", "throttled", (
                    f"the server is busy with {self.size} long requests (FHIR_MAX_HEAVY_REQUESTS) and this one "
                    f"waited its whole time budget; try again shortly")), headers={"Retry-After": "5"})
            with anyio.move_on_after(min(left, _WAIT_STEP_S)):
                await self.heavy.acquire()
                return


def _dispatch(server: FhirServer, req: FhirRequest, work: budget.Budget) -> FhirResponse:
    with budget.running(work):
        work.check()
        return server.dispatch(req)


async def _watch_disconnect(receive: Callable[[], Awaitable[dict[str, Any]]], work: budget.Budget) -> None:
    """Wait for the client to go away (the body is read by then) and cancel the work."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            work.cancel()
            return
