"""The corpus test: every core SearchParameter against the R4 instance examples.

The R4 instance examples (hl7.fhir.r4.examples 4.0.1, definition types left out, the invalid
ones of tests/data/r4-example-exceptions.json skipped) are PUT with their own ids into a server
started for this module alone. Then, for every SearchParameter of the core package
(Bundle-searchParams.json, those with an expression) whose base is a loaded type:

- `<code>:missing=false` must return exactly the resources in which the expression selects a
  searchable value;
- a few actual values (spread over the sorted distinct values of the corpus) become queries of
  the parameter's type — token `system|code` (and `|code`, `code`), string the first three
  letters and `:exact` the whole part, date `eq` plus one other prefix, reference `Type/id` and
  `:identifier`, quantity `value|system|code`, number and uri the exact value, composite
  `a$b`, near `lat|long|1|km` — and each must return exactly the resources the oracle
  (corpus_oracle.py: fhirpathpy + plain R4 matching rules, no server code) finds.

Known and explained differences are listed in tests/data/search-corpus-mismatches.json as
`{"<param url> <query>": "explanation"}`; any other difference fails the test. Explanations
that no longer match a difference are reported as a warning (the server may have been fixed).
"""

from __future__ import annotations

import json
import warnings
import zlib
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from . import corpus_oracle as oracle

DATA = Path(__file__).resolve().parent.parent / "data"
EXCEPTION_FILES = (DATA / "r4-example-exceptions.json", DATA / "r4-example-profile-exceptions.json")
MISMATCHES_FILE = DATA / "search-corpus-mismatches.json"
DEFINITION_TYPES = {
    "StructureDefinition", "SearchParameter", "ValueSet", "CodeSystem", "ConceptMap", "OperationDefinition",
    "CapabilityStatement", "CompartmentDefinition", "ImplementationGuide", "NamingSystem", "StructureMap",
    "TerminologyCapabilities", "MessageDefinition", "GraphDefinition", "ExampleScenario",
}
MAX_BODY = 16 * 1024 * 1024
VALUES_PER_PARAM = 3
DATE_PREFIXES = ("ge", "lt", "sa", "eb", "le", "gt", "ne")
# Parameters about the resource itself: searched at system level, over the whole corpus.
RESOURCE_LEVEL = ("Resource", "DomainResource")
SYSTEM_SEARCHABLE = {"_id", "_lastUpdated", "_tag", "_profile", "_security", "_source"}
WORKERS = 3


def load_json(raw: bytes) -> Any:
    return json.loads(raw, parse_float=Decimal)


@pytest.fixture(scope="module")
def corpus_server(tmp_path_factory, r4_examples):
    from tests.conftest import start_server

    # the oracle evaluates the examples alone: no AuditEvents of the test's own requests beside them;
    # the examples refer to resources the package does not hold (Organization/1…): integrity off
    running = start_server(tmp_path_factory.mktemp("search-corpus"),
                           extra_env={"FHIR_AUDIT": "false", "FHIR_REFERENTIAL_INTEGRITY": "off"})
    yield running
    running.stop()


@pytest.fixture(scope="module")
def http(corpus_server):
    with httpx.Client(base_url=corpus_server.base_url, timeout=120,
                      limits=httpx.Limits(max_keepalive_connections=WORKERS),
                      headers={"Accept": "application/fhir+json"}) as client:
        yield client


def instance_examples(root: Path) -> list[tuple[Path, str, str]]:
    skipped = {name for f in EXCEPTION_FILES if f.is_file() for name in json.loads(f.read_text(encoding="utf-8"))}
    out = []
    for path in sorted(root.glob("*.json")):
        if path.name == "package.json" or path.name in skipped or path.stat().st_size > MAX_BODY:
            continue
        data = json.loads(path.read_bytes())
        if isinstance(data, dict) and "resourceType" in data and data["resourceType"] not in DEFINITION_TYPES:
            out.append((path, data["resourceType"], data["id"]))
    return out


def load_corpus(http: httpx.Client, examples) -> tuple[dict[str, list[dict[str, Any]]], list[str]]:
    """PUT every example; the corpus is what the server answered (its stored version)."""

    def put(example):
        path, type_, id_ = example
        r = http.put(f"/{type_}/{id_}", content=path.read_bytes(),
                     headers={"Content-Type": "application/fhir+json"})
        if r.status_code not in (200, 201):
            return None, f"{path.name}: PUT → {r.status_code} {r.text[:200]}"
        return load_json(r.content), None

    by_type: dict[str, list[dict[str, Any]]] = {}
    failures = []
    with ThreadPoolExecutor(WORKERS) as pool:
        for resource, failure in pool.map(put, examples):
            if failure:
                failures.append(failure)
            else:
                by_type.setdefault(resource["resourceType"], []).append(resource)
    return by_type, failures


