"""What the équipe de soins rule costs a search: the same searches with a `system/` token (no
rule) and with a general practitioner's `user/` token (the rule ANDs every search with their
circle), on one server and one database, in one run, next to the raw pymongo lookup.

    python -m benchmarks.access [--patients 1000] [--repeat 100] [--profile] [--out benchmarks/out/access.json]

The CPTS of `fhir-server demo-data` (fhir_server/tools/demo.py: structures, professionals, and per
patient a médecin traitant, a care team run by a structure, a care plan with its tasks, messages,
some consents denying a professional, RCPs), plus a weight Observation per patient and an
NT-proBNP for one patient in ten, is written into a fresh embedded database with the server's own
stamping and indexing code, in bulk. The user is the first GP of the first MSP
(`Practitioner/s1-pr0`): the MSP itself is a member of one patient's care team in four, so their
circle is a quarter of the patients (250 of 1,000), minus those whose consent denies them.

The searches: a patient's Observations (`subject`, a patient of the circle), Observations of one
code across patients (`_count=50`), Patients by family name, the GP's messages
(`Communication?recipient=` their role), Tasks with `_include` of their CarePlan, and
`Patient/x/$everything`.

Two `fhir-server serve` processes share the database, both trusting a one-key issuer on loopback
(benchmarks/auth.py): one with the rule (`FHIR_ACCESS_RULE=care-team`, the default), one with
`FHIR_ACCESS_RULE=scopes` (the same user token, no rule). Each round, with one random patient of
the GP's circle, every search is sent as

- off: the `system/*.rs` token to the rule's server (the rule does not apply to it);
- on: the GP's `user/*.rs` token to the same server;
- scopes: the GP's token to the server without the rule;

in an order that rotates from round to round, then run as its raw pymongo lookup on the index key
it drives with. Reported per search: p50 and p95 of each, **on ÷ off** (p50; the issue's goal is
≤ 1.3) and raw ÷ on. `--profile` also drives the rule's server in this process (ASGI app, no
HTTP) and prints where the time of the searches over 1.3 goes (cProfile, on against off).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import random
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from joserfc import jwt
from pymongo import MongoClient

from benchmarks import report
from benchmarks.auth import AUDIENCE, Issuer, _serve
from benchmarks.search import percentile
from fhir_server import jsonio
from fhir_server.interactions.care_circle import acting, circle, denials
from fhir_server.interactions.resource import stamp
from fhir_server.operations.reindex import FORMAT, SEARCH_INDEX_MARKER
from fhir_server.search.index import index_values
from fhir_server.search.parameters import SearchParameters
from fhir_server.storage.database import Database
from fhir_server.storage.embedded import EmbeddedDatabase
from fhir_server.storage.jobs import Marker
from fhir_server.storage.store import Write, current_document, history_document
from fhir_server.tools import demo

USER = "Practitioner/s1-pr0"  # the first GP of the first MSP (demo.SLOTS[0])
USER_ROLE = "PractitionerRole/s1-role0"
LOINC = "http://loinc.org"
NT_PRO_BNP = "33762-6"
# (LOINC code, display, UCUM unit, low, high, one patient in how many has one)
OBSERVATIONS = [("29463-7", "Body weight", "kg", 50, 110, 1), (NT_PRO_BNP, "NT-proBNP", "pg/mL", 50, 3000, 10)]
VARIANTS = ("off", "on", "scopes")
GOAL = 1.3


# -- the dataset -------------------------------------------------------------------------------------

def dataset(n_patients: int) -> list[dict[str, Any]]:
    """The demo CPTS of `n_patients`, a weight for every patient and an NT-proBNP for one in ten."""
    resources = [r for file in demo.generate(n_patients).files.values() for r in file]
    rnd = random.Random(n_patients)
    for n, patient in enumerate(r["id"] for r in resources if r["resourceType"] == "Patient"):
        for i, (code, text, unit, low, high, every) in enumerate(OBSERVATIONS):
            if n % every:
                continue
            when = demo.START + timedelta(days=rnd.randrange(300), minutes=rnd.randrange(600))
            resources.append({
                "resourceType": "Observation", "id": f"{patient}-obs{i}", "status": "final",
                "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                          "code": "vital-signs" if i == 0 else "laboratory"}]}],
                "code": {"coding": [{"system": LOINC, "code": code, "display": text}]},
                "subject": {"reference": f"Patient/{patient}"}, "effectiveDateTime": when.isoformat(),
                "valueQuantity": {"value": rnd.randrange(low, high), "unit": unit,
                                  "system": "http://unitsofmeasure.org", "code": unit}})
    return resources


def gp_circle(resources: list[dict[str, Any]], user: str = USER) -> tuple[list[str], int]:
    """(ids of the patients the user's token reaches, that circle's size) by the rule's own pure
    functions (interactions/care_circle.py) over the generated data: the benchmark's targets,
    checked against what the server answers."""
    moment = datetime.now(UTC)
    by_type: dict[str, list[dict[str, Any]]] = {}
    for r in resources:
        by_type.setdefault(r["resourceType"], []).append(r)
    roles = [r for r in by_type["PractitionerRole"] if r.get("practitioner", {}).get("reference") == user]
    who, periods = acting(user, roles, moment)
    found = circle(who, periods, by_type["CareTeam"], by_type["Patient"],
                   [d for c in by_type.get("Consent", []) for d in denials(c)], moment)
    reached = sorted(found.patients - found.denied)
    return reached, len(reached)


def load(db, params: SearchParameters, resources: list[dict[str, Any]]) -> int:
    """Insert resources as the server stores them (stamped JSON, search values, history)."""
    ts = datetime.now(UTC).replace(microsecond=0)
    batches: dict[str, list] = {}
    history: list = []
    for resource in resources:
        stored = stamp(resource, resource["id"], 1, ts)
        write = Write(resource["resourceType"], resource["id"], 1, None, ts, "PUT", jsonio.dumps(stored),
                      index_values(params, stored))
        batches.setdefault(write.type, []).append(current_document(write))
        history.append(history_document(write))
        if len(batches[write.type]) >= 2000:
            db[write.type].insert_many(batches[write.type], ordered=False)
            batches[write.type] = []
        if len(history) >= 2000:
            db["_history"].insert_many(history, ordered=False)
            history = []
    for type_, docs in batches.items():
        if docs:
            db[type_].insert_many(docs, ordered=False)
        db[type_].create_index("k")
    if history:
        db["_history"].insert_many(history, ordered=False)
    return len(resources)


# -- tokens and servers --------------------------------------------------------------------------------

def user_token(issuer: Issuer, fhir_user: str, scope: str = "user/*.rs") -> str:
    """A token of the run's issuer for a professional acting as `fhir_user`."""
    now = int(time.time())
    claims = {"iss": issuer.url, "aud": AUDIENCE, "sub": "gp-bench", "client_id": "bench-ehr", "scope": scope,
              "fhirUser": fhir_user, "iat": now, "exp": now + 3600}
    return jwt.encode({"alg": "RS256", "kid": "bench-key"}, claims, issuer.key)


