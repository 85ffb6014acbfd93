"""The `fhir-server` command: serve, load data, make local tokens, and manage FHIR packages."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys

from fhir_server.config import Settings
from fhir_server.definitions.loading import check_specs, dependency_warnings, parse_packages_setting
from fhir_server.definitions.packages import PackageCache, PackageError, parse_spec

log = logging.getLogger("fhir_server")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fhir-server", description="FHIR R4 server for coordinated care")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="start the FHIR server (and the embedded database if needed)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    serve.add_argument("--insecure-no-auth", action="store_true",
                       help="serve without authentication on a non-loopback address (never with patient data)")

    load = sub.add_parser("load", help="load JSON resources, Bundles and NDJSON files or folders")
    load.add_argument("paths", nargs="+")
    load.add_argument("--url", help="a FHIR base URL to load into (default: this server's own database)")
    load.add_argument("--quiet", action="store_true", help="no progress line")

    directory = sub.add_parser("import-directory", help="import a CPTS member directory (CSV) as Practitioner, "
                                                         "PractitionerRole and Organization")
    directory.add_argument("csv")
    directory.add_argument("--url", help="a FHIR base URL to import into (default: this server's own database)")
    directory.add_argument("--mapping", help="column mapping (default: mappings/directory-csv.json)")

    demo = sub.add_parser("demo-data", help="write a consistent CPTS dataset as transaction bundles")
    demo.add_argument("--patients", type=int, default=100)
    demo.add_argument("--seed", type=int, default=1)
    demo.add_argument("--out", default="demo-data")
    demo.add_argument("--per-file", type=int, default=100, help="patients per bundle file")

    token = sub.add_parser("token", help="print an access token of the local issuer, for trying the access rules "
                                         "in open mode (no FHIR_AUTH_ISSUER)")
    token.add_argument("--user", required=True, help="who the token is for: Practitioner/ID, PractitionerRole/ID, "
                                                     "Patient/ID…")
    token.add_argument("--scope", default="user/*.cruds", help="SMART scopes, space-separated (default: %(default)s)")
    token.add_argument("--patient", help="the patient id `patient/` scopes are about")
    token.add_argument("--purpose", help="purpose of use, e.g. BTG (break the glass)")
    token.add_argument("--minutes", type=int, default=60, help="lifetime, 1 to 1440 (default: %(default)s)")

    packages = sub.add_parser("packages", help="install, list or remove FHIR packages in the cache")
    psub = packages.add_subparsers(dest="action", required=True)
    install = psub.add_parser("install", help="NAME@VERSION (registry, then npm) or a .tgz / folder path")
    install.add_argument("specs", nargs="+")
    install.add_argument("--dependencies", action="store_true",
                         help="also fetch the dependencies missing from the cache (registry, then npm)")
    psub.add_parser("list", help="packages in the cache")
    remove = psub.add_parser("remove", help="remove NAME@VERSION from the cache")
    remove.add_argument("specs", nargs="+")

    args = parser.parse_args(argv)
    logging.basicConfig(level=getattr(args, "log_level", "info").upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    settings = Settings.from_env()
    if args.command == "serve":
        return _serve(settings, args)
    if args.command == "load":
        return _load(settings, args)
    if args.command == "import-directory":
        return _import_directory(settings, args)
    if args.command == "demo-data":
        return _demo_data(args)
    if args.command == "token":
        return _token(settings, args)
    return _packages(settings, args)


def _with_sender(settings: Settings, url: str | None, work) -> int:
    """Run `work(send)` with a sender into `url`, or into this server's own database."""
    from fhir_server import loader

    if url:
        return work(loader.http_sender(url))
    from fhir_server.server import FhirServer
    from fhir_server.storage.embedded import EmbeddedDatabase

    embedded = None
    uri = settings.mongodb_uri
    if not uri:
        embedded = EmbeddedDatabase(settings.data_dir)
        try:
            embedded.start()
        except RuntimeError as exc:
            log.error("%s\nIf `fhir-server serve` is running on %s, go through it: --url http://HOST:PORT/fhir",
                      exc, settings.data_dir)
            return 2
        uri = embedded.uri
    try:
        server = FhirServer.open(settings, uri)
        try:
            return work(loader.local_sender(server))
        finally:
            server.close()
    finally:
        if embedded:
            embedded.stop()


