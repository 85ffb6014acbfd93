"""The official R4 examples (hl7.fhir.r4.examples 4.0.1) as a corpus: every instance example is
accepted by `PUT [type]/[id]` with its own id and read back equal (apart from meta.versionId and
meta.lastUpdated), decimals compared by their text.

Exceptions: examples that are themselves invalid R4, listed with the reason in
tests/data/r4-example-exceptions.json, must be rejected with 400. Examples larger than the
server's default body limit (16 MiB) cannot be sent in one request: they must get 413, and are
reported as a warning.
"""

from __future__ import annotations

import json
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from fhir_server import jsonio
from tests.conftest import start_server

from .support import exact, without_server_meta

DEFINITION_TYPES = {
    "StructureDefinition", "SearchParameter", "ValueSet", "CodeSystem", "ConceptMap", "OperationDefinition",
    "CapabilityStatement", "CompartmentDefinition", "ImplementationGuide", "NamingSystem", "StructureMap",
    "TerminologyCapabilities", "MessageDefinition", "GraphDefinition", "ExampleScenario",
}
DEFAULT_MAX_BODY = 16 * 1024 * 1024
DATA = Path(__file__).resolve().parent.parent / "data"
# Examples that are not valid R4: structurally (400), and against their base definition's rules
# (reference targets, invariants: 400 or 422), each with its reason.
EXCEPTION_FILES = (DATA / "r4-example-exceptions.json", DATA / "r4-example-profile-exceptions.json")
WORKERS = 4


def _exceptions() -> dict[str, str]:
    out: dict[str, str] = {}
    for path in EXCEPTION_FILES:
        if path.is_file():
            out.update(json.loads(path.read_text(encoding="utf-8")))
    return out


@pytest.fixture(scope="module")
def base_url(tmp_path_factory, r4_examples) -> str:
    """A server of its own with FHIR_REFERENTIAL_INTEGRITY=off: the examples refer to each other
    in every direction and to resources the package does not hold (Patient/example's
    `managingOrganization` is Organization/1), so one at a time, most would be refused (422).
    Its time budget is generous: the large Bundle examples, validated while other PUTs run, may
    take more than the default 30 s on a loaded machine, and the budget has tests of its own."""
    running = start_server(tmp_path_factory.mktemp("r4-corpus"),
                           extra_env={"FHIR_REFERENTIAL_INTEGRITY": "off", "FHIR_REQUEST_TIMEOUT_S": "300"})
    yield running.base_url
    running.stop()


@pytest.fixture(scope="module")
def examples(r4_examples) -> list[tuple[Path, str, str, int]]:
    """(path, resourceType, id, size) of every instance example of the package."""
    out = []
    for path in sorted(r4_examples.root.glob("*.json")):
        if path.name == "package.json" or path.name.startswith("."):
            continue
        data = json.loads(path.read_bytes())
        if not isinstance(data, dict) or "resourceType" not in data:
            continue
        if data["resourceType"] in DEFINITION_TYPES:
            continue
        out.append((path, data["resourceType"], data["id"], path.stat().st_size))
    return out


def test_the_corpus_is_the_one_expected(examples):
    assert 700 <= len(examples) <= 740, len(examples)
    keys = [(t, i) for _, t, i, _ in examples]
    assert len(keys) == len(set(keys)), "two examples share a type and id"
    names = {p.name for p, _, _, _ in examples}
    missing = sorted(set(_exceptions()) - names)
    assert not missing, f"exceptions listed for files that are not instance examples: {missing}"


def _put_and_read(client: httpx.Client, path: Path, type_: str, id_: str) -> tuple[str, str] | None:
    """None if the example went through; else (file, what went wrong)."""
    raw = path.read_bytes()
    r = client.put(f"/{type_}/{id_}", content=raw, headers={"Content-Type": "application/fhir+json"})
    if r.status_code != 201:
        return path.name, f"PUT → {r.status_code}: {r.text[:600]}"
    if r.headers.get("etag") != 'W/"1"':
        return path.name, f"PUT → ETag {r.headers.get('etag')}"
    got = client.get(f"/{type_}/{id_}")
    if got.status_code != 200:
        return path.name, f"GET → {got.status_code}: {got.text[:300]}"
    stored = jsonio.loads(got.content)
    if stored.get("meta", {}).get("versionId") != "1" or "lastUpdated" not in stored.get("meta", {}):
        return path.name, f"stored meta is {stored.get('meta')}"
    sent = exact(without_server_meta(jsonio.loads(raw)))
    back = exact(without_server_meta(stored))
    if type_ == "Subscription" and sent.get("status") == "requested" and back.get("status") == "active":
        back["status"] = "requested"  # the server takes a Subscription it can serve: requested → active
    if sent != back:
        diff = sorted(k for k in set(sent) | set(back) if sent.get(k) != back.get(k))
        return path.name, f"read back differs in {diff}"
    return None


def _rejected(client: httpx.Client, path: Path, type_: str, id_: str,
              status: int | tuple[int, ...]) -> tuple[str, str] | None:
    r = client.put(f"/{type_}/{id_}", content=path.read_bytes(), headers={"Content-Type": "application/fhir+json"})
    wanted = status if isinstance(status, tuple) else (status,)
    if r.status_code not in wanted or r.json().get("resourceType") != "OperationOutcome":
        return path.name, f"expected {status}, got {r.status_code}: {r.text[:300]}"
    if client.get(f"/{type_}/{id_}").status_code != 404:
        return path.name, "stored although rejected"
    return None


def test_every_instance_example_round_trips(base_url, examples):
    exceptions = _exceptions()
    accepted = [e for e in examples if e[0].name not in exceptions and e[3] <= DEFAULT_MAX_BODY]
    assert len(accepted) >= 700
    with httpx.Client(base_url=base_url, timeout=600, limits=httpx.Limits(max_keepalive_connections=WORKERS),
                      headers={"Accept": "application/fhir+json"}) as client:
        with ThreadPoolExecutor(WORKERS) as pool:
            failures = [f for f in pool.map(lambda e: _put_and_read(client, e[0], e[1], e[2]), accepted) if f]
    assert not failures, f"{len(failures)} of {len(accepted)} examples failed:\n" + "\n".join(
        f"  {name}: {why}" for name, why in failures[:40])


def test_listed_invalid_examples_are_rejected(base_url, examples):
    exceptions = _exceptions()
    listed = [e for e in examples if e[0].name in exceptions and e[3] <= DEFAULT_MAX_BODY]
    with httpx.Client(base_url=base_url, timeout=600) as client:
        failures = [f for e in listed if (f := _rejected(client, e[0], e[1], e[2], (400, 422)))]
    assert not failures, failures


def test_examples_over_the_default_body_limit_get_413(base_url, examples):
    big = [e for e in examples if e[3] > DEFAULT_MAX_BODY]
    assert {e[0].name for e in big} == {"Bundle-dataelements.json", "Bundle-resources.json"}
    with httpx.Client(base_url=base_url, timeout=600) as client:
        failures = [f for e in big if (f := _rejected(client, e[0], e[1], e[2], 413))]
    assert not failures, failures
    warnings.warn(
        "R4 examples larger than the default FHIR_MAX_BODY_BYTES (16 MiB) are not loadable in one request: "
        + ", ".join(f"{e[0].name} ({e[3] / 1024 / 1024:.1f} MiB)" for e in big), UserWarning, stacklevel=1)
