"""The running server's parts, wired once: settings, definitions, database, store, validator.

Interactions receive this object; nothing else holds global state, so tests and tools (the
loader, benchmarks) can build one against any database.
"""

from __future__ import annotations

import logging
from functools import cached_property
from pathlib import Path

from fhir_server import jsonio
from fhir_server.config import Settings
from fhir_server.definitions.loading import load_definitions, parse_packages_setting
from fhir_server.definitions.packages import PackageCache
from fhir_server.definitions.registry import Definitions
from fhir_server.storage.database import Database
from fhir_server.storage.store import ResourceStore

log = logging.getLogger(__name__)
GUIDE = Path(__file__).resolve().parent.parent / "profiles"


class FhirServer:
    def __init__(self, settings: Settings, definitions: Definitions, database: Database):
        self.settings = settings
        self.definitions = definitions
        self.database = database
        self.store = ResourceStore(database)

    @classmethod
    def open(cls, settings: Settings, mongodb_uri: str) -> FhirServer:
        cache = PackageCache(settings.package_cache, settings.package_registry)
        specs = parse_packages_setting(settings.packages)
        if GUIDE.is_dir():  # this project's own implementation guide, always on
            specs.append(str(GUIDE))
        definitions = load_definitions(cache, specs)
        database = Database(mongodb_uri, settings.database, settings.db_timeout_ms)
        return cls(settings, definitions, database)

    @cached_property
    def validator(self):
        from fhir_server.validation.ins import InsCheck
        from fhir_server.validation.structural import StructuralValidator

        return StructuralValidator(self.definitions, resource_checks=[InsCheck()])

    @cached_property
    def terminology(self):
        """ValueSets and CodeSystems of the packages, then those stored through the API."""
        from fhir_server.terminology.stored import for_server

        return for_server(self)

    @cached_property
    def profile_validator(self):
        from fhir_server.validation.profile import ProfileValidator

        return ProfileValidator(self.definitions, self.terminology)

    @cached_property
    def search_parameters(self):
        from fhir_server.search import custom
        from fhir_server.search.parameters import SearchParameters

        params = SearchParameters(self.definitions)
        self.__dict__["search_parameters"] = params  # custom.load_stored registers into it
        try:
            count = custom.load_stored(self)
            if count:
                log.info("%d SearchParameter resources loaded from the database", count)
        except Exception as exc:  # noqa: BLE001 - the database may come later; the watcher catches up
            log.warning("stored SearchParameters not loaded: %s", exc)
        return params

    def transact(self, work, guards=()):
        """Commit a unit of work (see ResourceStore.transact), then let what depends on the
        written resources follow (SearchParameters take effect at once)."""
        from fhir_server.search import custom

        versions = self.store.transact(work, guards)
        if any(v.type in ("ValueSet", "CodeSystem") for v in versions) and "terminology" in self.__dict__:
            self.terminology.find_stored.forget()
            self.terminology.clear()
        for version in versions:
            if version.type == custom.TYPE:
                previous = None if version.json else self.store.vread(version.type, version.id, version.version - 1)
                url = jsonio.loads(previous.json).get("url") if previous and previous.json else None
                custom.apply(self, jsonio.loads(version.json) if version.json else None, url)
        return versions

    def prepare_type(self, type_: str) -> None:
        """Indexes for the search values of a type, made before its first write."""
        from fhir_server.search.index import INDEXED_FIELDS

        self.store.ensure_type_indexes(type_, INDEXED_FIELDS)

    def close(self) -> None:
        self.database.close()
