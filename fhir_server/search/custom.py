"""SearchParameter resources written through the API: checked, registered, shared by workers.

A stored SearchParameter takes effect for new writes as soon as it is committed (in the worker
that wrote it at once, in the others through a change stream on the SearchParameter
collection); existing data follows with `$reindex`.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import fhirpathpy
from fhirpathpy.models import models
from pymongo.errors import PyMongoError

from fhir_server import jsonio
from fhir_server.errors import FhirError, Issue

log = logging.getLogger(__name__)
TYPE = "SearchParameter"


def check(server, resource: dict[str, Any]) -> None:
    """422 when a SearchParameter could not work here (unknown base, type, bad expression)."""
    problems = []
    for base in resource.get("base") or ():
        if not server.definitions.is_resource_type(base) and base not in ("Resource", "DomainResource"):
            problems.append(f"base {base!r} is not a resource type")
    if resource.get("type") not in ("number", "date", "string", "token", "reference", "composite",
                                    "quantity", "uri", "special"):
        problems.append(f"type {resource.get('type')!r} is not a search parameter type")
    expression = resource.get("expression")
    if expression and resource.get("type") != "special":
        try:
            fhirpathpy.compile(expression, models["r4"])
        except Exception as exc:  # noqa: BLE001 - fhirpathpy raises bare exceptions
            problems.append(f"expression {expression!r} is not valid FHIRPath: {exc}")
    elif resource.get("type") not in ("composite", "special") and resource.get("status") != "retired":
        problems.append("an expression is needed to index this parameter")
    if problems:
        raise FhirError(422, [Issue("error", "business-rule", f"SearchParameter: {p}", ["SearchParameter"])
                              for p in problems])


def apply(server, resource: dict[str, Any] | None, url: str | None) -> None:
    """Register (or, for a deletion or a retired one, remove) a stored SearchParameter."""
    params = server.search_parameters
    if resource is None or resource.get("status") == "retired":
        if url:
            params.remove(url)
        return
    params.add(resource)


def load_stored(server) -> int:
    count = 0
    for doc in server.store.db[TYPE].find({"del": False}, {"json": 1}):
        apply(server, jsonio.loads(doc["json"]), None)
        count += 1
    return count


class Watcher:
    """Keeps this worker's registry in step with SearchParameters written by other workers."""

    def __init__(self, server):
        self.server = server
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="searchparameter-watch", daemon=True)
        self._urls: dict[str, str] = {}  # id → url, to unregister on delete

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopping.set()

    def _run(self) -> None:
        delay = 1.0
        while not self.stopping.is_set():
            try:
                with self.server.store.db[TYPE].watch(full_document="updateLookup", max_await_time_ms=1000) as stream:
                    delay = 1.0
                    while not self.stopping.is_set():
                        change = stream.try_next()
                        if change is not None:
                            self._on_change(change)
            except PyMongoError as exc:
                log.debug("SearchParameter change stream: %s; retrying", exc)
                time.sleep(delay)
                delay = min(delay * 2, 30)

    def _on_change(self, change: dict[str, Any]) -> None:
        doc = change.get("fullDocument") or {}
        key = str((change.get("documentKey") or {}).get("_id"))
        if doc.get("json") and not doc.get("del"):
            resource = jsonio.loads(doc["json"])
            self._urls[key] = resource.get("url", "")
            apply(self.server, resource, None)
        elif key in self._urls:
            apply(self.server, None, self._urls.pop(key))
