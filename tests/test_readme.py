"""The README's configuration table is the settings the code reads, no more, no less."""

from __future__ import annotations

from fhir_server.config import Settings
from tests.conftest import ROOT


def test_configuration_table_matches_settings():
    readme = (ROOT / "README.md").read_text()
    rows = {line.split("|")[1].strip().strip("`"): line for line in readme.splitlines()
            if line.startswith("| `FHIR_")}
    described = {env: (default, doc) for env, default, doc in Settings.describe()}
    assert set(rows) == set(described)
    for env, (default, doc) in described.items():
        assert f"| `{default}` | {doc} |" in rows[env], env


def test_concept_table_is_generated_from_the_mapping():
    from fhir_server.tools.concepts import table

    assert table() in (ROOT / "README.md").read_text()
