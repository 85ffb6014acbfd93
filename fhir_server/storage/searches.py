"""Stored search results: the ordered matches of a search, so its pages never shift.

The first page of a search stores the ordered list of matching `Type/id` with what the later
pages need (parameters for includes and subsetting); `next`/`previous` links name the stored
result and an offset. Results expire after `ttl_s` seconds and are purged as new ones arrive.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from pymongo import ASCENDING

from fhir_server.storage.database import translate_errors
from fhir_server.storage.store import now

SEARCHES = "_searches"


class SearchResults:
    def __init__(self, database, ttl_s: int = 3600):
        self.collection = database.db[SEARCHES]
        self.ttl = timedelta(seconds=ttl_s)
        self._indexed = False

    @translate_errors
    def save(self, keys: list[str], info: dict[str, Any]) -> str:
        if not self._indexed:
            self.collection.create_index([("created", ASCENDING)])
            self._indexed = True
        created = now()
        self.collection.delete_many({"created": {"$lt": created - self.ttl}})
        search_id = uuid.uuid4().hex
        self.collection.insert_one({"_id": search_id, "created": created, "keys": keys, **info})
        return search_id

    @translate_errors
    def load(self, search_id: str) -> dict[str, Any] | None:
        doc = self.collection.find_one({"_id": search_id})
        if doc is None or doc["created"] < now() - self.ttl:
            return None
        return doc