@dataclass
class Setup:
    """The loaded database, the two servers on it and the tokens."""

    uri: str
    db: Any  # pymongo Database
    rule_url: str  # FHIR_ACCESS_RULE=care-team
    scopes_url: str  # FHIR_ACCESS_RULE=scopes
    issuer: Issuer
    system_token: str
    user_token: str
    resources: int
    load_s: float
    circle: list[str]


@contextmanager
def loaded(n: int, params: SearchParameters) -> Iterator[Setup]:
    """The dataset in a fresh embedded database and both servers on it; all stopped afterwards."""
    issuer = Issuer()
    with tempfile.TemporaryDirectory() as tmp:
        database = EmbeddedDatabase(Path(tmp) / "data")
        database.start()
        client = MongoClient(database.uri)
        processes = []
        try:
            db = client["fhir"]
            Database(database.uri, "fhir").ensure_indexes()
            resources = dataset(n)
            reached, _ = gp_circle(resources)
            t = time.perf_counter()
            count = load(db, params, resources)
            load_s = time.perf_counter() - t
            Marker(Database(database.uri, "fhir"), SEARCH_INDEX_MARKER).write(FORMAT)  # no reindexing while measuring
            auth = {"FHIR_AUTH_ISSUER": issuer.url, "FHIR_AUTH_AUDIENCE": AUDIENCE}
            rule, rule_url = _serve(database.uri, Path(tmp) / "rule", {**auth, "FHIR_ACCESS_RULE": "care-team"})
            processes.append(rule)
            scopes, scopes_url = _serve(database.uri, Path(tmp) / "scopes", {**auth, "FHIR_ACCESS_RULE": "scopes"})
            processes.append(scopes)
            yield Setup(database.uri, db, rule_url, scopes_url, issuer, issuer.token("system/*.rs"),
                        user_token(issuer, USER), count, load_s, reached)
        finally:
            for process in processes:
                process.send_signal(signal.SIGTERM)
                process.wait(30)
            client.close()
            database.stop()
            issuer.stop()


