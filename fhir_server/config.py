"""Settings read from the environment, once, into one immutable object.

Every knob a deployment can turn lives here so that the README's configuration table and the
code cannot drift apart: `Settings.describe()` is what the README table is written from.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path


def _env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return value if value not in (None, "") else default


def _choice(name: str, allowed: tuple[str, ...], default: str) -> str:
    value = _env(name, default)
    if value not in allowed:
        raise SystemExit(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
    return value


def _int(name: str, default: int) -> int:
    raw = _env(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise SystemExit(f"{name} must be an integer, got {raw!r}") from None


def _flag(name: str, default: bool) -> bool:
    value = _env(name)
    if value is None:
        return default
    if value.lower() in ("1", "true", "yes", "on"):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    raise SystemExit(f"{name} must be on or off (true/false), got {value!r}")


def _setting(env: str, default, doc: str, shown: str | None = None):
    metadata = {"env": env, "doc": doc}
    if shown is not None:
        metadata["shown"] = shown
    return field(default=default, metadata=metadata)


@dataclass(frozen=True)
class Settings:
    mongodb_uri: str | None = _setting(
        "FHIR_MONGODB_URI", None, "MongoDB URI; unset starts the embedded database")
    database: str = _setting("FHIR_MONGODB_DATABASE", "fhir", "Database name")
    data_dir: Path = _setting("FHIR_DATA_DIR", Path("fhir-data"), "Where the embedded database keeps its files")
    package_cache: Path = _setting(
        "FHIR_PACKAGE_CACHE", Path.home() / ".fhir" / "packages",
        "FHIR package cache (the layout other FHIR tools use)", shown="~/.fhir/packages")
    packages: str = _setting(
        "FHIR_PACKAGES", "", "FHIR packages to load at start, comma-separated: NAME@VERSION or a .tgz/folder path",
        shown="(none)")
    package_registry: str = _setting(
        "FHIR_PACKAGE_REGISTRY", "https://packages.fhir.org", "FHIR package registry used by `packages install`")
    base_url: str | None = _setting(
        "FHIR_BASE_URL", None,
        "Public base URL (e.g. https://fhir.example.org/fhir); default: taken from each request")
    required_profiles: str = _setting(
        "FHIR_REQUIRED_PROFILES", "",
        "Profiles every resource of a type must meet: Type=url, comma-separated (a type may repeat)",
        shown="(none)")
    unknown_profile: str = _setting(
        "FHIR_UNKNOWN_PROFILE", "warning", "A declared meta.profile the server does not know: warning or error")
    max_body_bytes: int = _setting(
        "FHIR_MAX_BODY_BYTES", 16 * 1024 * 1024, "Largest request body accepted (413 beyond)")
    max_bundle_entries: int = _setting(
        "FHIR_MAX_BUNDLE_ENTRIES", 10000, "Most entries a batch or transaction Bundle may hold (413 beyond)")
    default_count: int = _setting("FHIR_DEFAULT_COUNT", 50, "Page size when `_count` is not given")
    max_count: int = _setting("FHIR_MAX_COUNT", 1000, "Largest page size a client may ask for")
    search_ttl_s: int = _setting(
        "FHIR_SEARCH_TTL_S", 3600, "How long the pages of a search stay available (seconds)")
    db_timeout_ms: int = _setting(
        "FHIR_DB_TIMEOUT_MS", 3000, "How long a request waits for the database before answering 503")
    embedded_db_port: int = _setting(
        "FHIR_EMBEDDED_DB_PORT", 0, "Port of the embedded database (0: any free port)")
    auth_issuer: str | None = _setting(
        "FHIR_AUTH_ISSUER", None,
        "OpenID Connect issuer whose JWT access tokens are accepted (discovery, then its jwks_uri); unset: open "
        "mode, no authentication, loopback only")
    auth_audience: str | None = _setting(
        "FHIR_AUTH_AUDIENCE", None, "The `aud` an access token must carry (default: FHIR_BASE_URL)")
    auth_identifier_claim: str | None = _setting(
        "FHIR_AUTH_IDENTIFIER_CLAIM", None,
        "A claim holding the user's professional identifier (e.g. idNatPs from Pro Santé Connect), for tokens "
        "without fhirUser: the user is the Practitioner with that identifier")
    auth_identifier_system: str = _setting(
        "FHIR_AUTH_IDENTIFIER_SYSTEM", "urn:oid:1.2.250.1.71.4.2.1",
        "The identifier system of that claim's values (default: idNatPs, national professional id)")
    access_rule: str = _setting(
        "FHIR_ACCESS_RULE", "care-team",
        "What a professional's user/ token reaches: care-team (the équipe de soins rule, docs/SECURITY.md) or "
        "scopes (whatever its scopes allow, for servers behind one EHR)")
    audit: bool = _setting(
        "FHIR_AUDIT", True,
        "Record every access as an AuditEvent; false is refused with an issuer (open mode only: benchmarks)")
    request_timeout_s: int = _setting(
        "FHIR_REQUEST_TIMEOUT_S", 30,
        "Time budget of one request (seconds): past it the work stops, its database operations too, and the "
        "answer is 408")
    max_heavy_requests: int = _setting(
        "FHIR_MAX_HEAVY_REQUESTS", 4,
        "Searches, histories, bundles and operations one worker runs at once; more wait their turn (within their "
        "time budget), so reads and single writes never queue behind them")
    max_form_bytes: int = _setting(
        "FHIR_MAX_FORM_BYTES", 1024 * 1024, "Largest form body of a POST _search (413 beyond)")
    max_response_bytes: int = _setting(
        "FHIR_MAX_RESPONSE_BYTES", 32 * 1024 * 1024,
        "Largest Bundle a search page, batch or transaction may answer (a search page is cut short and "
        "continued by its next link; 422 for one entry past it, or a batch: ask for fewer entries)")
    max_patch_operations: int = _setting(
        "FHIR_MAX_PATCH_OPERATIONS", 1000, "Most operations one PATCH may hold (413 beyond)")
    max_sort_keys: int = _setting("FHIR_MAX_SORT_KEYS", 10, "Most keys one `_sort` may name (422 beyond)")
    max_filter_terms: int = _setting(
        "FHIR_MAX_FILTER_TERMS", 50, "Most comparisons one `_filter` may hold (422 beyond)")
    max_included: int = _setting(
        "FHIR_MAX_INCLUDED", 1000,
        "Most resources `_include`/`_revinclude` may add to one page (422 beyond: use a smaller `_count`)")
    max_batch_searches: int = _setting(
        "FHIR_MAX_BATCH_SEARCHES", 200, "Most search entries one batch or transaction may hold (413 beyond)")
    allowed_hosts: str = _setting(
        "FHIR_ALLOWED_HOSTS", "",
        "Host header values accepted when FHIR_BASE_URL is unset, comma-separated (400 for others); loopback "
        "names and the host `serve` binds are always accepted", shown="(none)")
    cors_origins: str = _setting(
        "FHIR_CORS_ORIGINS", "",
        "Web origins allowed to call the API from a browser (CORS), comma-separated; unset: none", shown="(none)")
    referential_integrity: bool = _setting(
        "FHIR_REFERENTIAL_INTEGRITY", True,
        "Refuse a write whose local reference resolves to nothing (422) and the delete of a resource others "
        "reference (409); off to load corpora with dangling references")
    search_parameter_override: bool = _setting(
        "FHIR_SEARCH_PARAMETER_OVERRIDE", False,
        "Let a SearchParameter written through the API replace a built-in one (logged); off: refused")
    max_package_bytes: int = _setting(
        "FHIR_MAX_PACKAGE_BYTES", 512 * 1024 * 1024, "Largest unpacked size of a FHIR package installed")
    max_package_files: int = _setting(
        "FHIR_MAX_PACKAGE_FILES", 20000, "Most files a FHIR package installed may hold")
    api_docs: bool = _setting(
        "FHIR_API_DOCS", False,
        "Serve the OpenAPI page at /fhir/_docs (it loads Swagger UI from a public CDN: off by default)")
    subscription_allow_private: bool | None = _setting(
        "FHIR_SUBSCRIPTION_ALLOW_PRIVATE", None,
        "Let a Subscription's endpoint be a loopback, private, link-local or cloud-metadata address (SSRF guard "
        "off); unset: on in open mode (loopback), off with an issuer")
    subscription_max_attempts: int = _setting(
        "FHIR_SUBSCRIPTION_MAX_ATTEMPTS", 10,
        "Attempts to deliver one notification before its Subscription goes to status error")
    subscription_retry_ms: int = _setting(
        "FHIR_SUBSCRIPTION_RETRY_MS", 1000,
        "Wait before the second attempt to deliver a notification (milliseconds); doubled after each failure, "
        "at most 5 minutes")
    subscription_timeout_s: int = _setting(
        "FHIR_SUBSCRIPTION_TIMEOUT_S", 10, "How long one notification POST may take before it counts as failed")
    embedded_test_commands: bool = _setting(
        "FHIR_EMBEDDED_TEST_COMMANDS", False,
        "Start the embedded database with test commands (fault injection); never in production")

    @classmethod
    def from_env(cls) -> Settings:
        default = cls()
        return cls(
            mongodb_uri=_env("FHIR_MONGODB_URI"),
            database=_env("FHIR_MONGODB_DATABASE", default.database),
            data_dir=Path(_env("FHIR_DATA_DIR", str(default.data_dir))),
            package_cache=Path(_env("FHIR_PACKAGE_CACHE", str(default.package_cache))).expanduser(),
            packages=_env("FHIR_PACKAGES", "") or "",
            package_registry=_env("FHIR_PACKAGE_REGISTRY", default.package_registry).rstrip("/"),
            base_url=(_env("FHIR_BASE_URL") or "").rstrip("/") or None,
            required_profiles=_env("FHIR_REQUIRED_PROFILES", "") or "",
            unknown_profile=_choice("FHIR_UNKNOWN_PROFILE", ("warning", "error"), default.unknown_profile),
            max_body_bytes=_int("FHIR_MAX_BODY_BYTES", default.max_body_bytes),
            max_bundle_entries=_int("FHIR_MAX_BUNDLE_ENTRIES", default.max_bundle_entries),
            default_count=_int("FHIR_DEFAULT_COUNT", default.default_count),
            max_count=_int("FHIR_MAX_COUNT", default.max_count),
            search_ttl_s=_int("FHIR_SEARCH_TTL_S", default.search_ttl_s),
            db_timeout_ms=_int("FHIR_DB_TIMEOUT_MS", default.db_timeout_ms),
            embedded_db_port=_int("FHIR_EMBEDDED_DB_PORT", default.embedded_db_port),
            auth_issuer=(_env("FHIR_AUTH_ISSUER") or "").rstrip("/") or None,
            auth_audience=_env("FHIR_AUTH_AUDIENCE") or ((_env("FHIR_BASE_URL") or "").rstrip("/") or None),
            auth_identifier_claim=_env("FHIR_AUTH_IDENTIFIER_CLAIM"),
            auth_identifier_system=_env("FHIR_AUTH_IDENTIFIER_SYSTEM", default.auth_identifier_system),
            access_rule=_choice("FHIR_ACCESS_RULE", ("care-team", "scopes"), default.access_rule),
            audit=_env("FHIR_AUDIT", "true") not in ("0", "false", "no", "off"),
            request_timeout_s=_int("FHIR_REQUEST_TIMEOUT_S", default.request_timeout_s),
            max_heavy_requests=_int("FHIR_MAX_HEAVY_REQUESTS", default.max_heavy_requests),
            max_form_bytes=_int("FHIR_MAX_FORM_BYTES", default.max_form_bytes),
            max_response_bytes=_int("FHIR_MAX_RESPONSE_BYTES", default.max_response_bytes),
            max_patch_operations=_int("FHIR_MAX_PATCH_OPERATIONS", default.max_patch_operations),
            max_sort_keys=_int("FHIR_MAX_SORT_KEYS", default.max_sort_keys),
            max_filter_terms=_int("FHIR_MAX_FILTER_TERMS", default.max_filter_terms),
            max_included=_int("FHIR_MAX_INCLUDED", default.max_included),
            max_batch_searches=_int("FHIR_MAX_BATCH_SEARCHES", default.max_batch_searches),
            allowed_hosts=_env("FHIR_ALLOWED_HOSTS", "") or "",
            cors_origins=_env("FHIR_CORS_ORIGINS", "") or "",
            referential_integrity=_flag("FHIR_REFERENTIAL_INTEGRITY", default.referential_integrity),
            search_parameter_override=_flag("FHIR_SEARCH_PARAMETER_OVERRIDE", default.search_parameter_override),
            max_package_bytes=_int("FHIR_MAX_PACKAGE_BYTES", default.max_package_bytes),
            max_package_files=_int("FHIR_MAX_PACKAGE_FILES", default.max_package_files),
            api_docs=_flag("FHIR_API_DOCS", default.api_docs),
            subscription_allow_private=None if _env("FHIR_SUBSCRIPTION_ALLOW_PRIVATE") is None
            else _flag("FHIR_SUBSCRIPTION_ALLOW_PRIVATE", False),
            subscription_max_attempts=_int("FHIR_SUBSCRIPTION_MAX_ATTEMPTS", default.subscription_max_attempts),
            subscription_retry_ms=_int("FHIR_SUBSCRIPTION_RETRY_MS", default.subscription_retry_ms),
            subscription_timeout_s=_int("FHIR_SUBSCRIPTION_TIMEOUT_S", default.subscription_timeout_s),
            embedded_test_commands=_env("FHIR_EMBEDDED_TEST_COMMANDS", "0") in ("1", "true", "yes"),
        )

    def with_database(self, uri: str) -> Settings:
        """These settings on another database (the embedded one, once started)."""
        return replace(self, mongodb_uri=uri)

    def environment(self) -> dict[str, str]:
        """The settings as the environment variables that `from_env` reads back: how `serve`
        hands them to uvicorn's worker processes (the embedded database's URI included)."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None:
                out[f.metadata["env"]] = ("true" if value else "false") if isinstance(value, bool) else str(value)
        return out

    @classmethod
    def describe(cls) -> list[tuple[str, str, str]]:
        """(variable, default, meaning) for each setting: the README's configuration table."""
        default = cls()
        rows = []
        for f in fields(cls):
            value = f.metadata.get("shown", getattr(default, f.name))
            rows.append((f.metadata["env"], "(unset)" if value is None else str(value).lower()
                         if isinstance(value, bool) else str(value), f.metadata["doc"]))
        return rows