def search_parameters(root: Path) -> list[dict[str, Any]]:
    bundle = json.loads((root / "Bundle-searchParams.json").read_bytes())
    return [e["resource"] for e in bundle["entry"]
            if e["resource"].get("resourceType") == "SearchParameter" and e["resource"].get("expression")]


# -- planning: the checks to run -----------------------------------------------------------------
class Check:
    """One query and the ids the oracle expects (keys `Type/id`)."""

    def __init__(self, url: str, path: str, params: list[tuple[str, str]], expected: set[str], kind: str):
        self.url, self.path, self.params, self.expected, self.kind = url, path, params, expected, kind

    @property
    def key(self) -> str:
        query = "&".join(f"{k}={v}" for k, v in self.params)
        return f"{self.url} {self.path}?{query}"


def _value_rows(sp, resource, by_url, base) -> list[Any]:
    """Per resource: the values (or, for composites, the component value rows)."""
    if sp["type"] == "composite":
        comps = [(by_url.get(c["definition"]), c["expression"]) for c in sp.get("component") or ()]
        if any(c is None for c, _ in comps):
            return []
        rows = oracle.composite_elements(resource, sp["expression"], [e for _, e in comps])
        return [(row, [c["type"] for c, _ in comps]) for row in rows]
    return oracle.evaluate(resource, sp["expression"])


def _composite_has(row_and_types, base) -> bool:
    row, types = row_and_types
    return all(any(oracle.has_value(t, v, base) for v in vals) for t, vals in zip(types, row, strict=True))


def _composite_queries(row_and_types, base) -> list[oracle.Query]:
    row, types = row_and_types
    parts = []
    for t, vals in zip(types, row, strict=True):
        found = next((q for v in vals for q in oracle.queries_for(t, v, base) if q.modifier is None), None)
        if found is None:
            return []
        parts.append((t, found))
    text = "$".join(q.text for _, q in parts)

    def matches(other):
        orow, _ = other
        return all(any(q.matches(v) for v in vals) for (_, q), vals in zip(parts, orow, strict=True))
    return [oracle.Query(None, text, matches)]


def plan_checks(corpus: dict[str, list[dict[str, Any]]], params: list[dict[str, Any]], base: str) -> list[Check]:
    by_url = {sp["url"]: sp for sp in params}
    checks: list[Check] = []
    everything = [(t, r) for t, rs in sorted(corpus.items()) for r in rs]
    for sp in params:
        bases = sp.get("base") or ()
        resource_level = any(b in RESOURCE_LEVEL for b in bases)
        if resource_level:
            if sp["code"] not in SYSTEM_SEARCHABLE:
                # `_language`: one type-level check per loaded type would be 125 queries; use _type
                scope = [("", everything)]
                extra = [("_type", ",".join(sorted(corpus)))]
            else:
                scope, extra = [("", everything)], []
        else:
            scope = [(t, [(t, r) for r in corpus[t]]) for t in bases if t in corpus]
            extra = []
        for path, resources in scope:
            checks.extend(_checks_for(sp, path, resources, by_url, base, extra))
    return checks


def _checks_for(sp, path, resources, by_url, base, extra) -> list[Check]:
    type_, code = sp["type"], sp["code"]
    rows = {f"{t}/{r['id']}": _value_rows(sp, r, by_url, base) for t, r in resources}
    if type_ == "composite":
        has = lambda v: _composite_has(v, base)  # noqa: E731
        make = lambda v, prefix: _composite_queries(v, base)  # noqa: E731
    else:
        has = lambda v: oracle.has_value(type_, v, base)  # noqa: E731
        make = lambda v, prefix: oracle.queries_for(type_, v, base, prefix)  # noqa: E731
    out = []
    if code != "_id":
        expected = {k for k, vals in rows.items() if any(has(v) for v in vals)}
        out.append(Check(sp["url"], path, extra + [(f"{code}:missing", "false")], expected, "missing"))
    # candidate queries, by (modifier, text), from every value of the corpus
    candidates: dict[tuple[str | None, str], oracle.Query] = {}
    for vals in rows.values():
        for v in vals:
            for q in make(v, "eq"):
                candidates.setdefault((q.modifier or "", q.text), q)
    chosen = oracle.spread(sorted(candidates), VALUES_PER_PARAM * (2 if type_ in ("token", "string", "reference") else 1))
    salt = zlib.crc32(f"{sp['url']} {path}".encode())
    for i, key in enumerate(chosen):
        query = candidates[key]
        if type_ == "date" and i > 0:  # the same value with another prefix
            prefix = DATE_PREFIXES[(salt + i) % len(DATE_PREFIXES)]
            query = oracle.date_queries(query.text[2:], prefix)[0]
        expected = {k for k, vals in rows.items() if any(query.matches(v) for v in vals)}
        name = f"{code}:{query.modifier}" if query.modifier else code
        out.append(Check(sp["url"], path, extra + [(name, query.text)], expected, type_))
        if type_ == "token" and i == 0:  # :not — every resource without the code, also those with no value
            negated = {k for k in rows if k not in expected}
            out.append(Check(sp["url"], path, extra + [(f"{code}:not", query.text)], negated, type_))
    return out


