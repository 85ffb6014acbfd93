"""The machine a run was made on, the results files (in `benchmarks/out/` unless told otherwise),
and the generated results section of docs/BENCHMARKS.md (between `<!-- results:begin -->` and
`<!-- results:end -->`, rewritten only on request; the rest of the page is written by hand)."""

from __future__ import annotations

import json
import os
import platform
import statistics
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"
OUT = Path(__file__).resolve().parent / "out"  # git-ignored: results never dirty the work tree


def out_path(name: str) -> str:
    """Default `--out` of a single benchmark: benchmarks/out/NAME."""
    return str(OUT / name)


def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram_gib = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram_gib = round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    try:
        secantus = metadata.version("SecantusDB")
    except metadata.PackageNotFoundError:
        secantus = "?"
    return {"cpu": cpu, "cores": os.cpu_count(), "ram_gib": ram_gib, "python": platform.python_version(),
            "os": platform.platform(), "database": f"SecantusDB {secantus} (secantusd-py, embedded, --sync-on-commit)",
            "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")}


def write_json(results: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")


def _f(value: float, digits: int = 0) -> str:
    return f"{value:,.{digits}f}"


def _search_summary(run: dict[str, Any]) -> tuple[float, float]:
    """Median over the queries of (FHIR p50, raw p50) in ms."""
    queries = run["queries"].values()
    return (statistics.median(q["p50_ms"] for q in queries), statistics.median(q["raw_p50_ms"] for q in queries))


def markdown(results: dict[str, Any]) -> str:
    m = results["machine"]
    b = results["benchmarks"]
    lines = [
        "## Results of `python -m benchmarks` (generated)",
        "",
        f"Written by `{results['command']}` on {m['date']} — do not edit by hand between the markers. "
        "Each ratio is FHIR ÷ raw `pymongo` on the same database in the same run: throughput ÷ throughput, "
        "or raw latency ÷ FHIR latency (1.0 would be as fast as the bare driver; higher is better).",
        "",
        "| benchmark | FHIR | raw pymongo | **ratio** |",
        "|---|---|---|---|",
    ]
    if "ingest" in b:
        i = b["ingest"]
        lines.append(f"| ingest: transactions over HTTP vs `insert_many` ({i['resources']:,} resources) | "
                     f"{_f(i['fhir_resources_per_s'])} resources/s | {_f(i['raw_insert_many_per_s'])} resources/s | "
                     f"**{i['ratio_fhir_over_raw']:.3f}** |")
    if "read" in b:
        r = b["read"]
        lines.append(f"| read by id, one client ({r['reads']:,} reads, {r['patients']:,} patients) | "
                     f"{_f(r['fhir']['reads_per_s'])} reads/s (p50 {r['fhir']['p50_ms']:.2f} ms) | "
                     f"{_f(r['raw']['reads_per_s'])} reads/s (p50 {r['raw']['p50_ms']:.2f} ms) | "
                     f"**{r['ratio_fhir_over_raw']:.2f}** |")
    for run in b.get("search", {}).get("runs", []):
        fhir, raw = _search_summary(run)
        lines.append(f"| search at {run['patients']:,} patients ({run['resources']:,} resources; median p50 of "
                     f"{len(run['queries'])} queries) | {fhir:.2f} ms | {raw:.2f} ms | **{raw / fhir:.2f}** |")
    if "access" in b:
        a = b["access"]
        on = statistics.median(q["on"]["p50_ms"] for q in a["searches"].values())
        raw = statistics.median(q["raw"]["p50_ms"] for q in a["searches"].values())
        lines.append(f"| search with the équipe de soins rule on (a GP's `user/` token reaching {a['circle']:,} of "
                     f"{a['patients']:,} patients; median p50 of {len(a['searches'])} searches) | {on:.2f} ms | "
                     f"{raw:.2f} ms | **{raw / on:.2f}** |")
    if "mixed" in b:
        x = b["mixed"]
        lines.append(f"| mixed load, {x['threads']} threads × {x['seconds']:.0f} s "
                     "(60% read, 30% search, 10% create) | "
                     f"{_f(x['fhir']['ops_per_s'])} ops/s | {_f(x['raw']['ops_per_s'])} ops/s | "
                     f"**{x['ratio_fhir_over_raw']:.2f}** |")
    runs = b.get("search", {}).get("runs", [])
    if len(runs) >= 2:
        small, large = runs[0], runs[-1]
        lines += ["", f"Search cost as the database grows, p50 at {large['patients']:,} ÷ p50 at "
                      f"{small['patients']:,} patients (goal ≤ 1.5):", "",
                  "| query | p50 " + f"{small['patients']:,}" + " (ms) | p50 " + f"{large['patients']:,}" +
                  " (ms) | p95 " + f"{large['patients']:,}" + " (ms) | raw p50 " + f"{large['patients']:,}" +
                  " (ms) | **ratio large ÷ small** |", "|---|---|---|---|---|---|"]
        for name, q in small["queries"].items():
            big = large["queries"][name]
            lines.append(f"| {name} | {q['p50_ms']:.2f} | {big['p50_ms']:.2f} | {big['p95_ms']:.2f} | "
                         f"{big['raw_p50_ms']:.2f} | **{big['p50_ms'] / q['p50_ms']:.2f}** |")
    if "mixed" in b:
        x = b["mixed"]
        lines += ["", "Mixed load per kind of operation:", "",
                  "| operation | FHIR ops/s | FHIR p50 / p95 (ms) | raw ops/s | raw p50 / p95 (ms) |",
                  "|---|---|---|---|---|"]
        for kind, f in x["fhir"]["per_kind"].items():
            r = x["raw"]["per_kind"].get(kind, {"ops_per_s": 0, "p50_ms": 0, "p95_ms": 0})
            lines.append(f"| {kind} | {_f(f['ops_per_s'])} | {f['p50_ms']:.2f} / {f['p95_ms']:.2f} | "
                         f"{_f(r['ops_per_s'])} | {r['p50_ms']:.2f} / {r['p95_ms']:.2f} |")
    if "access" in b:
        lines += _access(b["access"])
    profile = b.get("read", {}).get("profile")
    if profile:
        lines += ["", "Where a read's time goes (same database; wall clock per read, no profiler):", "",
                  "| layer | ms per read |", "|---|---|"]
        for layer, ms in profile["layers_ms_per_read"].items():
            lines.append(f"| {layer} | {ms:.3f} |")
        lines.append(f"| HTTP end to end (uvicorn, thread pool, httpx over loopback), p50 | "
                     f"{b['read']['fhir']['p50_ms']:.3f} |")
        lines += ["", "cProfile of the in-process request path, own time by layer: " +
                  ", ".join(f"{k} {v}%" for k, v in profile["layers_percent"].items()) + "."]
    lines += ["", f"Machine: {m['cpu']}, {m['cores']} cores, {m['ram_gib']} GiB RAM, Python {m['python']}, "
                  f"{m['database']}, {m['os']}; server, database and clients share the same cores."]
    return "\n".join(lines)


def _access(a: dict[str, Any]) -> list[str]:
    """The équipe de soins rule: each search off (system token) and on (the GP's user token) on
    one server, the GP's token on a server without the rule, and the raw lookup."""
    lines = ["", f"The équipe de soins rule ({a['patients']:,} patients, {a['resources']:,} resources; {a['user']} "
                 f"reaches {a['circle']:,}), p50 / p95 over {a['repeat']} interleaved rounds, **on ÷ off** p50 "
                 "(goal ≤ 1.3):", "",
             "| search | off: `system/*.rs` (ms) | on: GP `user/*.rs` (ms) | GP token, rule off (ms) | raw p50 (ms) | "
             "**on ÷ off** | raw ÷ on |", "|---|---|---|---|---|---|---|"]
    for name, q in a["searches"].items():
        over = " (over)" if q["on_over_off"] > 1.3 else ""
        lines.append(f"| {name} | {q['off']['p50_ms']:.2f} / {q['off']['p95_ms']:.2f} | "
                     f"{q['on']['p50_ms']:.2f} / {q['on']['p95_ms']:.2f} | "
                     f"{q['scopes']['p50_ms']:.2f} / {q['scopes']['p95_ms']:.2f} | {q['raw']['p50_ms']:.2f} | "
                     f"**{q['on_over_off']:.2f}**{over} | {q['raw_over_on']:.2f} |")
    for name, found in a.get("profile", {}).items():
        lines += ["", f"{name} in process (ASGI app, no HTTP): off {found['off_ms']:.2f} ms, on {found['on_ms']:.2f} "
                      f"ms, on ÷ off {found['on_over_off']:.2f}; cProfile, cumulative ms per request added by the "
                      "rule in its code (calls per request): " + ", ".join(
                          f"`{where}` {ms:.2f} ({calls:g})"
                          for where, ms, calls in _rule_rows(found["cumulative_grown"])[:5]) + "."]
    return lines


# Where the rule's own work is: its modules, the compartment lookups it makes and the store it reads
# (interactions/access.py only passes the term through).
_RULE_CODE = tuple(f"fhir_server/{m}.py:" for m in ("interactions/care_team", "interactions/care_circle",
                                                    "search/compartments", "storage/store"))


def _rule_rows(rows: list[list]) -> list[list]:
    """The profile rows (function, ms added per request, calls per request) in the rule's code."""
    return [row for row in rows if row[0].startswith(_RULE_CODE) and row[1] > 0]


def update_docs(results: dict[str, Any], path: Path) -> None:
    """Replace the generated section of docs/BENCHMARKS.md (appended with its markers if absent)."""
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    section = f"{BEGIN}\n{markdown(results)}\n{END}"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        tail = rest.split(END, 1)[1]
        text = head + section + tail
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    path.write_text(text)