def _load(settings: Settings, args: argparse.Namespace) -> int:
    from fhir_server import loader

    return _with_sender(settings, args.url, lambda send: _load_report(loader.run(args.paths, send, args.quiet)))


def _demo_data(args: argparse.Namespace) -> int:
    from pathlib import Path

    from fhir_server.tools import demo

    if args.patients < 0 or args.per_file < 1:
        print("error: --patients must be 0 or more and --per-file 1 or more", file=sys.stderr)
        return 2
    dataset = demo.generate(args.patients, args.seed, args.per_file)
    paths = dataset.write(Path(args.out))
    count = sum(len(r) for r in dataset.files.values())
    print(f"{count} resources for {args.patients} patients in {len(paths)} bundles in {args.out}/ "
          f"(load them with: fhir-server load {args.out})")
    return 0


def _token(settings: Settings, args: argparse.Namespace) -> int:
    """The token on stdout (for `$(fhir-server token …)`), anything else on stderr."""
    from fhir_server.security import local_issuer
    from fhir_server.security.scopes import parse_scope

    if settings.auth_issuer:
        print(f"error: FHIR_AUTH_ISSUER is set: the server accepts only tokens from {settings.auth_issuer}, a local "
              "token would be refused (the local issuer is for open mode)", file=sys.stderr)
        return 2
    try:
        token, created = local_issuer.issue(settings, args.user, args.scope, args.patient, args.purpose, args.minutes)
    except local_issuer.LocalIssuerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if created:
        print(f"local issuer key created: {local_issuer.key_path(settings.data_dir)} (a server in open mode with "
              f"FHIR_DATA_DIR={settings.data_dir} accepts its tokens)", file=sys.stderr)
    for part in args.scope.split():
        if parse_scope(part) is None and part not in ("openid", "fhirUser", "profile", "offline_access") \
                and not part.startswith("launch"):
            print(f"warning: {part!r} is not a SMART resource scope: it grants nothing", file=sys.stderr)
        elif part.startswith("patient/") and not args.patient:
            print(f"warning: {part!r} grants nothing without --patient", file=sys.stderr)
    print(token)
    return 0


