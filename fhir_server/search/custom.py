"""SearchParameter resources written through the API: checked, registered, shared by workers.

A stored SearchParameter takes effect for new writes as soon as it is committed (in the worker
that wrote it at once, in the others through a change stream on the SearchParameter
collection); existing data follows with `$reindex`.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

import fhirpathpy
from fhirpathpy.models import models

from fhir_server import jsonio
from fhir_server.errors import FhirError, Issue

if TYPE_CHECKING:
    from fhir_server.server import FhirServer

TYPE = "SearchParameter"


def check(server: FhirServer, resource: dict[str, Any]) -> None:
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


def apply(server: FhirServer, resource: dict[str, Any] | None, url: str | None) -> None:
    """Register (or, for a deletion or a retired one, remove) a stored SearchParameter."""
    params = server.search_parameters
    if resource is None or resource.get("status") == "retired":
        if url:
            params.remove(url)
        return
    params.add(resource)


def load_stored(server: FhirServer) -> int:
    records = server.store.find(TYPE, None, json=True)
    for record in records:
        apply(server, jsonio.loads(record.json), None)
    return len(records)


class Watcher:
    """Keeps this worker's registry in step with SearchParameters written by other workers."""

    def __init__(self, server: FhirServer):
        self.server = server
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.server.store.watch, args=(TYPE, self._on_change, self.stopping),
                                       name="searchparameter-watch", daemon=True)
        self._urls: dict[str, str] = {}  # id → url, to unregister on delete

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopping.set()

    def _on_change(self, id_: str, json: bytes | None) -> None:
        if json:
            resource = jsonio.loads(json)
            self._urls[id_] = resource.get("url", "")
            apply(self.server, resource, None)
        elif id_ in self._urls:
            apply(self.server, None, self._urls.pop(id_))
