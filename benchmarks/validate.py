"""Validation throughput: resources validated per second, base R4 vs FR Core profiles.

    FHIR_PACKAGE_CACHE=… python -m benchmarks.validate [--seconds 3] [--profile]

Resources: the examples of FR Core 2.2.0 (which declare FR Core profiles; `--fr-core PATH`, by
default `hl7.fhir.fr.core-2.2.0.tgz` in FHIR_TEST_PACKAGES or in `../shared/fhir-packages` beside
the repository, as for the tests) and the R4 examples of the same types. Three stages, as a write runs them:
structural (well-formed R4 JSON, INS keys), the base definition's rules (required bindings,
invariants, reference targets), and the declared FR Core profiles. Compiled profiles are
cached, so the first round (compilation) is reported apart. `--profile` prints where the time
of the profile stage goes (cProfile, top functions).
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import tarfile
import time
from pathlib import Path

from benchmarks import report
from fhir_server import jsonio
from fhir_server.config import Settings
from fhir_server.definitions.loading import load_definitions
from fhir_server.definitions.packages import PackageCache
from fhir_server.terminology import Terminology
from fhir_server.validation.ins import InsCheck
from fhir_server.validation.profile import ProfileValidator
from fhir_server.validation.structural import StructuralValidator

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "fhir-packages"
FR_CORE = Path(os.environ.get("FHIR_TEST_PACKAGES") or SHARED) / "hl7.fhir.fr.core-2.2.0.tgz"


def fr_examples(fr_core: Path) -> list[dict]:
    with tarfile.open(fr_core) as tar:
        return [jsonio.loads(tar.extractfile(m).read()) for m in tar.getmembers()
                if m.name.startswith("package/example/") and m.name.endswith(".json")]


def rate(fn, resources: list[dict], seconds: float) -> float:
    """Resources per second over repeated passes for about `seconds`."""
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for resource in resources:
            fn(resource)
        done += len(resources)
    return done / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--fr-core", type=Path, default=FR_CORE, help=f"FR Core 2.2.0 archive (default: {FR_CORE})")
    parser.add_argument("--out", default=report.out_path("validate.json"), help="default: benchmarks/out/validate.json")
    args = parser.parse_args()
    if not args.fr_core.is_file():
        parser.error(f"{args.fr_core} not found: give FR Core 2.2.0 with --fr-core PATH "
                     "(or set FHIR_TEST_PACKAGES to the folder holding hl7.fhir.fr.core-2.2.0.tgz)")
    settings = Settings.from_env()
    definitions = load_definitions(PackageCache(settings.package_cache, settings.package_registry), [str(args.fr_core)])
    structural = StructuralValidator(definitions, resource_checks=[InsCheck()])
    rules = ProfileValidator(definitions, Terminology(definitions))
    french = fr_examples(args.fr_core)
    types = {r["resourceType"] for r in french}
    r4 = [r for r in definitions.core.resources() if r.get("resourceType") in types][:60]

    start = time.perf_counter()
    for resource in french:
        rules.validate(resource, (resource.get("meta") or {}).get("profile") or ())
    first_round_ms = (time.perf_counter() - start) * 1000

    results = {
        "structural (R4 examples)": rate(lambda r: structural.validate(r), r4, args.seconds),
        "base rules (R4 examples)": rate(lambda r: rules.validate(r), r4, args.seconds),
        "structural (FR Core examples)": rate(lambda r: structural.validate(r), french, args.seconds),
        "base rules (FR Core examples)": rate(lambda r: rules.validate(r), french, args.seconds),
        "base rules + FR Core profiles (FR Core examples)": rate(
            lambda r: rules.validate(r, (r.get("meta") or {}).get("profile") or ()), french, args.seconds),
    }
    print(f"{len(r4)} R4 examples, {len(french)} FR Core examples; first FR Core round (compiling): "
          f"{first_round_ms:.0f} ms")
    for name, per_s in results.items():
        print(f"{name:<52} {per_s:>8.0f} resources/s  ({1e6 / per_s:>7.0f} µs each)")
    ratio = results["base rules + FR Core profiles (FR Core examples)"] / results["base rules (FR Core examples)"]
    print(f"FR Core profiles ÷ base rules (throughput): {ratio:.2f}")
    report.write_json({"resources_per_s": results, "first_round_ms": first_round_ms, "fr_core_over_base": ratio},
                      Path(args.out))
    if args.profile:
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(20):
            for resource in french:
                rules.validate(resource, (resource.get("meta") or {}).get("profile") or ())
        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(15)


if __name__ == "__main__":
    main()
