"""Every benchmark in one command, each next to its raw pymongo baseline on the same database.

    python -m benchmarks --quick     # CI-sized: a few minutes
    python -m benchmarks             # full: search at 1k and 20k patients (the 20k load takes minutes)
    python -m benchmarks --write-docs   # full, and rewrite the results section of docs/BENCHMARKS.md

Runs, in order: ingest (transactions over HTTP vs `insert_many`, benchmarks/ingest.py); search at a
small and a large size (benchmarks/search.py); then, on the large dataset, reads by id over HTTP vs
`find_one` with a profile of the read path (benchmarks/read.py) and a concurrent mixed load vs the
same mix as raw pymongo operations (benchmarks/mixed.py); then, on a CPTS dataset of its own, the
same searches with the équipe de soins rule off and on (benchmarks/access.py, profiled in process
where on ÷ off is over 1.3). Writes `results.json` (the machine, the command, FHIR and raw numbers
and their ratio per benchmark) and `results.md` (the results section) into the output folder
(`--out`, default `benchmarks/out/`, git-ignored): the work tree stays clean. Only with
`--write-docs` is the results section of docs/BENCHMARKS.md (between its markers) rewritten.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from benchmarks import report

ROOT = Path(__file__).resolve().parent.parent

SIZES = {
    "quick": {"ingest": (8, 100), "sizes": (200, 2000), "repeat": 30, "reads": 1000, "profile_reads": 1000,
              "threads": 4, "seconds": 8.0, "access": (1000, 30)},
    "full": {"ingest": (20, 150), "sizes": (1000, 20000), "repeat": 100, "reads": 5000, "profile_reads": 3000,
             "threads": 8, "seconds": 30.0, "access": (5000, 100)},
}


ALL = ("ingest", "search", "read", "mixed", "access")


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="CI-sized run (a few minutes)")
    parser.add_argument("--only", default=",".join(ALL),
                        help="comma-separated subset of " + ", ".join(ALL))
    parser.add_argument("--out", default=str(report.OUT),
                        help="folder of results.json and results.md (default: benchmarks/out, git-ignored)")
    parser.add_argument("--write-docs", action="store_true",
                        help="also rewrite the generated results section of --docs (left alone otherwise)")
    parser.add_argument("--docs", default=str(ROOT / "docs" / "BENCHMARKS.md"),
                        help="page whose generated section --write-docs rewrites (default: docs/BENCHMARKS.md)")
    args = parser.parse_args(argv)
    mode = "quick" if args.quick else "full"
    size = SIZES[mode]
    only = {s.strip() for s in args.only.split(",") if s.strip()}

    from benchmarks import access, ingest, mixed, read, search
    from fhir_server.config import Settings
    from fhir_server.definitions.packages import PackageCache
    from fhir_server.definitions.registry import Definitions, ensure_core
    from fhir_server.search.parameters import SearchParameters

    command = "python -m benchmarks" + (" --quick" if args.quick else "") + \
        (f" --only {args.only}" if only != set(ALL) else "") + \
        (" --write-docs" if args.write_docs else "")  # what was measured, and where it went
    results = {"command": command,
               "mode": mode, "machine": report.machine(), "benchmarks": {}}
    benchmarks = results["benchmarks"]
    started = time.perf_counter()

    if "ingest" in only:
        bundles, per_bundle = size["ingest"]
        log(f"ingest: {bundles} transactions of {per_bundle} resources")
        benchmarks["ingest"] = ingest.run(bundles, per_bundle)

    params = None
    if only & {"search", "read", "mixed", "access"}:
        settings = Settings.from_env()
        params = SearchParameters(Definitions([ensure_core(PackageCache(settings.package_cache,
                                                                        settings.package_registry))]))
    if only & {"search", "read", "mixed"}:
        sizes = size["sizes"] if "search" in only else size["sizes"][-1:]
        runs = []
        for n in sizes:
            log(f"dataset of {n} patients: loading")
            with search.loaded_server(n, params) as env:
                log(f"{env.resources} resources loaded in {env.load_s:.0f}s")
                if "search" in only:
                    log(f"search at {n} patients: {size['repeat']} × 7 queries")
                    runs.append({"patients": n, "resources": env.resources, "load_s": env.load_s,
                                 "queries": search.measure(env.base_url, env.db, n, size["repeat"])})
                if n != sizes[-1]:
                    continue
                if "read" in only:
                    log(f"read: {size['reads']} reads by id, then the profile")
                    benchmarks["read"] = {"patients": n, **read.measure(env.base_url, env.db, n, size["reads"])}
                    benchmarks["read"]["profile"] = read.profile(env.uri, n, size["profile_reads"])
                if "mixed" in only:
                    log(f"mixed: {size['threads']} threads × {size['seconds']:.0f}s, FHIR then raw")
                    benchmarks["mixed"] = {"patients": n, **mixed.measure(env.base_url, env.db, n, size["threads"],
                                                                           size["seconds"])}
        if runs:
            benchmarks["search"] = {"runs": runs, "ratio_large_over_small_p50": {
                name: runs[-1]["queries"][name]["p50_ms"] / runs[0]["queries"][name]["p50_ms"]
                for name in runs[0]["queries"]}}

    if "access" in only:
        patients, repeat = size["access"]
        benchmarks["access"] = access.run(patients, repeat, params, profile_over=access.GOAL, log=log)

    results["elapsed_s"] = time.perf_counter() - started
    out = Path(args.out)
    report.write_json(results, out / "results.json")
    (out / "results.md").write_text(report.markdown(results) + "\n")
    if args.write_docs:
        report.update_docs(results, Path(args.docs))
    print(report.markdown(results))
    log(f"done in {results['elapsed_s']:.0f}s: {out / 'results.json'}, {out / 'results.md'}"
        + (f", {args.docs}" if args.write_docs else f" ({args.docs} left alone: --write-docs rewrites it)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
