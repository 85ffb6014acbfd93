"""The work budget of one request: a deadline, and a flag raised when its client goes away.

A request's budget rides in a context variable set by the thread that runs it (`running`), so
any layer can ask `check()` at its checkpoints — every database round trip, every pass of a
loop whose length the client chooses (includes, batch entries, patch operations) — without
passing it down. Past the deadline or once cancelled, `check()` raises a 408 naming the limit
and how to stay within it. Work with no budget (start-up, background jobs, tests of pure
functions) is never stopped.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

from fhir_server.errors import FhirError, Issue


@dataclass
class Budget:
    """`seconds` of work from now, cancellable from another thread (the HTTP side)."""

    seconds: float
    started: float = field(default_factory=time.monotonic)
    cancelled: threading.Event = field(default_factory=threading.Event)

    @property
    def deadline(self) -> float:
        return self.started + self.seconds

    def remaining(self) -> float:
        """Seconds left (≤ 0 once spent)."""
        return self.deadline - time.monotonic()

    def cancel(self) -> None:
        """The client went away: the work stops at its next checkpoint."""
        self.cancelled.set()

    def check(self) -> None:
        if self.cancelled.is_set():
            raise FhirError(408, Issue("error", "timeout", "the client closed the connection; the request was "
                                       "stopped"))
        if self.remaining() <= 0:
            raise spent(self.seconds)


def spent(seconds: float) -> FhirError:
    """The 408 of a request that ran out of time."""
    return FhirError(408, Issue("error", "timeout", (
        f"the request did not finish within its time budget ({seconds:g} s, FHIR_REQUEST_TIMEOUT_S); ask for "
        f"less at once: a smaller _count and paging, fewer _include/_revinclude (no :iterate), fewer search "
        f"entries per batch")))


_current: ContextVar[Budget | None] = ContextVar("fhir_budget", default=None)


def current() -> Budget | None:
    return _current.get()


def check() -> None:
    """Raise 408 if the running request is past its deadline or its client went away."""
    budget = _current.get()
    if budget is not None:
        budget.check()


def remaining() -> float | None:
    """Seconds left to the running request (None: no budget)."""
    budget = _current.get()
    return None if budget is None else budget.remaining()


@contextmanager
def running(budget: Budget | None) -> Iterator[Budget | None]:
    """Run the block under `budget` (None: unbounded)."""
    token = _current.set(budget)
    try:
        yield budget
    finally:
        _current.reset(token)


@contextmanager
def unbounded() -> Iterator[None]:
    """Run the block with no budget: what must finish once a write has committed (so that the
    client never hears 408 about a write that took effect)."""
    token = _current.set(None)
    try:
        yield
    finally:
        _current.reset(token)


def checked(items, every: int = 1):
    """`items`, checking the budget before every `every`-th one: for loops whose length the client chooses."""
    for position, item in enumerate(items):
        if position % every == 0:
            check()
        yield item