# -- the searches --------------------------------------------------------------------------------------

def _name_key(db) -> str:
    """The most common family name among the first patients (each name is shared by about one in 30)."""
    counts: dict[str, int] = {}
    for doc in db["Patient"].find({}, {"json": 1}).limit(500):
        family = jsonio.loads(doc["json"])["name"][0]["family"]
        counts[family] = counts.get(family, 0) + 1
    return max(sorted(counts), key=counts.get)


def searches(p: str, family: str) -> list[tuple[str, str, list[tuple[str, dict[str, Any]]]]]:
    """(name, FHIR query, raw pymongo lookups [(collection, filter)]) for patient `p` of the circle."""
    low = family.lower()
    return [
        ("Observation?subject", f"Observation?subject=Patient/{p}",
         [("Observation", {"k": f"subject=Patient/{p}"})]),
        ("Observation?code", f"Observation?code={LOINC}|{NT_PRO_BNP}&_count=50",
         [("Observation", {"k": f"code={LOINC}|{NT_PRO_BNP}"})]),
        ("Patient?name", f"Patient?name={family}",
         [("Patient", {"k": {"$gte": f"name={low}", "$lt": f"name={low}\U0010ffff"}})]),
        ("Communication?recipient", f"Communication?recipient={USER_ROLE}",
         [("Communication", {"k": f"recipient={USER_ROLE}"})]),
        ("_include", f"Task?patient=Patient/{p}&_include=Task:based-on",
         [("Task", {"k": f"patient=Patient/{p}"}), ("CarePlan", {"k": f"patient=Patient/{p}"})]),
        ("$everything", f"Patient/{p}/$everything",
         [("Patient", {"_id": p})] + [(c, {"k": f"{code}=Patient/{p}"}) for c, code in (
             ("Observation", "subject"), ("CarePlan", "subject"), ("Task", "patient"), ("Goal", "subject"),
             ("CareTeam", "subject"), ("Communication", "subject"), ("Consent", "patient"),
             ("Encounter", "subject"), ("DocumentReference", "subject"), ("Appointment", "actor"))]),
    ]


def check_rule(setup: Setup) -> None:
    """The rule applies as the benchmark assumes: the GP's token counts their circle's care plans
    (one per patient), the system token every one."""
    counts = {}
    for label, token in (("off", setup.system_token), ("on", setup.user_token)):
        response = httpx.get(f"{setup.rule_url}/CarePlan?status=active&_summary=count", timeout=120,
                             headers={"Accept": "application/fhir+json", "Authorization": f"Bearer {token}"})
        response.raise_for_status()
        counts[label] = response.json()["total"]
    if counts["on"] != len(setup.circle) or counts["off"] <= counts["on"]:
        raise RuntimeError(f"the rule did not apply as expected: {counts['off']} care plans off, {counts['on']} "
                           f"on, for a circle of {len(setup.circle)} patients")


def measure(setup: Setup, repeat: int, seed: int = 5) -> dict[str, Any]:
    """p50/p95 per search and variant, requests of one round interleaved, then the raw lookups."""
    check_rule(setup)
    rnd = random.Random(seed)
    family = _name_key(setup.db)
    headers = {"Accept": "application/fhir+json"}
    clients = {
        "off": httpx.Client(base_url=setup.rule_url, timeout=120,
                            headers={**headers, "Authorization": f"Bearer {setup.system_token}"}),
        "on": httpx.Client(base_url=setup.rule_url, timeout=120,
                           headers={**headers, "Authorization": f"Bearer {setup.user_token}"}),
        "scopes": httpx.Client(base_url=setup.scopes_url, timeout=120,
                               headers={**headers, "Authorization": f"Bearer {setup.user_token}"}),
    }
    samples: dict[tuple[str, str], list[float]] = {}
    totals: dict[tuple[str, str], list[int]] = {}  # Bundle.total per request
    examples: dict[str, str] = {}
    warm = 5
    try:
        for round_ in range(repeat + warm):
            p = rnd.choice(setup.circle)
            order = VARIANTS[round_ % 3:] + VARIANTS[:round_ % 3]  # no variant always first
            for name, query, raw in searches(p, family):
                examples.setdefault(name, query)
                for variant in order:
                    t = time.perf_counter()
                    response = clients[variant].get("/" + query)
                    elapsed = time.perf_counter() - t
                    if response.status_code != 200:
                        raise RuntimeError(f"{variant} {query}: {response.status_code} {response.text[:300]}")
                    total = response.json().get("total")
                    if round_ >= warm:
                        samples.setdefault((name, variant), []).append(elapsed)
                        totals.setdefault((name, variant), []).append(total)
                t = time.perf_counter()
                for collection, flt in raw:
                    list(setup.db[collection].find(flt))
                if round_ >= warm:
                    samples.setdefault((name, "raw"), []).append(time.perf_counter() - t)
    finally:
        for client in clients.values():
            client.close()
    out: dict[str, Any] = {}
    for name, query in examples.items():
        row: dict[str, Any] = {"query": query}
        for variant in (*VARIANTS, "raw"):
            values = samples[(name, variant)]
            row[variant] = {"p50_ms": percentile(values, 0.5) * 1000, "p95_ms": percentile(values, 0.95) * 1000}
            if variant != "raw":
                row[variant]["total"] = statistics.median(totals[(name, variant)])
        row["on_over_off"] = row["on"]["p50_ms"] / row["off"]["p50_ms"]
        row["scopes_over_off"] = row["scopes"]["p50_ms"] / row["off"]["p50_ms"]
        row["raw_over_on"] = row["raw"]["p50_ms"] / row["on"]["p50_ms"]
        out[name] = row
    return out