# -- running -----------------------------------------------------------------------------------
def run_check(http: httpx.Client, check: Check) -> tuple[set[str] | None, str | None]:
    """The `Type/id` set the server returns for the check (following `next`), or an error."""
    params = check.params + [("_count", "1000")]
    url = f"/{check.path}" if check.path else str(http.base_url).rstrip("/")
    found: set[str] = set()
    r = http.get(url, params=params)
    while True:
        if r.status_code != 200:
            return None, f"HTTP {r.status_code}: {r.text[:300]}"
        bundle = r.json()
        for entry in bundle.get("entry") or ():
            if entry.get("search", {}).get("mode") == "match":
                found.add(f"{entry['resource']['resourceType']}/{entry['resource']['id']}")
            elif entry.get("search", {}).get("mode") == "outcome":
                return None, f"ignored by the server: {json.dumps(entry['resource'])[:300]}"
        nxt = next((link["url"] for link in bundle.get("link") or () if link["relation"] == "next"), None)
        if nxt is None:
            return found, None
        r = http.get(nxt)


def compare(http: httpx.Client, checks: list[Check]) -> dict[str, str]:
    """Differences: check key → what differs."""

    def one(check):
        got, error = run_check(http, check)
        if error:
            return check.key, error
        if got != check.expected:
            missing, extra = sorted(check.expected - got), sorted(got - check.expected)
            return check.key, f"server returns {len(got)}, lacks {missing[:8]}{'…' if len(missing) > 8 else ''} " \
                              f"and adds {extra[:8]}{'…' if len(extra) > 8 else ''}"
        return None

    with ThreadPoolExecutor(WORKERS) as pool:
        return dict(d for d in pool.map(one, checks) if d)


@pytest.fixture(scope="module")
def loaded(http, r4_examples):
    root = r4_examples.root
    corpus, failures = load_corpus(http, instance_examples(root))
    assert not failures, failures[:20]
    return corpus, search_parameters(root)


def test_corpus_is_loaded(loaded):
    corpus, params = loaded
    assert sum(len(v) for v in corpus.values()) >= 700
    assert len(params) >= 1370


@pytest.fixture(scope="module")
def outcome(http, loaded, corpus_server):
    """(checks, differences, explanations) of one run over the whole corpus."""
    corpus, params = loaded
    checks = plan_checks(corpus, params, corpus_server.base_url)
    differences = compare(http, checks)
    explained = json.loads(MISMATCHES_FILE.read_text(encoding="utf-8")) if MISMATCHES_FILE.is_file() else {}
    return checks, differences, explained


def test_every_search_parameter_agrees_with_the_oracle(outcome):
    checks, differences, explained = outcome
    unexplained = {k: v for k, v in differences.items() if k not in explained}
    stale = sorted(set(explained) - set(differences))
    urls = {c.url for c in checks}
    valued = {c.url for c in checks if c.kind != "missing"}
    hits = sum(1 for c in checks if c.kind != "missing" and c.expected)
    summary = (f"{len(urls)} SearchParameters ({len(valued)} with values in the corpus), {len(checks)} queries "
               f"({sum(c.kind == 'missing' for c in checks)} :missing=false, "
               f"{sum(c.kind != 'missing' for c in checks)} by value, {hits} of which match something); "
               f"{len(differences)} differences, {len(differences) - len(unexplained)} explained")
    warnings.warn(f"search corpus: {summary}", UserWarning, stacklevel=1)
    if stale:
        warnings.warn(f"{len(stale)} explained corpus differences no longer occur (fixed?): {stale[:20]}",
                      UserWarning, stacklevel=1)
    assert len(urls) >= 900 and len(checks) >= 3000, summary  # the corpus really exercises the registry
    assert not unexplained, f"{summary}; unexplained:\n" + "\n".join(
        f"  {k}\n      {v}" for k, v in sorted(unexplained.items()))


def test_no_difference_is_a_server_bug(outcome):
    _, differences, explained = outcome
    bugs = sorted(k for k in differences if explained.get(k, "").startswith("SERVER BUG"))
    assert not bugs, f"{len(bugs)} differences are server bugs, e.g. {bugs[:5]}"