def _import_directory(settings: Settings, args: argparse.Namespace) -> int:
    from pathlib import Path

    from fhir_server.tools import directory

    try:
        mapping = directory.load_mapping(Path(args.mapping) if args.mapping else None)
        parsed = directory.read(Path(args.csv).read_text(encoding="utf-8-sig"), mapping)
    except directory.DirectoryError as exc:
        print(f"nothing imported: {len(exc.problems)} problem(s) in {args.csv}", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return 1
    except (OSError, UnicodeDecodeError) as exc:
        print(f"nothing imported: {exc}", file=sys.stderr)
        return 1
    bundle = directory.transaction(parsed)

    def work(send) -> int:
        status, body = send(bundle)
        if status >= 400:
            text = "; ".join(i.get("diagnostics", "") for i in (body or {}).get("issue", ())) \
                if isinstance(body, dict) else str(body)
            print(f"nothing imported: the server answered {status}: {text}", file=sys.stderr)
            return 1
        kinds = {}
        for entry in bundle["entry"]:
            kinds[entry["resource"]["resourceType"]] = kinds.get(entry["resource"]["resourceType"], 0) + 1
        print(f"imported {len(parsed.rows)} row(s): " + ", ".join(f"{n} {k}" for k, n in sorted(kinds.items())))
        return 0

    return _with_sender(settings, args.url, work)


def _load_report(report) -> int:
    print(f"{report.loaded} resources loaded in {report.elapsed():.1f}s ({report.rate():.0f}/s); "
          f"{len(report.failures)} failed")
    for failure in report.failures:
        print(f"  FAILED {failure}")
    return 1 if report.failures else 0


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    import uvicorn

    from fhir_server.definitions.registry import ensure_core
    from fhir_server.storage.embedded import EmbeddedDatabase

    if not _authentication_ok(settings, args):
        return 2
    settings = _web_settings(settings, args.host)
    if settings is None:
        return 2
    try:
        ensure_core(PackageCache(settings.package_cache, settings.package_registry))
        check_specs(parse_packages_setting(settings.packages))  # a bad name refuses the start, now
    except PackageError as exc:
        log.error("%s", exc)
        return 2
    embedded = None
    if not settings.mongodb_uri:
        embedded = EmbeddedDatabase(settings.data_dir, settings.embedded_db_port, settings.embedded_test_commands)
        try:
            embedded.start()
        except RuntimeError as exc:
            log.error("%s", exc)
            return 2
        settings = settings.with_database(embedded.uri)
        log.info("embedded database ready, data in %s", settings.data_dir.resolve())
    os.environ.update(settings.environment())  # for uvicorn's workers: the database's URI, the bound host
    # uvicorn handles SIGINT/SIGTERM itself, then restores the previous handlers and raises the
    # signal again; this handler turns that into an exit that runs the `finally` below.
    def stop(signum, frame):
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        uvicorn.run("fhir_server.api.app:create_app", factory=True, host=args.host, port=args.port,
                    workers=args.workers, log_level=args.log_level, access_log=args.log_level == "debug",
                    server_header=False,  # no banner naming the software to whoever asks
                    # X-Forwarded-* are not read, even from loopback: behind a proxy set FHIR_BASE_URL
                    # (api/hosts.py); the audit names the peer that connected
                    proxy_headers=False)
    except PackageError as exc:  # a package of FHIR_PACKAGES refused while loading (PackageRefused)
        log.error("%s", exc)
        return 2
    finally:
        if embedded:
            embedded.stop()
    return 0


def _web_settings(settings: Settings, host: str) -> Settings | None:
    """The settings with `--host` among the accepted Host names (api/hosts.py); None, said in
    the log, if FHIR_ALLOWED_HOSTS or FHIR_CORS_ORIGINS cannot be used."""
    from dataclasses import replace

    from fhir_server.api import hosts, origins

    try:
        allowed = hosts.with_bound(settings.allowed_hosts, host)
        origins.parse(settings.cors_origins)
    except (hosts.HostError, origins.OriginError) as exc:
        log.error("%s", exc)
        return None
    if not settings.base_url and not allowed:  # every interface, and no name listed
        log.warning("listening on every interface without FHIR_BASE_URL or FHIR_ALLOWED_HOSTS: requests naming "
                    "this machine by anything but a loopback name are refused (400) until one is set")
    return replace(settings, allowed_hosts=allowed)


def _authentication_ok(settings: Settings, args: argparse.Namespace) -> bool:
    """Open mode (no issuer) is for a machine's own use: refused on any other address unless
    asked for explicitly, and loud in every case."""
    if settings.auth_issuer:
        if not settings.auth_audience:
            log.error("FHIR_AUTH_ISSUER is set but no audience: set FHIR_AUTH_AUDIENCE (or FHIR_BASE_URL)")
            return False
        log.info("access tokens from %s for audience %s", settings.auth_issuer, settings.auth_audience)
        return True
    if not _is_loopback(args.host) and not args.insecure_no_auth:
        log.error("no FHIR_AUTH_ISSUER: without authentication the server only binds a loopback address "
                  "(--host 127.0.0.1); set FHIR_AUTH_ISSUER and FHIR_AUTH_AUDIENCE, or pass --insecure-no-auth")
        return False
    exposed = "" if _is_loopback(args.host) else f" — and {args.host} is reachable from other machines"
    log.warning("OPEN MODE: no FHIR_AUTH_ISSUER, nobody is authenticated and every request without a token may "
                "read and change everything%s (tokens of `fhir-server token` act with their own rights)", exposed)
    return True


def _is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _packages(settings: Settings, args: argparse.Namespace) -> int:
    cache = PackageCache.from_settings(settings)
    if args.action == "list":
        for name, version in cache.installed():
            print(f"{name}#{version}")
        return 0
    status = 0
    for spec in args.specs:
        try:
            if args.action == "install":
                package = cache.install(spec)
                print(f"installed {package.name}#{package.version} ({len(package.index)} resources) "
                      f"in {cache.root}")
                for warning in dependency_warnings(cache, package, install=args.dependencies):
                    print(f"warning: {warning}", file=sys.stderr)
            else:
                name, version = parse_spec(spec)
                print(("removed " if cache.remove(name, version) else "not installed: ") + f"{name}#{version}")
        except PackageError as exc:
            print(f"error: {exc}", file=sys.stderr)
            status = 1
    return status
