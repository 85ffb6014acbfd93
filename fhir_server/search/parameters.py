"""The SearchParameter registry: every SearchParameter of the loaded packages, by type and code."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any, Callable

import fhirpathpy
from fhirpathpy.models import models

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SearchParam:
    code: str
    type: str  # number | date | string | token | reference | composite | quantity | uri | special
    url: str
    expression: str | None
    targets: tuple[str, ...] = ()

    @property
    def field(self) -> str:
        """Where the index values of this parameter live in a stored document."""
        return f"ix.{self.code}"


class SearchParameters:
    def __init__(self, definitions):
        self._by_type: dict[str, dict[str, SearchParam]] = {}
        self._compiled: dict[str, Callable[[Any], list]] = {}
        self._lock = threading.Lock()
        for package, entry in definitions.entries("SearchParameter"):
            self.add(definitions.load_entry(package, entry))

    def add(self, sp: dict[str, Any]) -> None:
        if sp.get("status") == "retired":
            return
        param = SearchParam(code=sp["code"], type=sp["type"], url=sp["url"],
                            expression=sp.get("expression"), targets=tuple(sp.get("target") or ()))
        for base in sp.get("base") or ():
            self._by_type.setdefault(base, {}).setdefault(param.code, param)

    def get(self, resource_type: str, code: str) -> SearchParam | None:
        return (self._by_type.get(resource_type, {}).get(code)
                or self._by_type.get("DomainResource", {}).get(code)
                or self._by_type.get("Resource", {}).get(code))

    def for_type(self, resource_type: str) -> dict[str, SearchParam]:
        out: dict[str, SearchParam] = {}
        for base in ("Resource", "DomainResource", resource_type):
            out.update(self._by_type.get(base, {}))
        return out

    def evaluate(self, param: SearchParam, resource: dict[str, Any]) -> list[Any]:
        """The values the parameter's expression selects in the resource."""
        if not param.expression:
            return []
        with self._lock:
            fn = self._compiled.get(param.expression)
        if fn is None:
            fn = fhirpathpy.compile(param.expression, models["r4"])
            with self._lock:
                self._compiled[param.expression] = fn
        try:
            return fn(resource)
        except Exception as exc:  # fhirpathpy raises bare exceptions for unsupported functions
            log.debug("cannot evaluate %s: %s", param.expression, exc)
            return []
