"""The concept → profile map of the coordination guide (`mappings/concepts.json`), checked
against its JSON Schema, and the README table made from it (`python -m fhir_server.tools.concepts`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema

MAPPINGS = Path(__file__).resolve().parents[2] / "mappings"


def load() -> dict[str, Any]:
    data = json.loads((MAPPINGS / "concepts.json").read_text(encoding="utf-8"))
    jsonschema.validate(data, json.loads((MAPPINGS / "concepts.schema.json").read_text(encoding="utf-8")))
    return data


def table(data: dict[str, Any] | None = None) -> str:
    data = data or load()
    lines = ["| Concept | FHIR | Profile | Behaviour |", "|---|---|---|---|"]
    for c in data["concepts"]:
        name = c["profile"].rsplit("/", 1)[-1]
        lines.append(f"| {c['concept']} ({c['english']}) | {c['resource']} | `{name}` | "
                     f"{'; '.join(f'`{b}`' for b in c['behaviour']) or '—'} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(table())
