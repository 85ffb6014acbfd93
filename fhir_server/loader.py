"""`fhir-server load PATH…`: JSON resources, Bundles and NDJSON into a FHIR server.

- a transaction or batch Bundle is sent as it is;
- a collection Bundle becomes one transaction (its entries PUT by id, or POSTed with their
  fullUrl so that references between them are kept);
- single resources and NDJSON lines are sent in batches of PUT (or POST when they have no id).

The target is a remote base URL (`--url`, over HTTP) or this server's own database (the same
processing, in-process). With referential integrity on, what refers to a resource loaded later
(files come in name order) is refused at first (422 not-found): it is sent again once the rest
is loaded, for as long as that loads more. Progress shows resources/s; every failure is reported with its file
and entry (or line); the exit code is 1 when anything failed.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fhir_server import jsonio

if TYPE_CHECKING:
    from fhir_server.server import FhirServer

BATCH = 200


@dataclass
class Item:
    """Where a resource or bundle entry came from, for error reports."""

    source: str  # file, with `:line` for NDJSON
    entry: int | None = None


@dataclass
class Job:
    bundle: dict[str, Any]
    origins: list[Item]


@dataclass
class Report:
    loaded: int = 0
    failures: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def rate(self) -> float:
        return self.loaded / max(self.elapsed(), 1e-9)


def files(paths: list[str], report: Report) -> Iterator[Path]:
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            yield from sorted(p for p in path.rglob("*") if p.suffix in (".json", ".ndjson") and p.is_file())
        elif path.exists():
            yield path
        else:
            report.failures.append(f"{raw}: no such file or folder")


def jobs(paths: list[str], report: Report) -> Iterator[Job]:
    singles: list[tuple[dict[str, Any], Item]] = []
    for path in files(paths, report):
        try:
            if path.suffix == ".ndjson":
                for number, line in enumerate(path.read_bytes().splitlines(), 1):
                    if not line.strip():
                        continue
                    try:
                        resource = jsonio.loads(line)
                    except jsonio.JSONError as exc:
                        report.failures.append(f"{path}:{number}: {exc}")
                        continue
                    if not isinstance(resource, dict) or "resourceType" not in resource:
                        report.failures.append(f"{path}:{number}: not a FHIR resource")
                        continue
                    singles.append((resource, Item(f"{path}:{number}")))
                    if len(singles) >= BATCH:
                        yield _batch(singles)
                        singles = []
                continue
            data = jsonio.loads(path.read_bytes())
        except (OSError, jsonio.JSONError) as exc:
            report.failures.append(f"{path}: {exc}")
            continue
        if not isinstance(data, dict) or "resourceType" not in data:
            report.failures.append(f"{path}: not a FHIR resource")
            continue
        if data["resourceType"] == "Bundle" and data.get("type") in ("transaction", "batch"):
            yield Job(data, [Item(str(path), i) for i in range(len(data.get("entry") or ()))])
        elif data["resourceType"] == "Bundle" and data.get("type") == "collection":
            yield _collection(data, path)
        else:
            singles.append((data, Item(str(path))))
            if len(singles) >= BATCH:
                yield _batch(singles)
                singles = []
    if singles:
        yield _batch(singles)


def _request(resource: dict[str, Any]) -> dict[str, str]:
    if resource.get("id"):
        return {"method": "PUT", "url": f"{resource['resourceType']}/{resource['id']}"}
    return {"method": "POST", "url": resource["resourceType"]}


def _batch(singles: list[tuple[dict[str, Any], Item]]) -> Job:
    entries = [{"resource": r, "request": _request(r)} for r, _ in singles]
    return Job({"resourceType": "Bundle", "type": "batch", "entry": entries}, [o for _, o in singles])


def _collection(bundle: dict[str, Any], path: Path) -> Job:
    entries = []
    for entry in bundle.get("entry") or ():
        resource = entry.get("resource") or {}
        out = {"resource": resource, "request": _request(resource)}
        if entry.get("fullUrl"):
            out["fullUrl"] = entry["fullUrl"]
        entries.append(out)
    return Job({"resourceType": "Bundle", "type": "transaction", "entry": entries},
               [Item(str(path), i) for i in range(len(entries))])


@dataclass
class Pending:
    """What failed only because it refers to something not loaded yet, and why (per entry)."""

    job: Job
    reasons: list[str]


def run(paths: list[str], send: Callable[[dict[str, Any]], tuple[int, Any]], quiet: bool = False) -> Report:
    """Load everything; `send(bundle)` returns (HTTP status, parsed response). What referred to
    resources not loaded yet is sent again at the end, while that loads more."""
    report = Report()
    later: list[Pending] = []
    for job in jobs(paths, report):
        _send(job, send, report, later, quiet)
    while later:
        before, retry, later = report.loaded, later, []
        for pending in retry:
            _send(pending.job, send, report, later, quiet)
        if report.loaded == before:
            break
    report.failures.extend(reason for pending in later for reason in pending.reasons)
    if not quiet:
        print(file=sys.stderr)
    return report


def _send(job: Job, send: Callable[[dict[str, Any]], tuple[int, Any]], report: Report, later: list[Pending],
          quiet: bool) -> None:
    status, body = send(job.bundle)
    _account(job, status, body, report, later)
    if not quiet:
        print(f"\r{report.loaded} resources loaded, {report.rate():.0f}/s, {len(report.failures)} failed",
              end="", file=sys.stderr, flush=True)


def _dangling(status: int | str, issues: Any) -> bool:
    """A 422 for a reference to what does not exist (yet): worth sending again later."""
    return str(status) == "422" and any(isinstance(i, dict) and i.get("code") == "not-found" for i in issues or ())


def _account(job: Job, status: int, body: Any, report: Report, later: list[Pending]) -> None:
    if status >= 400 or not isinstance(body, dict) or body.get("resourceType") != "Bundle":
        issues = body.get("issue", ()) if isinstance(body, dict) else ()
        text = "; ".join(i.get("diagnostics", "") for i in issues) if isinstance(body, dict) else str(body)[:300]
        origin = job.origins[0].source if job.origins else "?"
        reason = f"{origin} ({job.bundle.get('type')} of {len(job.origins)} entries): HTTP {status}: {text}"
        if _dangling(status, issues):
            later.append(Pending(job, [reason]))
        else:
            report.failures.append(reason)
        return
    retry: list[int] = []
    reasons: list[str] = []
    for i, entry in enumerate(body.get("entry") or ()):
        code = str((entry.get("response") or {}).get("status", "")).split(" ")[0]
        if code.startswith("2"):
            report.loaded += 1
            continue
        origin = job.origins[i] if i < len(job.origins) else Item("?")
        where = origin.source + (f" entry {origin.entry}" if origin.entry is not None else "")
        issues = ((entry.get("response") or {}).get("outcome") or {}).get("issue") or ()
        reason = f"{where}: {code} " + "; ".join(x.get("diagnostics", "") for x in issues)
        if _dangling(code, issues) and i < len(job.origins) and job.bundle.get("type") == "batch":
            retry.append(i)
            reasons.append(reason)
        else:
            report.failures.append(reason)
    if retry:
        entries = job.bundle.get("entry") or []
        again = {"resourceType": "Bundle", "type": "batch", "entry": [entries[i] for i in retry]}
        later.append(Pending(Job(again, [job.origins[i] for i in retry]), reasons))


def http_sender(base_url: str, timeout: float = 600) -> Callable[[dict[str, Any]], tuple[int, Any]]:
    import httpx

    client = httpx.Client(timeout=timeout, headers={"Content-Type": "application/fhir+json",
                                                     "Accept": "application/fhir+json",
                                                     "Prefer": "return=minimal"})

    def send(bundle: dict[str, Any]) -> tuple[int, Any]:
        try:
            response = client.post(base_url.rstrip("/"), content=jsonio.dumps(bundle))
        except httpx.HTTPError as exc:
            return 0, {"issue": [{"diagnostics": f"{type(exc).__name__}: {exc}"}]}
        try:
            return response.status_code, response.json()
        except ValueError:
            return response.status_code, response.text

    return send


def local_sender(server: FhirServer) -> Callable[[dict[str, Any]], tuple[int, Any]]:
    """Straight into the server's database, through the same router as HTTP."""
    from fhir_server.errors import FhirError
    from fhir_server.interactions.request import FhirRequest
    from fhir_server.security.identity import Identity

    base = server.settings.base_url or "http://localhost/fhir"

    def send(data: dict[str, Any]) -> tuple[int, Any]:
        try:
            # the command line holds the database itself: it acts with every right
            result = server.dispatch(FhirRequest("POST", base, shape="system", body=data, prefer_return="minimal",
                                                 identity=Identity.anonymous()))
        except FhirError as exc:
            return exc.status, exc.outcome()
        return result.status, jsonio.loads(jsonio.dumps(result.body))

    return send
