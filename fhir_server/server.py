"""The running server's parts, wired once: settings, definitions, database, store, validators,
terminology, search parameters, the domain's write rules, and the router.

Interactions and operations receive this object; nothing else holds global state, so tests and
tools (the loader, benchmarks) can build one against any database. `start`/`stop` own what a
running server keeps going besides requests (indexes, upgrades, watchers, warm-ups), whatever
carries the requests (HTTP, the loader).
"""

from __future__ import annotations

import logging
import threading
from functools import cached_property
from pathlib import Path

from fhir_server import budget, jsonio, routing
from fhir_server.config import Settings
from fhir_server.coordination import rules as coordination_rules
from fhir_server.definitions.loading import load_definitions, parse_packages_setting
from fhir_server.definitions.packages import PackageCache
from fhir_server.definitions.registry import Definitions
from fhir_server.documents.provide import register as register_documents
from fhir_server.errors import FhirError, Issue
from fhir_server.interactions import integrity, provenance
from fhir_server.interactions.access import check_writes
from fhir_server.interactions.audit import consequence
from fhir_server.interactions.care_team import Circles, changes_circles
from fhir_server.interactions.request import FhirRequest, FhirResponse
from fhir_server.interactions.resource import new_version
from fhir_server.interactions.rules import WriteRules
from fhir_server.notifications import subscriptions
from fhir_server.notifications.service import Notifier
from fhir_server.operations import protocol_plans, reindex
from fhir_server.search import custom
from fhir_server.search.execute import find
from fhir_server.search.parameters import SearchParameters
from fhir_server.search.params.token import keys_term
from fhir_server.search.reach import EVERYTHING
from fhir_server.security.audit_events import Access
from fhir_server.security.audit_trail import AuditTrail
from fhir_server.security.identity import Identity
from fhir_server.security.local_issuer import LocalVerifier
from fhir_server.security.local_issuer import audience as local_audience
from fhir_server.security.tokens import InvalidToken, ProviderUnavailable, TokenVerifier
from fhir_server.storage.database import Database
from fhir_server.storage.notifications import Outbox
from fhir_server.storage.store import ResourceStore, Version, Write, now
from fhir_server.terminology import StoredFinder, Terminology, ucum
from fhir_server.validation.ins import InsCheck
from fhir_server.validation.profile import ProfileValidator
from fhir_server.validation.structural import StructuralValidator

log = logging.getLogger(__name__)
GUIDE = Path(__file__).resolve().parent.parent / "profiles"