# -- where the time goes -----------------------------------------------------------------------------------

_LAYERS = tuple(f"fhir_server/{layer}/" for layer in ("interactions", "operations", "search", "storage"))


def _where(key: tuple[str, int, str]) -> str:
    file, line, function = key
    parts = Path(file).parts
    module = "/".join(parts[parts.index("fhir_server"):]) if "fhir_server" in parts else Path(file).name
    return f"{module}:{line}({function})"


def profile(setup: Setup, queries: dict[str, str], requests: int = 60, top: int = 15) -> dict[str, Any]:
    """Per search (name → query, `{p}` standing for a patient of the circle): ms per request in
    this process (ASGI app, no HTTP) off and on, and the functions whose own and cumulative time
    grow most from off to on (cProfile), with their calls per request."""
    saved = dict(os.environ)
    os.environ.update({"FHIR_MONGODB_URI": setup.uri, "FHIR_AUTH_ISSUER": setup.issuer.url,
                       "FHIR_AUTH_AUDIENCE": AUDIENCE, "FHIR_ACCESS_RULE": "care-team",
                       "FHIR_DATA_DIR": tempfile.mkdtemp(prefix="access-profile-")})
    from fhir_server.api import app as app_module
    from fhir_server.config import Settings
    from fhir_server.server import FhirServer

    server = FhirServer.open(Settings.from_env(), setup.uri)
    app = app_module.create_app(server)

    async def inline(func, *args, **kwargs):  # the handler in this thread, where the profiler is
        return func(*args, **kwargs)

    app_module.run_in_threadpool = inline
    loop = asyncio.new_event_loop()

    async def get(path_query: str, token: str) -> None:
        path, _, query = path_query.partition("?")
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
                 "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": query.encode(),
                 "root_path": "", "client": ("127.0.0.1", 9), "server": ("bench", 80),
                 "headers": [(b"host", b"bench"), (b"accept", b"application/fhir+json"),
                             (b"authorization", f"Bearer {token}".encode())]}
        status = []

        async def receive():
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message):
            if message["type"] == "http.response.start":
                status.append(message["status"])

        await app(scope, receive, send)
        if status[0] != 200:
            raise RuntimeError(f"{path_query}: {status[0]}")

    def run(query: str, token: str, profiler: cProfile.Profile | None = None) -> float:
        rnd = random.Random(3)
        paths = [f"/fhir/{query.replace('{p}', rnd.choice(setup.circle))}" for _ in range(requests)]
        for path in paths[:10]:
            loop.run_until_complete(get(path, token))
        start = time.perf_counter()
        if profiler:
            profiler.enable()
        for path in paths:
            loop.run_until_complete(get(path, token))
        if profiler:
            profiler.disable()
        return (time.perf_counter() - start) / len(paths) * 1000

    out: dict[str, Any] = {}
    try:
        for name, query in queries.items():
            off_ms = statistics.median(run(query, setup.system_token) for _ in range(3))
            on_ms = statistics.median(run(query, setup.user_token) for _ in range(3))
            stats = {}
            for label, token in (("off", setup.system_token), ("on", setup.user_token)):
                profiler = cProfile.Profile()
                run(query, token, profiler)
                stats[label] = {_where(key): (calls, tt, ct) for key, (_, calls, tt, ct, _)
                                in pstats.Stats(profiler).stats.items()}  # type: ignore[attr-defined]

            def grown(index: int, top: int, stats=stats) -> list[tuple[str, float, float]]:
                """(function, ms per request more with the rule, calls per request with it)."""
                rows = [(k, (v[index] - stats["off"].get(k, (0, 0, 0))[index]) / requests * 1000, v[0] / requests)
                        for k, v in stats["on"].items()]
                return sorted(rows, key=lambda row: -row[1])[:top]

            out[name] = {"query": query, "off_ms": off_ms, "on_ms": on_ms, "on_over_off": on_ms / off_ms,
                          "own_time_grown": grown(1, top),
                          "cumulative_grown": [r for r in grown(2, 100) if r[0].startswith(_LAYERS)][:top]}
    finally:
        loop.close()
        server.stop()
        os.environ.clear()
        os.environ.update(saved)
    return out


