"""Every instance example of the official R4 package is structurally valid.

The only exceptions are examples that really break R4; they are listed, with the reason, in
tests/data/r4-example-exceptions.json, and must still be rejected (so that the list cannot
hide a validator that accepts everything, nor keep entries that are no longer needed).
"""

from __future__ import annotations

import json
from pathlib import Path

from fhir_server import jsonio

EXCEPTIONS_FILE = Path(__file__).resolve().parent.parent / "data" / "r4-example-exceptions.json"
EXCEPTIONS: dict[str, str] = json.loads(EXCEPTIONS_FILE.read_text(encoding="utf-8"))


def test_example(example_file, core_package, validator):
    resource = jsonio.loads((core_package.root / example_file).read_bytes())
    issues = validator.validate(resource)
    if example_file in EXCEPTIONS:
        assert issues, (f"{example_file} is listed as invalid R4 ({EXCEPTIONS[example_file]}) but validates: "
                        "remove it from tests/data/r4-example-exceptions.json")
        return
    report = "\n".join(f"  {i.code} at {', '.join(i.expression)}: {i.diagnostics}" for i in issues[:20])
    assert not issues, f"{example_file}: {len(issues)} issue(s)\n{report}"


def test_exceptions_are_listed_examples_with_reasons(example_file_names):
    files = set(example_file_names)
    assert len(files) > 700  # the whole corpus, Bundles of definitions included
    for name, reason in EXCEPTIONS.items():
        assert name in files, f"{name} is not an instance example of the package"
        assert isinstance(reason, str) and len(reason) > 20, f"give a precise reason for {name}"
