"""Stored search results: the ordered matches of a search, so its pages never shift.

The first page of a search stores the ordered list of matching `Type/id` with what the later
pages need (parameters for includes and subsetting); `next`/`previous` links name the stored
result and an offset. The list is kept in chunks of `CHUNK` keys, one document each, so a
search of millions of matches stays under the database's 16 MB document limit and a later page
reads only the chunk(s) it shows. Results expire after `ttl_s` seconds and are purged as new
ones arrive.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from pymongo import ASCENDING

from fhir_server.storage.database import translate_errors
from fhir_server.storage.store import now

SEARCHES = "_searches"
CHUNK = 50_000  # keys per document: ~100 bytes each at most (type + 64-character id), far under 16 MB


class SearchResults:
    def __init__(self, database, ttl_s: int = 3600):
        self.collection = database.db[SEARCHES]
        self.ttl = timedelta(seconds=ttl_s)
        self._indexed = False

    @translate_errors
    def save(self, keys: Sequence[str], info: dict[str, Any]) -> str:
        if not self._indexed:
            self.collection.create_index([("created", ASCENDING)])
            self._indexed = True
        created = now()
        self.collection.delete_many({"created": {"$lt": created - self.ttl}})
        search_id = uuid.uuid4().hex
        chunks = [{"_id": f"{search_id}.{n}", "created": created, "keys": list(keys[start:start + CHUNK])}
                  for n, start in enumerate(range(0, len(keys), CHUNK))]
        if chunks:
            self.collection.insert_many(chunks)
        self.collection.insert_one({"_id": search_id, "created": created, **info, "matches": len(keys)})
        return search_id

    @translate_errors
    def load(self, search_id: str) -> tuple[dict[str, Any], StoredKeys] | None:
        """The search's stored parameters and its keys (read chunk by chunk as pages need them)."""
        doc = self.collection.find_one({"_id": search_id})
        if doc is None or "matches" not in doc or doc["created"] < now() - self.ttl:  # (no count: an older format)
            return None
        return doc, StoredKeys(self.collection, search_id, doc["matches"])


class StoredKeys:
    """The stored keys of one search as a read-only sequence: `len` and slices, reading only the
    chunks a slice covers."""

    def __init__(self, collection, search_id: str, total: int):
        self.collection = collection
        self.search_id = search_id
        self.total = total

    def __len__(self) -> int:
        return self.total

    @translate_errors
    def __getitem__(self, window: slice) -> list[str]:
        start, stop, _ = window.indices(self.total)  # pages take plain slices
        if start >= stop:
            return []
        first, last = start // CHUNK, (stop - 1) // CHUNK
        keys = self._chunks(range(first, last + 1))
        return keys[start - first * CHUNK:stop - first * CHUNK]

    def _chunks(self, numbers: range) -> list[str]:
        ids = [f"{self.search_id}.{n}" for n in numbers]
        found = {doc["_id"]: doc["keys"] for doc in self.collection.find({"_id": {"$in": ids}})}
        return [key for chunk_id in ids for key in found.get(chunk_id, ())]
