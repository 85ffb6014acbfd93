"""Background jobs (`$reindex`) and the markers kept about the stored data (`_meta`).

Both are small documents shared by every worker: a job's progress is polled by any of them, and
the format of the stored search values is claimed by exactly one at start.
"""

from __future__ import annotations

import uuid
from typing import Any

from pymongo.errors import DuplicateKeyError

from fhir_server.storage.database import Database, translate_errors
from fhir_server.storage.store import now

JOBS = "_jobs"
META = "_meta"


class Jobs:
    """Jobs as plain dicts with an `id`; progress fields are the job runner's."""

    def __init__(self, database: Database):
        self.collection = database.db[JOBS]

    @translate_errors
    def create(self, kind: str, **fields: Any) -> dict[str, Any]:
        job = {"_id": uuid.uuid4().hex, "kind": kind, "status": "in-progress", "started": now(), **fields}
        self.collection.insert_one(job)
        return _job(job)

    @translate_errors
    def get(self, job_id: str) -> dict[str, Any] | None:
        found = self.collection.find_one({"_id": job_id})
        return _job(found) if found else None

    @translate_errors
    def update(self, job_id: str, *, set_: dict[str, Any] | None = None, add: dict[str, int] | None = None,
               append: dict[str, Any] | None = None) -> None:
        """Set fields, add to counters and append to lists, in one atomic update."""
        change: dict[str, Any] = {}
        if set_:
            change["$set"] = set_
        if add:
            change["$inc"] = add
        if append:
            change["$push"] = append
        if change:
            self.collection.update_one({"_id": job_id}, change)


def _job(doc: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in doc.items() if k != "_id"}
    out["id"] = doc["_id"]
    return out


class Marker:
    """A value about the stored data that one worker claims to bring up to date (e.g. the format
    of the search values): `claim` succeeds for one caller only."""

    def __init__(self, database: Database, name: str):
        self.collection = database.db[META]
        self.name = name

    @translate_errors
    def read(self) -> tuple[Any, Any]:
        """(the value, the value a worker has claimed to bring it to), None when never set."""
        found = self.collection.find_one({"_id": self.name}) or {}
        return found.get("value", found.get("format")), found.get("claimed")

    @translate_errors
    def claim(self, target: Any, previous_claim: Any, exists: bool) -> bool:
        """Claim the work of bringing the value to `target`, if no other worker claimed it since
        `read` saw `previous_claim`."""
        try:
            result = self.collection.update_one({"_id": self.name, "claimed": previous_claim},
                                                {"$set": {"claimed": target}}, upsert=not exists)
        except DuplicateKeyError:
            return False  # another worker created it first
        return bool(result.modified_count or result.upserted_id)

    @translate_errors
    def write(self, value: Any) -> None:
        self.collection.update_one({"_id": self.name}, {"$set": {"value": value}}, upsert=True)
