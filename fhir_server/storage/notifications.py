"""What Subscription notifications keep in the database: the outbox, the dispatcher's position
in the history, who owns each Subscription, and which worker delivers for which Subscription.

Layout
- `_notifications`: one document per (Subscription, version written) it must be told of,
  `{_id: "<subscription>|Type/id/v", s: subscription id, h: "Type/id/v", ts: the version's
  lastUpdated, st: pending | sent | failed, due: next attempt, n: attempts, err: last error}`;
  the `_id` makes a version matched twice (a replayed window, two workers) one notification.
- `_subscription_owners`: `{_id: subscription id, identity: {...}}`, written in the unit of work
  that writes the Subscription: whose reach its notifications stay within.
- `_subscription_leases`: `{_id: subscription id, until, by}`: the one worker delivering a
  Subscription's notifications until `until` (so each is sent once, in order).
- `_meta` `notifications.position`: the lastUpdated up to which the history was matched.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from pymongo import ASCENDING
from pymongo.errors import BulkWriteError, DuplicateKeyError

from fhir_server.storage.database import HISTORY, Database, translate_errors
from fhir_server.storage.jobs import META
from fhir_server.storage.store import Version, _history_version

NOTIFICATIONS = "_notifications"
OWNERS = "_subscription_owners"
LEASES = "_subscription_leases"
POSITION = "notifications.position"
PENDING, SENT, FAILED = "pending", "sent", "failed"


class Outbox:
    """The notifications to deliver and the bookkeeping around them, shared by every worker."""

    def __init__(self, database: Database):
        self.db = database.db
        self._indexed = False

    @translate_errors
    def ensure_indexes(self) -> None:
        if not self._indexed:
            self.db[NOTIFICATIONS].create_index([("st", ASCENDING)], name="state")
            self.db[NOTIFICATIONS].create_index([("s", ASCENDING)], name="subscription")
            self._indexed = True

    # -- the position in the history ---------------------------------------------------------------
    @translate_errors
    def position(self) -> datetime | None:
        found = self.db[META].find_one({"_id": POSITION}) or {}
        return found.get("value")

    @translate_errors
    def advance(self, ts: datetime) -> None:
        """The history was matched up to `ts` (never moves back: several workers advance it)."""
        self.db[META].update_one({"_id": POSITION}, {"$max": {"value": ts}}, upsert=True)

    @translate_errors
    def history_since(self, since: datetime) -> list[tuple[str, datetime]]:
        """(`Type/id/v`, lastUpdated) of every version written at or after `since`: keys only, so
        that a window read again costs little."""
        return [(d["_id"], d["ts"]) for d in self.db[HISTORY].find({"ts": {"$gte": since}}, {"_id": 1, "ts": 1})]

    @translate_errors
    def versions(self, keys: list[str]) -> list[Version]:
        """The history entries `Type/id/v`, with their JSON."""
        if not keys:
            return []
        return [_history_version(d) for d in self.db[HISTORY].find({"_id": {"$in": keys}})]

    # -- owners ----------------------------------------------------------------------------------------
    def set_owner(self, session: Any, subscription: str, identity: dict[str, Any]) -> None:
        """Inside the unit of work writing the Subscription: it commits with it, or not at all."""
        self.db[OWNERS].replace_one({"_id": subscription}, {"_id": subscription, "identity": identity},
                                    upsert=True, session=session)

    @translate_errors
    def owner(self, subscription: str) -> dict[str, Any] | None:
        found = self.db[OWNERS].find_one({"_id": subscription})
        return found.get("identity") if found else None

    # -- the outbox ------------------------------------------------------------------------------------
    @translate_errors
    def add(self, rows: Iterable[tuple[str, str, datetime]], due: datetime) -> int:
        """Notifications (subscription, `Type/id/v`, lastUpdated); those already there are kept
        as they are. Returns how many are new."""
        docs = [{"_id": f"{s}|{h}", "s": s, "h": h, "ts": ts, "st": PENDING, "due": due, "n": 0}
                for s, h, ts in rows]
        if not docs:
            return 0
        try:
            return len(self.db[NOTIFICATIONS].insert_many(docs, ordered=False).inserted_ids)
        except BulkWriteError as exc:
            if any(e.get("code") != 11000 for e in exc.details.get("writeErrors", ())):
                raise
            return int(exc.details.get("nInserted", 0))

    @translate_errors
    def due_subscriptions(self, now: datetime) -> set[str]:
        """Subscriptions with a pending notification due by `now`."""
        return {d["s"] for d in self.db[NOTIFICATIONS].find({"st": PENDING, "due": {"$lte": now}}, {"s": 1})}

    @translate_errors
    def pending(self, subscription: str) -> list[dict[str, Any]]:
        """A Subscription's pending notifications, in the order of the writes."""
        docs = list(self.db[NOTIFICATIONS].find({"s": subscription, "st": PENDING}))
        docs.sort(key=lambda d: (d["ts"], d["h"]))
        return docs

    @translate_errors
    def sent(self, notification: str, now: datetime) -> None:
        self.db[NOTIFICATIONS].update_one({"_id": notification}, {"$set": {"st": SENT, "at": now},
                                                                   "$inc": {"n": 1}, "$unset": {"due": ""}})

    @translate_errors
    def retry(self, notification: str, due: datetime, error: str) -> int:
        """One more failed attempt; the next at `due`. Returns the attempts made."""
        found = self.db[NOTIFICATIONS].find_one_and_update(
            {"_id": notification}, {"$set": {"due": due, "err": error}, "$inc": {"n": 1}}, return_document=True)
        return int(found["n"]) if found else 0

    @translate_errors
    def give_up(self, notification: str, error: str) -> None:
        self.db[NOTIFICATIONS].update_one({"_id": notification}, {"$set": {"st": FAILED, "err": error},
                                                                   "$unset": {"due": ""}})

    @translate_errors
    def purge(self, before: datetime) -> None:
        """Forget the notifications sent for versions older than `before`: their ids only keep a
        version matched again from being sent again, and no pass reads that far back."""
        self.db[NOTIFICATIONS].delete_many({"st": SENT, "ts": {"$lt": before}})

    @translate_errors
    def postpone(self, subscription: str, due: datetime) -> None:
        """The pending notifications of a Subscription that is not active wait until `due`."""
        self.db[NOTIFICATIONS].update_many({"s": subscription, "st": PENDING}, {"$set": {"due": due}})

    @translate_errors
    def drop(self, subscription: str) -> None:
        """A deleted Subscription's pending notifications: never to be sent."""
        self.db[NOTIFICATIONS].delete_many({"s": subscription, "st": PENDING})

    @translate_errors
    def counts(self, subscription: str) -> dict[str, int]:
        """How many notifications of a Subscription are in each state (for tests and operators)."""
        out: dict[str, int] = {}
        for d in self.db[NOTIFICATIONS].find({"s": subscription}, {"st": 1}):
            out[d["st"]] = out.get(d["st"], 0) + 1
        return out

    # -- leases ------------------------------------------------------------------------------------------
    @translate_errors
    def lease(self, subscription: str, worker: str, now: datetime, until: datetime) -> bool:
        """Claim the delivery of a Subscription's notifications until `until`, unless another
        worker holds an unexpired lease: a claim in the database, so it holds across processes."""
        try:
            self.db[LEASES].find_one_and_update(
                {"_id": subscription, "$or": [{"until": {"$lt": now}}, {"by": worker}]},
                {"$set": {"until": until, "by": worker}}, upsert=True)
        except DuplicateKeyError:
            return False  # held by another worker: the filter missed, the upsert met its document
        return True

    @translate_errors
    def release(self, subscription: str, worker: str) -> None:
        self.db[LEASES].delete_one({"_id": subscription, "by": worker})
