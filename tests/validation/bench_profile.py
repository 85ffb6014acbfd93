"""Timing of the profile validator (a measurement, not a test).

    FHIR_PACKAGE_CACHE=/path/to/cache python tests/validation/bench_profile.py

For a few R4 and FR Core examples: the structural validation time (for scale), then the profile
validator against the base definition (what runs on every write: bindings, invariants,
reference targets, extensions) and against the base plus the FR Core profile the example
declares. "first" includes compiling the definitions and expressions; "per call" is the best of
several rounds of CPU time (process time: the machine may be shared), in microseconds.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

from fhir_server import jsonio
from fhir_server.definitions.loading import load_definitions
from fhir_server.definitions.packages import PackageCache
from fhir_server.terminology import Terminology
from fhir_server.validation.profile import ProfileValidator
from fhir_server.validation.structural import StructuralValidator

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "fhir-packages"


def best_time(fn, rounds: int = 7, budget: float = 0.03) -> float:
    fn()
    start = time.process_time()
    fn()
    once = max(time.process_time() - start, 1e-6)
    number = max(1, int(budget / once))
    best = float("inf")
    for _ in range(rounds):
        t = time.process_time()
        for _ in range(number):
            fn()
        best = min(best, (time.process_time() - t) / number)
    return best


def main() -> None:
    cache = PackageCache(Path(os.environ.get("FHIR_PACKAGE_CACHE", "~/.fhir/packages")).expanduser())
    definitions = load_definitions(cache, [str(SHARED / "hl7.fhir.fr.core-2.2.0.tgz")])
    structural = StructuralValidator(definitions)
    profiles = ProfileValidator(definitions, Terminology(definitions))
    core = definitions.core.root
    fr = next(p for p in definitions.packages if p.name == "hl7.fhir.fr.core").root / "example"
    cases = [core / n for n in ("Patient-example.json", "Observation-example.json", "Observation-f001.json",
                                "Observation-blood-pressure.json", "CarePlan-example.json",
                                "CarePlan-integrate.json", "MedicationRequest-medrx0301.json")]
    cases += [fr / n for n in ("Patient-FRCorePatientExample.json", "Observation-FRCoreObservationBPExample.json",
                               "Observation-FRCoreObservationBodyWeightExample.json",
                               "Practitioner-FRCorePractitionerExample.json",
                               "Organization-FRCoreOrganizationExample.json")]
    print(f"{'example':48} {'structural':>10} {'base first':>11} {'base':>8} {'+profile first':>15} {'+profile':>9}"
          "  profile")
    for path in cases:
        if not path.exists():
            continue
        resource = jsonio.loads(path.read_bytes())
        s = best_time(lambda r=resource: structural.validate(r))
        t = time.process_time()
        profiles.validate(resource)
        base_first = time.process_time() - t
        base = best_time(lambda r=resource: profiles.validate(r))
        declared = profiles.declared_profiles(resource) if path.parent == fr else []
        line = f"{path.name:48} {s * 1e6:>8.0f}µs {base_first * 1e3:>9.1f}ms {base * 1e6:>6.0f}µs"
        if declared:
            t = time.process_time()
            profiles.validate(resource, declared)
            first = time.process_time() - t
            full = best_time(lambda r=resource, d=declared: profiles.validate(r, d))
            line += f" {first * 1e3:>13.1f}ms {full * 1e6:>7.0f}µs  {declared[0].rsplit('/', 1)[-1]}"
        print(line)
    observations = [jsonio.loads(p.read_bytes()) for p in sorted(core.glob("Observation-*.json"))]
    observations = [o for o in observations if o.get("resourceType") == "Observation" and not structural.validate(o)]
    times = [best_time(lambda o=o: profiles.validate(o), rounds=3, budget=0.01) for o in observations]
    print(f"{len(observations)} R4 Observation examples, base: median {statistics.median(times) * 1e6:.0f} µs, "
          f"mean {statistics.mean(times) * 1e6:.0f} µs, max {max(times) * 1e6:.0f} µs per resource")


if __name__ == "__main__":
    sys.exit(main())
