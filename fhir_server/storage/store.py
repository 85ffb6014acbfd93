"""Versioned resource storage: current versions per type, every version in one history.

Layout
- one collection per resource type (`Patient`, …) holding the current version of each
  resource: `{_id: id, v: version, ts: lastUpdated, del: bool, json: bytes}`; a deleted
  resource keeps a tombstone (`del: true`, no json) so reads answer 410 and versions continue;
- one `_history` collection holding every version:
  `{_id: "Type/id/v", r: "Type/id", t: type, tk: "Type|<instant>", v, ts, m: method, json}`.

The resource is kept as the exact JSON bytes the server will answer with (meta included), so a
read is one indexed lookup and a byte copy. A write replaces the current document only if its
version is the one the writer read (optimistic concurrency) and adds the history entry, both
in one MongoDB transaction. Several writes (a FHIR transaction) commit together the same way.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import bson
from pymongo import ASCENDING, InsertOne, ReplaceOne, UpdateOne
from pymongo.errors import (
    BulkWriteError,
    ClientBulkWriteException,
    OperationFailure,
    PyMongoError,
    ServerSelectionTimeoutError,
)

from fhir_server.errors import FhirError, Issue
from fhir_server.storage.database import (
    COUNTERS,
    GUARDS,
    HISTORY,
    Database,
    max_time_ms,
    translate_commit,
    translate_errors,
    translate_iteration,
)
from fhir_server.storage.records import ContainedValues, Ids, IndexValues, KeyRange, Keys, Record, Selection

log = logging.getLogger(__name__)

_PROJECTION = {"v": 1, "ts": 1, "del": 1, "json": 1}
_PROJECTION_VALUES = {**_PROJECTION, "ix": 1}
_TXN_DEADLINE_S = 15.0
_NETWORK_RETRIES = 2  # a lost connection inside a transaction, tried again at most this often


def now() -> datetime:
    """Server time at the database's resolution (milliseconds), always UTC."""
    t = datetime.now(UTC)
    return t.replace(microsecond=t.microsecond // 1000 * 1000)


def next_instant(previous: datetime | None) -> datetime:
    """Now, or just after `previous`: lastUpdated never goes backwards within one resource."""
    ts = now()
    if previous is not None and ts <= previous:
        ts = previous + timedelta(milliseconds=1)
    return ts


def format_instant(ts: datetime) -> str:
    utc = ts.astimezone(UTC)  # (strftime writes the year 1 as `1`)
    return f"{utc.year:04d}-" + utc.strftime("%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


@dataclass(frozen=True)
class Version:
    """One stored version of a resource, as read back."""

    type: str
    id: str
    version: int
    last_updated: datetime
    deleted: bool
    json: bytes | None
    method: str | None = None  # only known for history entries
    values: dict[str, Any] | None = None  # search values, when read with them (current versions only)

    @property
    def key(self) -> str:
        return f"{self.type}/{self.id}"


@dataclass
class Write:
    """One version to commit. `expected` is the current version it replaces (None: none)."""

    type: str
    id: str
    version: int
    expected: int | None
    last_updated: datetime
    method: str  # POST | PUT | PATCH | DELETE
    json: bytes | None  # None for a deletion
    index: IndexValues | None = None  # search values, stored beside the JSON (None for a deletion)

    def as_version(self) -> Version:
        return Version(self.type, self.id, self.version, self.last_updated, self.json is None,
                       self.json, self.method)


MAX_DOCUMENT = 16 * 1024 * 1024 - 64 * 1024  # MongoDB's limit, with room for the command around it


def _check_size(write: Write, document: dict[str, Any]) -> None:
    """A resource whose stored document (JSON and search values) would pass MongoDB's limit."""
    size = len(bson.encode(document))
    if size > MAX_DOCUMENT:
        raise FhirError(413, Issue("error", "too-costly",
                                   f"{write.type}/{write.id} is too large to store: {size // 1024} KiB with its search "
                                   f"values, the database takes {MAX_DOCUMENT // 1024} KiB at most"))


class VersionConflict(Exception):
    """The current version is not the one the write expected; nothing was written."""

    def __init__(self, write: Write, current: int | None):
        self.write = write
        self.current = current
        super().__init__(f"{write.type}/{write.id}: expected version {write.expected}, found {current}")


def _version(type_: str, id_: str, doc: dict[str, Any], method: str | None = None) -> Version:
    return Version(type_, id_, doc["v"], doc["ts"], bool(doc.get("del")), doc.get("json"), method, doc.get("ix"))


def _history_version(doc: dict[str, Any]) -> Version:
    type_, id_ = doc["r"].split("/", 1)
    return _version(type_, id_, doc, doc.get("m"))


def _record(type_: str, doc: dict[str, Any]) -> Record:
    contained = tuple(ContainedValues(c["t"], c["id"], c["ix"]) for c in doc.get("cix") or ())
    return Record(type_, doc["_id"], doc["v"], doc["ts"], doc.get("ix") or {}, doc.get("json"), contained)


def current_document(write: Write) -> dict[str, Any]:
    """The stored current version a write makes (also what bulk loaders insert directly)."""
    return {"_id": write.id, "v": write.version, "ts": write.last_updated, "del": write.json is None,
            "json": write.json, **_index_fields(write.index)}


def history_document(write: Write) -> dict[str, Any]:
    """The history entry a write adds."""
    return {"_id": f"{write.type}/{write.id}/{write.version}", "r": f"{write.type}/{write.id}", "t": write.type,
            "tk": f"{write.type}|{format_instant(write.last_updated)}", "v": write.version, "ts": write.last_updated,
            "m": write.method, "del": write.json is None, "json": write.json}


def _index_fields(index: IndexValues | None) -> dict[str, Any]:
    """The stored form of search values: `ix` values, `k` keys, `cix` contained values."""
    if index is None:
        return {}
    fields: dict[str, Any] = {"ix": index.values, "k": index.keys}
    if index.contained:
        fields["cix"] = [{"t": c.type, "id": c.id, "ix": c.values} for c in index.contained]
    return fields


class ResourceStore:
    def __init__(self, database: Database):
        self.database = database
        self.db = database.db
        self._prepared: set[str] = set()

    @translate_errors
    def ensure_type_indexes(self, type_: str) -> None:
        """The index of a type's search keys; once per type and process, before its first write."""
        if type_ in self._prepared:
            return
        self.database.ensure_indexes()
        if "k_1" not in set(self.db[type_].index_information()):
            self.db[type_].create_index([("k", ASCENDING)])
        self._prepared.add(type_)

    # -- search --------------------------------------------------------------------------------
    @translate_errors
    def find(self, type_: str, selection: Selection, *, json: bool = False, contained: bool = False,
             session: Any = None) -> list[Record]:
        """Live resources of a type selected by ids or index keys (None: all of them), with
        their search values, and their JSON or contained values only when asked.

        One query per id list or key, since an equality or a range on one field is what every
        MongoDB-compatible server plans well; the caller checks its exact predicates after."""
        projection = {"v": 1, "ts": 1, "del": 1, "ix": 1, **({"json": 1} if json else {}),
                      **({"cix": 1} if contained else {})}
        collection = self.db[type_]
        if selection is None:
            docs: Iterable[dict[str, Any]] = collection.find({}, projection, session=session, max_time_ms=max_time_ms())
        else:
            seen: dict[str, dict[str, Any]] = {}
            for query in self._queries(selection):
                for doc in collection.find(query, projection, session=session, max_time_ms=max_time_ms()):
                    seen.setdefault(doc["_id"], doc)
            docs = seen.values()
        return [_record(type_, doc) for doc in docs if not doc.get("del")]

    def fetch(self, keys: Iterable[str], session: Any = None) -> dict[str, Record]:
        """Live resources by `Type/id`, with JSON and search values; one lookup per type."""
        by_type: dict[str, list[str]] = {}
        for key in keys:
            type_, _, id_ = key.partition("/")
            by_type.setdefault(type_, []).append(id_)
        out: dict[str, Record] = {}
        for type_, ids in by_type.items():
            for record in self.find(type_, Ids(tuple(ids)), json=True, session=session):
                out[record.key] = record
        return out

    @translate_errors
    def referring(self, type_: str, keys: list[str], *, limit: int, exclude: Iterable[str] = (),
                  json: bool = False, session: Any = None) -> list[Record]:
        """At most `limit` live resources of a type having any of `keys` among their search keys,
        leaving out the ids `exclude`: who refers to a resource, by the reference keys
        (`subject=Patient/1`), one indexed query however many keys."""
        if not keys or limit <= 0:
            return []
        query: dict[str, Any] = {"k": keys[0] if len(keys) == 1 else {"$in": list(keys)}}
        excluded = list(exclude)
        if excluded:
            query["_id"] = {"$nin": excluded}
        projection = {"v": 1, "ts": 1, "del": 1, "ix": 1, **({"json": 1} if json else {})}
        docs = self.db[type_].find(query, projection, session=session, max_time_ms=max_time_ms()).limit(limit)
        return [_record(type_, doc) for doc in docs if not doc.get("del")]

    @translate_errors
    def stored_versions(self, keys: Iterable[str], session: Any = None) -> set[str]:
        """Which of the `Type/id/version` keys name a stored version that is not a deletion."""
        wanted = list(keys)
        if not wanted:
            return set()
        docs = self.db[HISTORY].find({"_id": {"$in": wanted}}, {"_id": 1, "del": 1}, session=session,
                                     max_time_ms=max_time_ms())
        return {doc["_id"] for doc in docs if not doc.get("del")}

    def _queries(self, selection: Ids | Keys) -> list[dict[str, Any]]:
        if isinstance(selection, Ids):
            ids = list(selection.ids)
            return [{"_id": ids[0]}] if len(ids) == 1 else [{"_id": {"$in": ids}}]
        return [{"k": self._key_condition(key)} for key in selection.keys]

    def _key_condition(self, key: str | KeyRange) -> Any:
        if isinstance(key, str):
            return key
        bounds = {"$gte" if key.low_closed else "$gt": key.low, "$lte" if key.high_closed else "$lt": key.high}
        # a plain range on an array bounds both ends of the index scan on the embedded server;
        # MongoDB needs $elemMatch for that
        return bounds if self.database.tight_multikey_ranges else {"$elemMatch": bounds}

    @translate_errors
    def stored_types(self) -> set[str]:
        """Names of the resource types that have a collection (storage's own start with `_`)."""
        return {name for name in self.db.list_collection_names() if not name.startswith("_")}

    # -- change counters -----------------------------------------------------------------------
    @translate_errors
    def counter(self, name: str) -> int:
        """How often `name` was bumped: one read by id, the same for every worker, so what a
        worker caches from the data can be checked against the writes of all of them."""
        doc = self.db[COUNTERS].find_one({"_id": name}, {"n": 1})
        return int(doc["n"]) if doc else 0

    @translate_errors
    def bump(self, name: str) -> None:
        """Count one change of what `name` stands for (after the change is committed)."""
        self.db[COUNTERS].update_one({"_id": name}, {"$inc": {"n": 1}}, upsert=True)

    # -- reindexing ----------------------------------------------------------------------------
    @translate_errors
    def estimated_count(self, type_: str) -> int:
        return self.db[type_].estimated_document_count()

    @translate_iteration
    def current_json(self, type_: str, batch: int) -> Iterable[list[tuple[str, int, bytes | None]]]:
        """Every current document of a type as (id, version, JSON or None for a tombstone), in
        batches, for recomputing search values."""
        rows: list[tuple[str, int, bytes | None]] = []
        for doc in self.db[type_].find({}, {"json": 1, "v": 1, "del": 1}):
            rows.append((doc["_id"], doc["v"], None if doc.get("del") else doc.get("json")))
            if len(rows) >= batch:
                yield rows
                rows = []
        if rows:
            yield rows

    @translate_errors
    def replace_index(self, type_: str, rows: list[tuple[str, int, IndexValues]]) -> None:
        """New search values for (id, version) pairs; a resource written since keeps its own,
        which its write computed already."""
        if rows:
            self.db[type_].bulk_write([UpdateOne({"_id": id_, "v": version}, {"$set": _index_fields(index)})
                                       for id_, version, index in rows], ordered=False)

    # -- change stream -------------------------------------------------------------------------
    def watch(self, type_: str, on_change: Callable[[str, bytes | None], None], stopping: threading.Event) -> None:
        """Call `on_change(id, JSON or None when deleted)` for every write to a type by anyone,
        until `stopping` is set; a lost stream is opened again with a growing delay."""
        delay = 1.0
        while not stopping.is_set():
            try:
                with self.db[type_].watch(full_document="updateLookup", max_await_time_ms=1000) as stream:
                    delay = 1.0
                    while not stopping.is_set():
                        change = stream.try_next()
                        if change is not None:
                            doc = change.get("fullDocument") or {}
                            key = str((change.get("documentKey") or {}).get("_id"))
                            on_change(key, None if doc.get("del") else doc.get("json"))
            except PyMongoError as exc:
                log.debug("change stream on %s: %s; opening it again", type_, exc)
                stopping.wait(delay)
                delay = min(delay * 2, 30)

    # -- reads ---------------------------------------------------------------------------------
    @translate_errors
    def read(self, type_: str, id_: str, *, values: bool = False) -> Version | None:
        """The current version, a tombstone if deleted, or None if it never existed; with its
        search values if asked (what an access check matches)."""
        doc = self.db[type_].find_one({"_id": id_}, _PROJECTION_VALUES if values else _PROJECTION)
        return _version(type_, id_, doc) if doc else None

    @translate_errors
    def vread(self, type_: str, id_: str, version: int) -> Version | None:
        doc = self.db[HISTORY].find_one({"_id": f"{type_}/{id_}/{version}"})
        return _version(type_, id_, doc, doc.get("m")) if doc else None

    @translate_errors
    def versions(self, type_: str, id_: str) -> list[Version]:
        """Every version of one resource, newest first."""
        docs = self.db[HISTORY].find({"r": f"{type_}/{id_}"}, max_time_ms=max_time_ms())
        return sorted((_version(type_, id_, d, d.get("m")) for d in docs), key=lambda v: -v.version)

    @translate_errors
    def history_page(self, type_: str | None, lower: tuple[datetime, str], upper: tuple[datetime, str],
                     count: int, newest_first: bool = True, window_hint: float = 60.0,
                     keep: Callable[[Version], bool] | None = None) -> tuple[list[Version], float]:
        """Up to `count` history entries strictly between `lower` and `upper` (ts, key).

        Entries nearest `upper` come first when `newest_first`, nearest `lower` otherwise.
        Range scans on a secondary index cost in proportion to what they match on every server
        we run on, while `sort`+`limit` does not stop early on the embedded one. So the page is
        gathered in time windows that widen until `count` entries are found; the window that
        worked is returned as a hint for the next page. Entries `keep` refuses (those the caller
        may not see) are skipped before counting, so a page is full whatever they hide.
        """
        collection = self.db[HISTORY]
        floor, ceiling = lower[0], upper[0]
        found: list[dict[str, Any]] = []
        window = min(max(window_hint, 0.001), 1e11)
        edge = ceiling if newest_first else floor
        while len(found) < count:
            span = timedelta(seconds=window)
            if newest_first:  # clamp before subtracting: the floor may be the year 1
                lo, hi = (floor if edge - floor <= span else edge - span), edge
            else:
                lo, hi = edge, (ceiling if ceiling - edge <= span else edge + span)
            first = edge == (ceiling if newest_first else floor)
            batch = collection.find(self._time_range(type_, lo, hi, first, newest_first), max_time_ms=max_time_ms())
            found.extend(d for d in batch if keep is None or keep(_history_version(d)))
            if (lo <= floor) if newest_first else (hi >= ceiling):
                break
            edge = lo if newest_first else hi
            window *= 2 if found else 8
        unique = {d["_id"]: d for d in found}.values()
        rows = [d for d in unique if lower < (d["ts"], d["_id"]) < upper]
        rows.sort(key=lambda d: (d["ts"], d["_id"]), reverse=newest_first)
        return [_history_version(doc) for doc in rows[:count]], window

    @staticmethod
    def _time_range(type_: str | None, lo: datetime, hi: datetime, first: bool,
                    newest_first: bool) -> dict[str, Any]:
        """[lo, hi) windows, closed on the side where the walk starts."""
        low_op, high_op = ("$gte", "$lte" if first else "$lt") if newest_first else \
            ("$gte" if first else "$gt", "$lte")
        if type_ is None:
            return {"ts": {low_op: lo, high_op: hi}}
        return {"tk": {low_op: f"{type_}|{format_instant(lo)}", high_op: f"{type_}|{format_instant(hi)}"}}

    @translate_errors
    def history_scan(self, type_: str | None, until: datetime, *, json: bool = False) -> list[Version]:
        """Every history entry up to `until`, newest first (for `_at`); metadata only unless
        `json` (what an access check needs)."""
        if type_ is None:
            query: dict[str, Any] = {"ts": {"$lte": until}}
        else:
            query = {"tk": {"$gte": f"{type_}|", "$lte": f"{type_}|{format_instant(until)}"}}
        docs = list(self.db[HISTORY].find(query, None if json else {"json": 0}, max_time_ms=max_time_ms()))
        docs.sort(key=lambda d: (d["ts"], d["_id"]), reverse=True)
        return [_history_version(doc) for doc in docs]

    # -- writes --------------------------------------------------------------------------------
    @translate_commit
    def transact(self, work: Callable[[Any], list[Write]], guards: Iterable[str] = ()) -> list[Version]:
        """Run `work(session)` and commit the writes it returns, all in one transaction.

        `work` does its reads with the session, so it decides on a consistent snapshot; when a
        concurrent transaction touched the same documents, the whole of `work` runs again on
        fresh data (that is how an update without If-Match never loses another one). `guards`
        are keys touched in the same transaction to serialise decisions that have no document
        yet to conflict on, such as two conditional creates with the same query.
        """
        if not self.database.supports_transactions:
            writes = work(None)
            if writes:
                self._apply(writes, None)
            return [w.as_version() for w in writes]
        deadline = time.monotonic() + _TXN_DEADLINE_S
        attempt = network_retries = 0
        while True:
            attempt += 1
            try:
                return self._attempt(work, guards)
            except VersionConflict as exc:
                # another writer got in first: the work reads again and decides again
                if time.monotonic() > deadline:
                    raise FhirError(409, Issue("error", "conflict", f"{exc.write.type}/{exc.write.id} kept changing "
                                               f"while this write was being applied; send it again")) from exc
                time.sleep(min(0.002 * 2 ** min(attempt, 8), 0.2) * random.random())
            except OperationFailure as exc:  # write conflicts: another transaction holds the documents
                transient = exc.has_error_label("TransientTransactionError") or exc.code == 112
                if not transient or time.monotonic() > deadline:
                    raise
                time.sleep(min(0.002 * 2 ** min(attempt, 8), 0.2) * random.random())
            except ServerSelectionTimeoutError:
                raise  # the database is unreachable: the client gets its 503 now
            except PyMongoError as exc:
                # a connection lost inside the transaction: retried once or twice, not for as long
                # as a conflict, since the database may be gone
                network_retries += 1
                if not exc.has_error_label("TransientTransactionError") or network_retries > _NETWORK_RETRIES:
                    raise
                time.sleep(min(0.002 * 2 ** min(attempt, 8), 0.2) * random.random())

    def guard(self, session: Any, key: str) -> None:
        """Touch the guard `key` inside the running unit of work (`transact`), for a decision
        made once the writes are known: two units that decide on the same key (one INS, one
        Schedule's slots) conflict there, and the later one runs again on fresh data."""
        if session is not None:
            self.db[GUARDS].update_one({"_id": key}, {"$inc": {"n": 1}}, upsert=True, session=session)

    def _attempt(self, work: Callable[[Any], list[Write]], guards: Iterable[str]) -> list[Version]:
        """One try of a transaction. A commit whose answer is lost (the connection or the
        database went away) may still have taken effect: if its writes are there, it did, and
        it is not tried again — a retry would write everything a second time."""
        with self.database.client.start_session() as session:
            session.start_transaction()
            try:
                for key in guards:
                    self.guard(session, key)
                writes = work(session)
                if writes:
                    self._apply(writes, session)
            except BaseException:
                if session.in_transaction:
                    try:
                        session.abort_transaction()
                    except PyMongoError:
                        pass  # the database aborts it anyway when the session or the server goes
                raise
            try:
                session.commit_transaction()
            except PyMongoError:
                if writes and self._committed(writes[0]):
                    return [w.as_version() for w in writes]
                raise
        return [w.as_version() for w in writes]

    @translate_commit
    def append(self, writes: list[Write]) -> None:
        """Store new resources that nothing else writes (AuditEvents: first versions with fresh
        ids), without a transaction: each document stands alone, and a batch tried again after
        a failure skips what the first try already stored."""
        by_type: dict[str, list[dict[str, Any]]] = {}
        for write in writes:
            by_type.setdefault(write.type, []).append(current_document(write))
        for type_, documents in by_type.items():
            self.ensure_type_indexes(type_)
            _insert_new(self.db[type_], documents)
        _insert_new(self.db[HISTORY], [history_document(w) for w in writes])

    def _committed(self, write: Write) -> bool:
        """Is this very write in the history (so its whole transaction committed)? The JSON is
        compared too: a concurrent transaction may have committed the same version number
        (ours then failed on the conflict); its JSON differs, or is the same change."""
        doc = self.db[HISTORY].find_one({"_id": f"{write.type}/{write.id}/{write.version}"}, {"json": 1, "del": 1})
        return doc is not None and doc.get("json") == write.json and bool(doc.get("del")) == (write.json is None)

    def read_in(self, session: Any, type_: str, id_: str, *, values: bool = False) -> Version | None:
        """`read` inside a transaction's snapshot."""
        doc = self.db[type_].find_one({"_id": id_}, _PROJECTION_VALUES if values else _PROJECTION, session=session)
        return _version(type_, id_, doc) if doc else None

    def _apply(self, writes: list[Write], session: Any) -> None:
        """All the writes: in one command where the server takes that, else one `insert_many`
        of new documents and one `bulk_write` of version-checked replacements per type and one
        `insert_many` into the history. Each command is a round trip, and a write by an
        identified user has its Provenance beside it: two types and the history at least."""
        if self.database.writes_in_one_command:
            self._apply_in_one_command(writes, session)
            return
        by_type: dict[str, tuple[list[dict[str, Any]], list[ReplaceOne], list[Write]]] = {}
        for write in writes:
            inserts, replaces, replaced = by_type.setdefault(write.type, ([], [], []))
            current = current_document(write)
            if len(write.json or b"") > 1_000_000 or len(current.get("k", ())) > 10_000:
                _check_size(write, current)
            if write.expected is None:
                inserts.append(current)
            else:
                replaces.append(ReplaceOne({"_id": write.id, "v": write.expected}, current))
                replaced.append(write)
        for type_, (inserts, replaces, replaced) in by_type.items():
            collection = self.db[type_]
            if inserts:
                try:
                    collection.insert_many(inserts, ordered=True, session=session)
                except BulkWriteError as exc:
                    if any(e.get("code") == 11000 for e in exc.details.get("writeErrors", ())):
                        # created meanwhile by another writer; the transaction is aborted, so its
                        # session cannot say at which version: the work reads again on retry
                        failed = exc.details["writeErrors"][0]["index"]
                        write = next(w for w in writes if w.type == type_ and w.id == inserts[failed]["_id"])
                        raise VersionConflict(write, None) from None
                    raise
            if replaces:
                result = collection.bulk_write(replaces, ordered=True, session=session)
                if result.matched_count != len(replaces):
                    for write in replaced:
                        found = self._current_version(write, session)
                        if found != write.expected:
                            raise VersionConflict(write, found)
        self.db[HISTORY].insert_many([history_document(w) for w in writes], ordered=True, session=session)

    def _apply_in_one_command(self, writes: list[Write], session: Any) -> None:
        """`_apply` as one client `bulkWrite`: current documents (inserted, or replaced if still at
        the version expected), then the history entries, in order."""
        name = self.db.name
        models: list[Any] = []
        for write in writes:
            current = current_document(write)
            if len(write.json or b"") > 1_000_000 or len(current.get("k", ())) > 10_000:
                _check_size(write, current)
            namespace = f"{name}.{write.type}"
            if write.expected is None:
                models.append(InsertOne(current, namespace=namespace))
            else:
                models.append(ReplaceOne({"_id": write.id, "v": write.expected}, current, namespace=namespace))
        models.extend(InsertOne(history_document(w), namespace=f"{name}.{HISTORY}") for w in writes)
        try:
            result = self.database.client.bulk_write(models, session=session, ordered=True, verbose_results=True)
        except ClientBulkWriteException as exc:
            if isinstance(exc.error, PyMongoError):  # the command itself failed: its labels decide a retry
                raise exc.error from None
            for error in exc.write_errors or ():
                index = error.get("idx", -1)
                if error.get("code") == 11000 and 0 <= index < 2 * len(writes):
                    # the document (or, after a replacement that matched nothing, its history
                    # entry) was written meanwhile by another writer: the work reads again on
                    # retry; the transaction is aborted, so the version found is read outside it
                    write = writes[index % len(writes)]
                    found = None if write.expected is None else self._current_version(write, None)
                    raise VersionConflict(write, found) from None
            raise
        for index, update in (result.update_results or {}).items():
            if index < len(writes) and update.matched_count != 1:
                write = writes[index]
                raise VersionConflict(write, self._current_version(write, session))

    def _current_version(self, write: Write, session: Any) -> int | None:
        doc = self.db[write.type].find_one({"_id": write.id}, {"v": 1}, session=session)
        return doc["v"] if doc else None


def _insert_new(collection: Any, documents: list[dict[str, Any]]) -> None:
    """insert_many, where a document already there (stored by an earlier try) is not an error."""
    try:
        collection.insert_many(documents, ordered=False)
    except BulkWriteError as exc:
        if any(e.get("code") != 11000 for e in exc.details.get("writeErrors", ())):
            raise