def _log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def run(n: int, repeat: int, params: SearchParameters, profile_over: float | None = None,
        log: Callable[[str], None] = _log) -> dict[str, Any]:
    log(f"access: dataset of {n} patients, loading; two servers")
    with loaded(n, params) as setup:
        log(f"access: {setup.resources} resources loaded in {setup.load_s:.0f}s, {USER} reaches "
            f"{len(setup.circle)} patients; {repeat} rounds × 6 searches × (off, on, scopes, raw)")
        result: dict[str, Any] = {"patients": n, "resources": setup.resources, "load_s": setup.load_s,
                                  "user": USER, "circle": len(setup.circle), "repeat": repeat,
                                  "searches": measure(setup, repeat)}
        if profile_over is not None:
            family = _name_key(setup.db)
            slow = {name: q for name, q, _ in searches("{p}", family)
                    if result["searches"][name]["on_over_off"] > profile_over}
            if slow:
                log(f"access: profiling in process {len(slow)} searches over {profile_over}")
                result["profile"] = profile(setup, slow)
        return result


def print_table(result: dict[str, Any]) -> None:
    print(f"\n{result['patients']:,} patients ({result['resources']:,} resources), {result['user']} reaches "
          f"{result['circle']:,}; p50 / p95 ms over {result['repeat']} rounds")
    print(f"{'search':<32} {'off':>15} {'on':>15} {'scopes':>15} {'raw':>7} {'on/off':>7} {'raw/on':>7}")
    for name, row in result["searches"].items():
        cells = " ".join(f"{row[v]['p50_ms']:>7.2f}/{row[v]['p95_ms']:<7.2f}" for v in VARIANTS)
        flag = "  > 1.3" if row["on_over_off"] > GOAL else ""
        print(f"{name:<32} {cells} {row['raw']['p50_ms']:>7.2f} {row['on_over_off']:>7.2f} "
              f"{row['raw_over_on']:>7.2f}{flag}")
    for found in result.get("profile", {}).values():
        print(f"\nin process, {found['query']}: off {found['off_ms']:.2f} ms, on {found['on_ms']:.2f} ms "
              f"(on/off {found['on_over_off']:.2f}); under cProfile, ms per request more with the rule "
              "(own time | cumulative, fhir_server only), calls per request:")
        for key, ms, calls in found["own_time_grown"]:
            print(f"  own {ms:8.3f}  {calls:7.1f}  {key}")
        for key, ms, calls in found["cumulative_grown"]:
            print(f"  cum {ms:8.3f}  {calls:7.1f}  {key}")


def main() -> None:
    from fhir_server.config import Settings
    from fhir_server.definitions.packages import PackageCache
    from fhir_server.definitions.registry import Definitions, ensure_core

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--patients", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=100)
    parser.add_argument("--profile", action="store_true",
                        help=f"profile in process the searches whose on/off is over {GOAL}")
    parser.add_argument("--out", default=report.out_path("access.json"), help="default: benchmarks/out/access.json")
    args = parser.parse_args()
    settings = Settings.from_env()
    params = SearchParameters(Definitions([ensure_core(PackageCache(settings.package_cache,
                                                                    settings.package_registry))]))
    result = run(args.patients, args.repeat, params, GOAL if args.profile else None)
    report.write_json({"machine": report.machine(), "access": result}, Path(args.out))
    print_table(result)


if __name__ == "__main__":
    main()
