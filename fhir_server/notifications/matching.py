"""From the history to the outbox: every committed version, matched against the active
Subscriptions, becomes one notification per Subscription it concerns.

The dispatcher reads `_history` by lastUpdated from a position stored in the database, so a
restart resumes where the last pass ended. lastUpdated is stamped before a transaction commits,
so a version may appear after versions stamped later: every pass reads from a little before the
last one's newest version, and every few seconds the whole trailing window (longer than a unit
of work may take); a version seen twice makes the same notification id, kept once.

A version is notified to a Subscription when it was written after the Subscription's current
version (what was written before it is not news to it), matches its criteria, and is within
its owner's reach as of the pass (interactions/access.py `sees`): nothing is ever queued for a
token that may not read it. Deletions are not notified yet.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from fhir_server import jsonio
from fhir_server.errors import FhirError
from fhir_server.interactions.access import reach, sees
from fhir_server.interactions.request import FhirRequest
from fhir_server.notifications import criteria as criteria_
from fhir_server.notifications.subscriptions import owner_identity
from fhir_server.search.execute import find
from fhir_server.search.index import index_values
from fhir_server.search.params.token import keys_term
from fhir_server.search.reach import EVERYTHING, Reach
from fhir_server.search.terms import Term
from fhir_server.storage.store import Version, now

if TYPE_CHECKING:
    from fhir_server.server import FhirServer

log = logging.getLogger(__name__)

WINDOW = timedelta(seconds=30)  # longer than a unit of work may take (store.py's 15 s deadline)
OVERLAP = timedelta(seconds=1)  # read again on every pass
FULL_EVERY = 10  # passes between two reads of the whole window
BATCH = 200


@dataclass
class Active:
    """An active Subscription as one pass matches it."""

    id: str
    since: datetime
    criteria: criteria_.Criteria
    terms: list[Term]
    reach: Reach


class Matcher:
    """One per worker; several workers matching the same versions make the same notifications."""

    def __init__(self, server: FhirServer):
        self.server = server
        self.seen: dict[str, datetime] = {}  # versions of the window already matched
        self.passes = 0
        self._parsed: dict[tuple[str, int], criteria_.Criteria] = {}
        self._terms: dict[tuple[str, int], list[Term]] = {}  # of criteria without searches of their own
        self._owners: dict[tuple[str, int], dict[str, Any]] = {}

    def run_once(self) -> int:
        """One pass; returns how many notifications it queued."""
        subscriptions = self.active()
        if not subscriptions:
            return 0
        outbox = self.server.outbox
        position = outbox.position()
        oldest = min(s.since for s in subscriptions)
        full = self.passes % FULL_EVERY == 0
        self.passes += 1
        if full and position:
            outbox.purge(position - 2 * WINDOW)
        start = max(oldest, position - (WINDOW if full else OVERLAP)) if position else oldest
        start = min(start, now() - OVERLAP)
        keys = sorted(outbox.history_since(start), key=lambda row: row[1])
        self.seen = {k: ts for k, ts in self.seen.items() if ts >= now() - WINDOW - WINDOW}
        types = {s.criteria.type for s in subscriptions}  # versions of other types are never read
        fresh = [(k, ts) for k, ts in keys if k not in self.seen and k.split("/", 1)[0] in types]
        queued = 0
        for i in range(0, len(fresh), BATCH):
            chunk = fresh[i:i + BATCH]
            versions = sorted(outbox.versions([k for k, _ in chunk]), key=lambda v: (v.last_updated, v.key))
            rows = [row for version in versions for row in self.notifications(version, subscriptions)]
            queued += outbox.add(rows, now())
            self.seen.update(chunk)
            outbox.advance(max(ts for _, ts in chunk))
        return queued

    def active(self) -> list[Active]:
        """The active Subscriptions with an owner, their criteria built for this pass."""
        out = []
        records = find(self.server, "Subscription", [keys_term("status", {"active"})], reach=EVERYTHING, json=True)
        for record in records:
            try:
                out.append(self._active(record.id, record.version, record.last_updated, record.json))
            except FhirError as exc:  # a SearchParameter removed since, an owner gone: nothing is sent
                log.warning("Subscription/%s not matched: %s", record.id, exc)
        current = {(r.id, r.version) for r in records}
        for cache in (self._parsed, self._terms, self._owners):  # versions no longer current
            for key in [k for k in cache if k not in current]:
                del cache[key]
        return [a for a in out if a is not None]

    def _active(self, id_: str, version: int, since: datetime, json: bytes | None) -> Active | None:
        owner = self._owners.get((id_, version))
        if owner is None:  # written with the Subscription's version: read once per version
            owner = self._owners[id_, version] = self.server.outbox.owner(id_) or {}
        if not owner or json is None:
            return None  # no owner (written around the API): nobody whose reach could be checked
        parsed = self._parsed.get((id_, version))
        if parsed is None:
            parsed = self._parsed[id_, version] = criteria_.parse(self.server, jsonio.loads(json).get("criteria"))
        limit = reach(self.server, FhirRequest("GET", self.server.settings.base_url or "",
                                               identity=owner_identity(owner)), "r")
        built = self._terms.get((id_, version))
        if built is None:
            built = criteria_.terms(self.server, parsed, limit)
            if not parsed.searches:
                self._terms[id_, version] = built
        return Active(id_, since, parsed, built, limit)

    def notifications(self, version: Version, subscriptions: list[Active]) -> list[tuple[str, str, datetime]]:
        """(subscription, `Type/id/v`, lastUpdated) for each Subscription this version concerns."""
        concerned = [s for s in subscriptions if s.criteria.type == version.type and version.last_updated >= s.since]
        if not concerned or version.json is None:
            return []
        values = self._values(version.json)
        seen_as = Version(version.type, version.id, version.version, version.last_updated, False, version.json,
                          version.method, values)
        key = f"{version.key}/{version.version}"
        return [(s.id, key, version.last_updated) for s in concerned
                if criteria_.matches(s.terms, version.id, values) and sees(self.server, s.reach, seen_as)]

    def _values(self, json: bytes) -> dict[str, Any]:
        base = self.server.settings.base_url
        return index_values(self.server.search_parameters, jsonio.loads(json),
                            (base.rstrip("/"),) if base else ()).values
