"""ValueSets and CodeSystems written through the API, found by canonical URL.

The lookup itself (a search on `url`) is handed in by the server's wiring: terminology sits
below search and does not import it.

Answers (misses included: most code systems a write mentions are stored nowhere) are kept a few
seconds, so that validating a write does not cost a query per binding; a ValueSet or CodeSystem
written in this process clears them at once (`FhirServer.transact`), other workers see it when
their entry expires.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from fhir_server import jsonio

TTL_S = 10.0


class StoredFinder:
    """`find_stored(resource_type, "url" or "url|version")` over this server's current resources:
    with a version, the resource of that version; without, the most recently updated one."""

    def __init__(self, lookup: Callable[[str, str], Iterable[bytes]], ttl_s: float = TTL_S):
        self.lookup = lookup  # (resource type, url) → JSON of the live resources with that url
        self.ttl_s = ttl_s
        self._answers: dict[tuple[str, str], tuple[float, dict[str, Any] | None]] = {}
        self._lock = threading.Lock()

    def __call__(self, resource_type: str, canonical: str) -> dict[str, Any] | None:
        key = (resource_type, canonical)
        with self._lock:
            cached = self._answers.get(key)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        found = self._query(resource_type, canonical)
        with self._lock:
            if len(self._answers) > 10_000:
                self._answers.clear()
            self._answers[key] = (time.monotonic() + self.ttl_s, found)
        return found

    def forget(self) -> None:
        with self._lock:
            self._answers.clear()

    def _query(self, resource_type: str, canonical: str) -> dict[str, Any] | None:
        url, _, version = canonical.partition("|")
        found = [jsonio.loads(json) for json in self.lookup(resource_type, url)]
        found = [r for r in found if r.get("url") == url and (not version or r.get("version") == version)]
        if not found:
            return None
        return max(found, key=lambda r: (r.get("meta") or {}).get("lastUpdated") or "")
