"""Timing of the structural validator on R4 examples (a measurement, not a test).

    FHIR_PACKAGE_CACHE=/path/to/cache python tests/validation/bench_structural.py [--no-memo]

Prints the first-use time (model compilation included) and the steady-state time per
resource (best of several rounds) for a few examples and groups of examples. Validating the
same resource again finds its strings in the memo of valid values; `--no-memo` turns that
memo off, which gives the cost for values never seen before.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

from fhir_server import jsonio
from fhir_server.definitions.packages import PackageCache
from fhir_server.definitions.registry import Definitions, ensure_core
from fhir_server.validation import primitives
from fhir_server.validation.structural import StructuralValidator


def best_time(fn, budget: float = 0.5) -> float:
    """Best per-call time over rounds of repeated calls (seconds)."""
    start = time.perf_counter()
    fn()
    once = time.perf_counter() - start
    number = max(1, int(0.05 / max(once, 1e-6)))
    rounds = []
    deadline = time.perf_counter() + budget
    while True:
        t = time.perf_counter()
        for _ in range(number):
            fn()
        rounds.append((time.perf_counter() - t) / number)
        if time.perf_counter() > deadline and len(rounds) >= 3:
            return min(rounds)


def main() -> None:
    if "--no-memo" in sys.argv:
        primitives._MEMO_LENGTH = -1
    cache = PackageCache(Path(os.environ.get("FHIR_PACKAGE_CACHE", "~/.fhir/packages")).expanduser())
    t = time.perf_counter()
    definitions = Definitions([ensure_core(cache)])
    validator = StructuralValidator(definitions)
    print(f"definitions loaded in {(time.perf_counter() - t) * 1e3:.1f} ms")
    root = definitions.core.root

    def load(name: str):
        return jsonio.loads((root / name).read_bytes())

    singles = ["Patient-example.json", "Observation-example.json", "Observation-blood-pressure.json",
               "Observation-example-genetics-1.json", "MedicinalProduct-example.json",
               "Questionnaire-f201.json", "Bundle-bundle-transaction.json", "Bundle-101.json",
               "Bundle-72ac8493-52ac-41bd-8d5d-7258c289b5ea.json", "Bundle-resources.json"]
    print(f"{'example':52} {'size':>9} {'first use':>11} {'per call':>11}")
    for name in singles:
        if not (root / name).exists():
            continue
        resource = load(name)
        t = time.perf_counter()
        issues = validator.validate(resource)
        first = time.perf_counter() - t
        per = best_time(lambda r=resource: validator.validate(r))
        size = (root / name).stat().st_size
        print(f"{name:52} {size:>9} {first * 1e3:>8.2f} ms {per * 1e6:>8.0f} µs"
              + (f"  ({len(issues)} issues)" if issues else ""))
    observations = [load(p.name) for p in sorted(root.glob("Observation-*.json"))]
    observations = [o for o in observations if o.get("resourceType") == "Observation"]
    times = [best_time(lambda o=o: validator.validate(o), budget=0.02) for o in observations]
    print(f"{len(observations)} Observation examples: median {statistics.median(times) * 1e6:.0f} µs, "
          f"mean {statistics.mean(times) * 1e6:.0f} µs, max {max(times) * 1e6:.0f} µs per resource")


if __name__ == "__main__":
    sys.exit(main())
