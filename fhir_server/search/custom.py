"""SearchParameter resources written through the API: checked, registered, shared by workers.

A stored SearchParameter takes effect for new writes as soon as it is committed (in the worker
that wrote it at once, in the others through a change stream on the SearchParameter
collection); existing data follows with `$reindex`.

One that would replace a built-in parameter (the same code on the same base as a definition of
the loaded packages, or the same url, with another type or expression) changes what every
client's searches and conditional writes mean: it is refused (422) unless the administrator set
FHIR_SEARCH_PARAMETER_OVERRIDE=true, and then logged. Deleting or retiring it brings the
built-in back, in every worker.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any

import fhirpathpy
from fhirpathpy.models import models

from fhir_server import jsonio
from fhir_server.errors import FhirError, Issue
from fhir_server.search.parameters import SearchParam

if TYPE_CHECKING:
    from fhir_server.server import FhirServer

log = logging.getLogger(__name__)
TYPE = "SearchParameter"
SWITCH = "FHIR_SEARCH_PARAMETER_OVERRIDE"
# What decides the values indexed and how a search compares them: a definition equal on these is
# the built-in again (a copy of the specification's parameters loaded through the API).
_MEANING = ("type", "expression", "target", "component")


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
    replaced = overrides(server, resource)
    if replaced and not server.settings.search_parameter_override:
        raise FhirError(422, [Issue("error", "business-rule",
                                    f"SearchParameter: {r} would be replaced, changing what every client's searches "
                                    f"and conditional writes on it mean. Give this parameter a code of its own "
                                    f"(e.g. 'x-{resource.get('code')}'), or have the administrator start the "
                                    f"server with {SWITCH}=true to allow replacing built-in parameters",
                                    ["SearchParameter.code"]) for r in replaced])


def overrides(server: FhirServer, resource: dict[str, Any]) -> list[str]:
    """The built-in parameters this one would replace (as text naming each), none when it is
    retired or means the same as the built-in."""
    if resource.get("status") == "retired" or not resource.get("code"):
        return []
    params = server.search_parameters
    found: dict[str, tuple[SearchParam, list[str]]] = {}
    for base in resource.get("base") or ():
        param = params.builtin(base, resource["code"])
        if param is not None:
            found.setdefault(param.url, (param, []))[1].append(base)
    same_url = params.builtin_by_url(_url_of(resource))
    if same_url is not None:
        found.setdefault(same_url.url, (same_url, list(same_url.base[:3])))
    return [f"the built-in search parameter {p.code!r} of {', '.join(bases)} ({p.url})"
            for p, bases in found.values() if not _same_meaning(p.resource or {}, resource)]


def _url_of(resource: dict[str, Any]) -> str:
    """The url the registry keys it by (`SearchParameters.add`)."""
    return resource.get("url") or f"urn:local:{resource.get('id')}"


def _same_meaning(builtin: dict[str, Any], resource: dict[str, Any]) -> bool:
    def meaning(sp: dict[str, Any]) -> tuple:
        return tuple(sorted(v) if k == "target" else v for k in _MEANING for v in [sp.get(k) or []])

    return meaning(builtin) == meaning(resource) and builtin.get("code") == resource.get("code")


def apply(server: FhirServer, resource: dict[str, Any] | None, url: str | None) -> None:
    """Register (or, for a deletion or a retired one, remove) a stored SearchParameter; one that
    replaces a built-in only with the switch on (it may have been stored by a server that had it)."""
    params = server.search_parameters
    id_ = (resource or {}).get("id")
    url = url or (params.stored_url(id_) if id_ else None)
    if resource is None or resource.get("status") == "retired":
        if url:
            _remove(server, url)
        return
    if url and url != _url_of(resource):  # the resource changed its url: the old one goes
        _remove(server, url)
    elif url and getattr(params.by_url(url), "resource", None) == resource:
        return  # already in force (the watcher also reports this worker's own writes)
    replaced = overrides(server, resource)
    if replaced and not server.settings.search_parameter_override:
        log.warning("SearchParameter/%s (%s) not applied: it would replace %s; %s is off", id_,
                    resource.get("url"), "; ".join(replaced), SWITCH)
        return
    params.add(resource)
    if replaced:
        log.warning("SearchParameter/%s (%s) replaces %s (%s=true); %s resources stored before keep the "
                    "built-in's values until POST [base]/$reindex", id_, resource.get("url"), "; ".join(replaced),
                    SWITCH, ", ".join(resource.get("base") or ()))


def _remove(server: FhirServer, url: str) -> None:
    params = server.search_parameters
    param = params.by_url(url)
    if param is None or params.builtin_by_url(param.url) is param:
        return  # not registered here (refused, retired) or a built-in: nothing to undo
    replaced = overrides(server, param.resource or {})
    params.remove(param.url)
    if replaced:
        log.warning("SearchParameter %s removed: %s is back; resources written while it was in force keep its "
                    "values until POST [base]/$reindex", param.url, "; ".join(replaced))


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

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopping.set()

    def _on_change(self, id_: str, json: bytes | None) -> None:
        """A deletion names the id only: the registry knows which url it registered for it,
        whether it saw the write or loaded it at start."""
        if json:
            apply(self.server, jsonio.loads(json), None)
        else:
            url = self.server.search_parameters.stored_url(id_)
            if url:
                apply(self.server, None, url)
