"""Regenerate the snapshots of this guide's StructureDefinitions from their differentials.

    FHIR_PACKAGE_CACHE=… python profiles/build.py [--check]

The differentials are the source. The snapshots are generated with the server's own snapshot
generator, over the R4 core and FR Core 2.2.0 from the package cache (install FR Core with
`fhir-server packages install ../shared/fhir-packages/hl7.fhir.fr.core-2.2.0.tgz`). `--check`
writes nothing and fails if a committed snapshot differs from the generated one.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path

from fhir_server.config import Settings
from fhir_server.definitions.loading import load_definitions
from fhir_server.definitions.packages import PackageCache
from fhir_server.definitions.snapshot import snapshots_for

HERE = Path(__file__).resolve().parent


def generate() -> dict[Path, dict]:
    """Each StructureDefinition of the guide with a freshly generated snapshot."""
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "guide"
        shutil.copytree(HERE, source, ignore=shutil.ignore_patterns("*.py", ".*", "__pycache__"))
        for path in source.glob("StructureDefinition-*.json"):
            sd = json.loads(path.read_text(encoding="utf-8"))
            sd.pop("snapshot", None)
            path.write_text(json.dumps(sd), encoding="utf-8")
        settings = Settings.from_env()
        definitions = load_definitions(PackageCache(settings.package_cache, settings.package_registry),
                                       ["hl7.fhir.fr.core@2.2.0", str(source)])
        snapshots = snapshots_for(definitions)
        out = {}
        for path in sorted(HERE.glob("StructureDefinition-*.json")):
            sd = json.loads(path.read_text(encoding="utf-8"))
            built = snapshots.structure_definition(sd["url"])
            if built is None or "snapshot" not in built:
                raise SystemExit(f"{path.name}: no snapshot: {snapshots.error(sd['url'])}")
            sd["snapshot"] = built["snapshot"]
            out[path] = sd
        return out


def main() -> int:
    check = "--check" in sys.argv
    stale = []
    for path, sd in generate().items():
        text = json.dumps(sd, indent=2, ensure_ascii=False) + "\n"
        if path.read_text(encoding="utf-8") != text:
            stale.append(path.name)
            if not check:
                path.write_text(text, encoding="utf-8")
    if check and stale:
        print("snapshots out of date: " + ", ".join(stale) + " (run python profiles/build.py)")
        return 1
    count = len(list(HERE.glob("StructureDefinition-*.json")))
    print(("checked " if check else "built ") + f"{count} StructureDefinitions")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
