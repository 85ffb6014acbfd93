"""The running server's parts, wired once: settings, definitions, database, store, validator.

Interactions receive this object; nothing else holds global state, so tests and tools (the
loader, benchmarks) can build one against any database.
"""

from __future__ import annotations

import logging
from functools import cached_property

from fhir_server.config import Settings
from fhir_server.definitions.packages import PackageCache
from fhir_server.definitions.registry import Definitions, ensure_core
from fhir_server.storage.database import Database
from fhir_server.storage.store import ResourceStore

log = logging.getLogger(__name__)


class FhirServer:
    def __init__(self, settings: Settings, definitions: Definitions, database: Database):
        self.settings = settings
        self.definitions = definitions
        self.database = database
        self.store = ResourceStore(database)

    @classmethod
    def open(cls, settings: Settings, mongodb_uri: str) -> "FhirServer":
        cache = PackageCache(settings.package_cache, settings.package_registry)
        definitions = Definitions([ensure_core(cache)])
        database = Database(mongodb_uri, settings.database, settings.db_timeout_ms)
        return cls(settings, definitions, database)

    @cached_property
    def validator(self):
        from fhir_server.validation.structural import StructuralValidator

        return StructuralValidator(self.definitions)

    @cached_property
    def search_parameters(self):
        from fhir_server.search.parameters import SearchParameters

        return SearchParameters(self.definitions)

    def prepare_type(self, type_: str) -> None:
        """Indexes for the search values of a type, made before its first write."""
        from fhir_server.search.index import INDEXED_FIELDS

        self.store.ensure_type_indexes(type_, INDEXED_FIELDS)

    def close(self) -> None:
        self.database.close()
