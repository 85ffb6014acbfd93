"""The layers of docs/ARCHITECTURE.md hold: `lint-imports` checks the contracts of pyproject.toml,
and the architecture page names every module of the server."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

PACKAGE = ROOT / "fhir_server"


def test_import_contracts_are_kept():
    command = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or shutil.which("lint-imports")
    if command is None:
        pytest.fail("lint-imports is missing: pip install -e '.[test]' installs it")
    result = subprocess.run([command, "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


def test_architecture_page_names_every_module():
    page = (ROOT / "docs" / "ARCHITECTURE.md").read_text()
    named = set(re.findall(r"[\w/]+\.py", page))
    missing = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).as_posix()
        if path.name == "__init__.py" and path.stat().st_size < 400:
            continue  # a package's docstring only
        short = path.name if path.parent != PACKAGE else relative
        if relative not in named and f"{path.parent.name}/{path.name}" not in named and short not in named:
            missing.append(relative)
    assert not missing, f"docs/ARCHITECTURE.md does not name: {', '.join(missing)}"
