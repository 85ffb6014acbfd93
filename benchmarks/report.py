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
