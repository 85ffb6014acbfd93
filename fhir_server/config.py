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
