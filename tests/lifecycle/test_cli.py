"""The `fhir-server` command line: help, `python -m fhir_server`, and clear start-up errors.

A start-up that cannot go on must say why in one line and exit non-zero: no traceback, and no
embedded database left running behind it.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from lifecycle.support import db_processes, die_with_pytest

ENV_KEYS = ("FHIR_MONGODB_URI", "FHIR_DATA_DIR", "FHIR_PACKAGE_REGISTRY")


def fhir_server_script() -> str:
    sibling = Path(sys.executable).with_name("fhir-server")
    found = str(sibling) if sibling.exists() else shutil.which("fhir-server")
    assert found, "the `fhir-server` console script is not installed (pip install -e .)"
    return found


def run(argv: list[str], cwd: Path, timeout: float = 180, **env: str) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if k not in ENV_KEYS}
    environ.update(env)
    return subprocess.run(argv, cwd=cwd, env=environ, capture_output=True, text=True, timeout=timeout,
                          preexec_fn=die_with_pytest)


def test_help(tmp_path: Path) -> None:
    result = run([fhir_server_script(), "--help"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: fhir-server")
    for command in ("serve", "packages"):
        assert command in result.stdout


def test_serve_help(tmp_path: Path) -> None:
    result = run([fhir_server_script(), "serve", "--help"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: fhir-server serve")
    for option in ("--host", "--port"):
        assert option in result.stdout
    assert not (tmp_path / "fhir-data").exists(), "help starts nothing"


def test_packages_help(tmp_path: Path) -> None:
    result = run([fhir_server_script(), "packages", "--help"], tmp_path)
    assert result.returncode == 0, result.stderr
    for action in ("install", "list", "remove"):
        assert action in result.stdout


def test_python_dash_m(tmp_path: Path) -> None:
    result = run([sys.executable, "-m", "fhir_server", "--help"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert "serve" in result.stdout and "packages" in result.stdout
    # A real command through `python -m` as well (the server itself is started this way by the
    # lifecycle tests).
    cache = tmp_path / "cache"
    listed = run([sys.executable, "-m", "fhir_server", "packages", "list"], tmp_path, FHIR_PACKAGE_CACHE=str(cache))
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout == ""


def test_no_command_is_a_usage_error(tmp_path: Path) -> None:
    result = run([fhir_server_script()], tmp_path)
    assert result.returncode == 2
    assert "usage: fhir-server" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("variable,value", [
    ("FHIR_MAX_BODY_BYTES", "abc"),
    ("FHIR_DB_TIMEOUT_MS", "1.5"),
    ("FHIR_DEFAULT_COUNT", "ten"),
])
def test_bad_integer_setting_is_a_clear_error(variable: str, value: str, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    result = run([fhir_server_script(), "serve", "--port", "1"], tmp_path, timeout=60,
                 FHIR_DATA_DIR=str(data_dir), **{variable: value})
    assert result.returncode not in (0, None)
    assert "Traceback" not in result.stderr + result.stdout
    message = result.stderr.strip().splitlines()[-1]
    assert variable in message and repr(value) in message and "integer" in message, result.stderr
    assert not data_dir.exists(), "nothing is started with a bad setting"
    assert db_processes(data_dir / "db") == []


def test_port_in_use_is_a_clear_error_and_stops_the_database(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run([sys.executable, "-m", "fhir_server", "serve", "--port", str(port)], tmp_path,
                     FHIR_DATA_DIR=str(data_dir))
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "address already in use" in output.lower() or "Errno 98" in output, output
    assert "Traceback" not in output
    assert (data_dir / "db").is_dir(), "the embedded database had been started"
    assert db_processes(data_dir / "db") == [], "and it is stopped when the server gives up"


def test_missing_core_definitions_is_a_clear_error(tmp_path: Path) -> None:
    """Empty package cache, no registry reachable, no npm: say how to install the R4 core."""
    empty_bin = tmp_path / "bin"
    empty_bin.mkdir()
    data_dir = tmp_path / "data"
    result = run([sys.executable, "-m", "fhir_server", "serve", "--port", "1"], tmp_path,
                 FHIR_DATA_DIR=str(data_dir), FHIR_PACKAGE_CACHE=str(tmp_path / "empty-cache"),
                 FHIR_PACKAGE_REGISTRY="http://127.0.0.1:9", PATH=str(empty_bin))
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert "Traceback" not in output
    assert "R4 core definitions" in output and "fhir-server packages install" in output
    assert not (data_dir / "db").exists() and db_processes(data_dir / "db") == []