class FhirServer:
    def __init__(self, settings: Settings, definitions: Definitions, database: Database):
        self.settings = settings
        self.definitions = definitions
        self.database = database
        self.store = ResourceStore(database)
        self.write_rules = WriteRules()
        coordination_rules.register(self.write_rules)
        register_documents(self.write_rules)
        protocol_plans.register(self.write_rules)
        subscriptions.register(self.write_rules)
        self.outbox = Outbox(database)
        self._watcher: custom.Watcher | None = None
        self._notifier: Notifier | None = None

    @classmethod
    def open(cls, settings: Settings, mongodb_uri: str | None = None) -> FhirServer:
        """A server on `mongodb_uri` (default: FHIR_MONGODB_URI) with the configured packages."""
        uri = mongodb_uri or settings.mongodb_uri
        if not uri:
            raise RuntimeError("no database: set FHIR_MONGODB_URI or start with `fhir-server serve`")
        cache = PackageCache.from_settings(settings)  # with FHIR_MAX_PACKAGE_BYTES/FILES
        specs = parse_packages_setting(settings.packages)
        if GUIDE.is_dir():  # this project's own implementation guide, always on
            specs.append(str(GUIDE))
        definitions = load_definitions(cache, specs)
        database = Database(uri, settings.database, settings.db_timeout_ms)
        return cls(settings, definitions, database)

    # -- life cycle ----------------------------------------------------------------------------
    def start(self) -> None:
        """Before the first request: indexes, SearchParameters, a pending upgrade of the stored
        search values, the watcher that shares SearchParameters between workers, warm-ups.
        A database that is not there yet is not fatal: writes make their indexes, and the next
        start checks the format again."""
        try:
            self.database.ensure_indexes()
        except FhirError as exc:
            log.warning("indexes not checked at start: %s", exc)
        self.search_parameters  # noqa: B018 - loads the stored SearchParameters now, not in a request
        self.audit  # noqa: B018 - a setting it refuses stops the start, not the first request
        try:  # search values stored by an older version are recomputed in the background
            reindex.upgrade(self)
        except FhirError as exc:
            log.warning("format of the stored search values not checked at start: %s", exc)
        # the UCUM unit table takes most of a second to build: not in the first request's time
        threading.Thread(target=ucum.converter, args=("g",), name="ucum-warm-up", daemon=True).start()
        self._watcher = custom.Watcher(self)
        self._watcher.start()
        self._notifier = Notifier(self)  # Subscriptions: history → outbox → endpoints
        self._notifier.start()

    def stop(self) -> None:
        if self._watcher is not None:
            self._watcher.stop()
        if self._notifier is not None:
            self._notifier.stop()
        self.audit.stop()  # what is queued is written before the database closes
        self.close()

    def close(self) -> None:
        self.database.close()

    # -- parts ---------------------------------------------------------------------------------
    @cached_property
    def validator(self) -> StructuralValidator:
        return StructuralValidator(self.definitions, resource_checks=[InsCheck()])

    @cached_property
    def terminology(self) -> Terminology:
        """ValueSets and CodeSystems of the packages, then those stored through the API."""
        return Terminology(self.definitions, StoredFinder(self._stored_by_url))

    def _stored_by_url(self, resource_type: str, url: str) -> list[bytes]:
        return [r.json for r in find(self, resource_type, [keys_term("url", {url})], reach=EVERYTHING, json=True)
                if r.json]

    @cached_property
    def profile_validator(self) -> ProfileValidator:
        return ProfileValidator(self.definitions, self.terminology)

    @cached_property
    def search_parameters(self) -> SearchParameters:
        params = SearchParameters(self.definitions)
        self.__dict__["search_parameters"] = params  # custom.load_stored registers into it
        try:
            count = custom.load_stored(self)
            if count:
                log.info("%d SearchParameter resources loaded from the database", count)
        except FhirError as exc:  # the database may come later; the watcher catches up
            log.warning("stored SearchParameters not loaded: %s", exc)
        return params

    @cached_property
    def circles(self) -> Circles:
        """Who each professional cares for (the équipe de soins rule), cached per user."""
        return Circles(self)

    # -- the audit trail ----------------------------------------------------------------------------
    @cached_property
    def audit(self) -> AuditTrail:
        """Every access, recorded as an AuditEvent by a writer thread (security/audit_trail.py)."""
        if not self.settings.audit and self.settings.auth_issuer:
            raise RuntimeError("FHIR_AUDIT=false is for open mode only: with an issuer every access is audited")
        observer: dict = {"display": "fhir-server"}
        if self.settings.base_url:
            observer["identifier"] = {"system": "urn:ietf:rfc:3986", "value": self.settings.base_url}
        return AuditTrail(self._store_audit_events, observer, enabled=self.settings.audit)

    def _store_audit_events(self, events: list[dict]) -> None:
        base_url = self.settings.base_url
        ts = now()
        self.store.append([new_version(self, event, event["id"], 1, None, ts, "POST", base_url)
                           for event in events])

    def audit_refusal(self, method: str, url: str, status: int, reason: str, request_id: str | None,
                      address: str | None, identity: Identity | None = None) -> None:
        """A request refused before it reached the router: 401, or a body that cannot be read."""
        self.audit.record(Access(recorded=now(), identity=identity, address=address, method=method,
                                 interaction=None, status=status, path=url, request_id=request_id, error=reason))

    # -- who is asking --------------------------------------------------------------------------
    @cached_property
    def token_verifier(self) -> TokenVerifier | None:
        """None in open mode (no issuer configured)."""
        if not self.settings.auth_issuer:
            return None
        if not self.settings.auth_audience:
            raise RuntimeError("FHIR_AUTH_ISSUER is set but no audience: set FHIR_AUTH_AUDIENCE (or FHIR_BASE_URL)")
        return TokenVerifier(self.settings.auth_issuer, self.settings.auth_audience)

    @cached_property
    def local_verifier(self) -> LocalVerifier:
        """Open mode only: the tokens `fhir-server token` makes (security/local_issuer.py)."""
        return LocalVerifier(self.settings.data_dir, local_audience(self.settings))

    def authenticate(self, authorization: str | None, base_url: str, address: str | None) -> Identity:
        """The identity of a request from its Authorization header: 401 for a missing or bad
        token, 503 when the OpenID provider cannot be reached to check it. In open mode a
        request without a bearer token is anonymous, and one with a bearer token carries the
        identity of a token of the local issuer, checked like any other."""
        verifier: TokenVerifier | LocalVerifier | None = self.token_verifier
        scheme, _, token = (authorization or "").strip().partition(" ")
        if verifier is None:
            if scheme.lower() != "bearer":
                return Identity.anonymous(address)
            verifier = self.local_verifier
        if not authorization:
            raise unauthorized("no access token: send Authorization: Bearer <token>")
        if scheme.lower() != "bearer" or not token.strip():
            raise unauthorized("the Authorization header must be: Bearer <token>")
        try:
            claims = verifier.verify(token.strip())
        except InvalidToken as exc:
            raise unauthorized(str(exc)) from None
        except ProviderUnavailable as exc:
            log.warning("access token not checked: %s", exc)
            raise FhirError(503, Issue("error", "transient", "the identity provider cannot be reached to check the "
                                       "access token; retry shortly"), headers={"Retry-After": "5"}) from None
        identity = Identity.from_claims(claims, self.settings.base_url or base_url, address)
        if identity.fhir_user is None and self.settings.auth_identifier_claim:
            identity = self._user_by_identifier(identity, claims.get(self.settings.auth_identifier_claim))
        return identity

    def _user_by_identifier(self, identity: Identity, value) -> Identity:
        """For issuers that name the professional by a national identifier (Pro Santé Connect's
        idNatPs) instead of `fhirUser`: the user is the one Practitioner with that identifier."""
        if not isinstance(value, str) or not value:
            return identity
        key = f"{self.settings.auth_identifier_system}|{value}"
        found = find(self, "Practitioner", [keys_term("identifier", {key})], reach=EVERYTHING)
        if len(found) == 1:
            return identity.with_user(f"Practitioner/{found[0].id}")
        if len(found) > 1:
            log.warning("%d Practitioners have the identifier %s: the user stays unnamed", len(found), value)
        return identity

    # -- requests and writes -------------------------------------------------------------------
    def dispatch(self, req: FhirRequest) -> FhirResponse:
        """Route one request (from HTTP or a bundle entry) to its interaction or operation."""
        return routing.dispatch(self, req)

    def transact(self, work, guards=(), *, req: FhirRequest) -> list[Version]:
        """Commit a unit of work (see ResourceStore.transact) with the Provenance of what `req`
        writes, once every write, and every write the unit rules add, is found within the
        request's reach (403 otherwise, before the rules look at them), then let what depends on
        the written resources follow (SearchParameters take effect at once).
        References are checked once every write is staged (interactions/integrity.py). A write a
        unit rule adds (a replaced document superseded) is audited as the server's consequence of
        `req`, under its user."""
        consequences: list[Write] = []

        def checked(session):
            writes = list(work(session))
            check_writes(self, req, writes, session)  # out of reach: 403 before any rule speaks
            consequences[:] = self.write_rules.check_unit(self, req, writes, session)
            if consequences:
                writes += consequences
                check_writes(self, req, writes, session)  # again: patients the unit creates count
            integrity.check(self, req, writes, session)
            return writes

        versions = self.store.transact(provenance.attach(self, req, checked), guards)
        with budget.unbounded():  # committed: what follows must happen, whatever the time
            for write in consequences:
                self.audit.record(consequence(req, write))
            self._after_commit(versions)
        return versions

    def _after_commit(self, versions: list[Version]) -> None:
        if any(changes_circles(v) for v in versions):
            self.circles.changed()
        if any(v.type in ("ValueSet", "CodeSystem") for v in versions) and "terminology" in self.__dict__:
            self.terminology.find_stored.forget()
            self.terminology.clear()
        for version in versions:
            if version.type == custom.TYPE:
                previous = None if version.json else self.store.vread(version.type, version.id, version.version - 1)
                url = jsonio.loads(previous.json).get("url") if previous and previous.json else None
                custom.apply(self, jsonio.loads(version.json) if version.json else None, url)

    def prepare_type(self, type_: str) -> None:
        """The index of a type's search keys, made before its first write."""
        self.store.ensure_type_indexes(type_)


def unauthorized(reason: str) -> FhirError:
    """401 with the RFC 6750 challenge."""
    quoted = "".join(c if " " <= c <= "~" and c not in '"\\' else "'" if c == '"' else "?" for c in reason)[:300]
    return FhirError(401, Issue("error", "login", reason),
                     headers={"WWW-Authenticate": f'Bearer error="invalid_token", error_description="{quoted}"'})
