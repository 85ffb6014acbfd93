"""The MongoDB connection, what the server behind it can do, and its failures as FHIR errors.

Only pymongo is used, so the same code runs on the embedded server, a replica set or Atlas.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from pymongo import ASCENDING, MongoClient
from pymongo.database import Database as MongoDatabase
from pymongo.errors import ConnectionFailure, OperationFailure, PyMongoError

from fhir_server import budget
from fhir_server.errors import DatabaseUnavailable, FhirError

log = logging.getLogger(__name__)

HISTORY = "_history"
COUNTERS = "_counters"  # named counters writers bump so that every worker sees a change (see ResourceStore.bump)
GUARDS = "_guards"  # keys that serialise conditional creates (see ResourceStore.transact)
T = TypeVar("T")


def _unavailable(exc: PyMongoError) -> DatabaseUnavailable:
    """Every driver failure is the same 503 with Retry-After: unreachable, failing over, or
    refusing an operation, the client can only try again later. What is not a connection
    problem is logged, since it may be a fault of ours."""
    if isinstance(exc, ConnectionFailure):  # includes AutoReconnect, ServerSelectionTimeoutError
        return DatabaseUnavailable(type(exc).__name__)
    if isinstance(exc, OperationFailure):
        if not (exc.has_error_label("TransientTransactionError") or exc.code in (91, 189, 11600, 11602)):
            log.error("database operation failed: %s", exc)
        return DatabaseUnavailable(f"code {exc.code}")
    log.error("database failure: %s: %s", type(exc).__name__, exc)
    return DatabaseUnavailable(type(exc).__name__)


def _failure(exc: PyMongoError) -> FhirError:
    """A driver failure as the client sees it: 408 when the request's own budget ran out
    (the database stopped on `maxTimeMS`), 503 for everything else."""
    spent = budget.current()
    if exc.timeout and spent is not None and spent.remaining() <= 0.05:
        return budget.spent(spent.seconds)
    return _unavailable(exc)


def max_time_ms() -> int | None:
    """The running request's time left, as the `maxTimeMS` of a query that may scan (None: no
    budget). Not the driver's timeout context: that one replaces the server-selection timeout,
    so while the database is down a request would wait its whole budget instead of answering
    503 after `FHIR_DB_TIMEOUT_MS`."""
    left = budget.remaining()
    return None if left is None else max(1, int(left * 1000))


def translate_errors(func: Callable[..., T]) -> Callable[..., T]:
    """A storage call as a checkpoint of the request's budget; driver failures → 408 (its
    queries' `maxTimeMS` ran out) or 503, never a driver exception."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        try:
            budget.check()
            return func(*args, **kwargs)
        except PyMongoError as exc:
            raise _failure(exc) from exc

    return wrapper


def translate_commit(func: Callable[..., T]) -> Callable[..., T]:
    """`translate_errors` for a unit of work: checked against the budget before it starts, but
    its commit is not cut short by it (the reads inside are bounded one by one), so that a
    request never answers 408 for a write that took effect."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        budget.check()
        try:
            return func(*args, **kwargs)
        except PyMongoError as exc:
            raise _failure(exc) from exc

    return wrapper


def translate_iteration(func: Callable[..., Iterator[T]]) -> Callable[..., Iterator[T]]:
    """`translate_errors` for a generator: failures while it is iterated are translated too;
    each batch it yields is a checkpoint."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Iterator[T]:
        try:
            for item in func(*args, **kwargs):
                yield item
                budget.check()
        except PyMongoError as exc:
            raise _failure(exc) from exc

    return wrapper


class Database:
    """A connected database plus the facts the server adapts to (transactions or not)."""

    def __init__(self, uri: str, name: str, timeout_ms: int = 3000):
        self.client: MongoClient = MongoClient(
            uri, serverSelectionTimeoutMS=timeout_ms, connectTimeoutMS=timeout_ms,
            socketTimeoutMS=max(timeout_ms * 10, 30000), tz_aware=True, retryWrites=True,
            # An acknowledged write is on disk: without the journal, a crash of the database
            # right after a 201 loses it (the embedded server flushes its log in the background).
            w="majority", journal=True, appname="fhir-server")
        self.db: MongoDatabase = self.client[name]
        self._transactions: bool | None = None
        self._tight_ranges: bool | None = None
        self._one_command: bool | None = None
        self._indexed = False
        self._lock = threading.Lock()

    def close(self) -> None:
        self.client.close()

    @property
    @translate_errors
    def supports_transactions(self) -> bool:
        """Multi-document transactions need a replica set or a sharded cluster."""
        if self._transactions is None:
            hello = self.client.admin.command("hello")
            self._transactions = bool(hello.get("setName")) or hello.get("msg") == "isdbgrid"
            if not self._transactions:
                log.warning("the database is a standalone server: writes are NOT atomic across the "
                            "current and history collections; use a replica set in production")
        return self._transactions

    @property
    @translate_errors
    def writes_in_one_command(self) -> bool:
        """Whether the server takes writes to several collections in one command (`bulkWrite`,
        MongoDB 8.0, wire version 25): a transaction's writes then cost one round trip."""
        if self._one_command is None:
            self._one_command = self.client.admin.command("hello").get("maxWireVersion", 0) >= 25
        return self._one_command

    @property
    @translate_errors
    def tight_multikey_ranges(self) -> bool:
        """True when a plain range on an array field bounds both ends of the index scan (the
        embedded server); MongoDB needs `$elemMatch` for that."""
        if self._tight_ranges is None:
            self._tight_ranges = "secantusVersion" in self.client.admin.command("buildInfo")
        return self._tight_ranges

    @translate_errors
    def ensure_indexes(self) -> None:
        """Indexes the storage layer relies on; idempotent, run once per process."""
        with self._lock:
            if self._indexed:
                return
            history = self.db[HISTORY]
            history.create_index([("r", ASCENDING)], name="resource")
            history.create_index([("ts", ASCENDING)], name="lastUpdated")
            history.create_index([("tk", ASCENDING)], name="type_lastUpdated")
            self._indexed = True
