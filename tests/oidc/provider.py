"""A real OpenID provider (the npm package oidc-provider, run by tests/oidc/provider.mjs) for tests.

    with OidcProvider([Client("app", "secret", scope="system/*.read",
                              claims={"fhirUser": "Practitioner/1"})],
                      audience="http://127.0.0.1:8080/fhir") as op:
        token = op.token("app", scope="system/*.read")             # real client_credentials grant
        forged = op.mint.expired(scope="system/*.read")            # see mint.py

The first start runs `npm ci` in tests/oidc when node_modules lacks the pinned oidc-provider.
The provider process dies with the test process: its stdin is a pipe from us (EOF → it exits),
PR_SET_PDEATHSIG on Linux, and it watches its parent pid.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from .mint import Minter

HERE = Path(__file__).resolve().parent
SCRIPT = HERE / "provider.mjs"

__all__ = ["Client", "OidcProvider", "TokenError", "ensure_installed", "node_missing", "require_node"]


class TokenError(Exception):
    """The token endpoint refused: `status`, `error` (e.g. invalid_scope), `body` (its JSON)."""

    def __init__(self, status: int, body: Any):
        self.status = status
        self.body = body
        self.error = body.get("error") if isinstance(body, dict) else None
        super().__init__(f"token endpoint answered {status}: {body}")


@dataclass
class Client:
    """A client of the provider, allowed the client_credentials grant.

    scope: the scopes it may ask for (space separated or a list); claims: extra claims put into
    each of its access tokens (fhirUser, patient, purpose_of_use, ...); alg: JWS alg of its tokens;
    kid: sign with this key of the provider's JWKS; audience: a fixed aud whatever `resource` is
    asked; ttl: token lifetime in seconds; format: "jwt" or "opaque"; auth_method:
    client_secret_basic or client_secret_post."""

    client_id: str
    client_secret: str = "secret"
    scope: str | list[str] = ""
    claims: dict[str, Any] = field(default_factory=dict)
    alg: str = "RS256"
    kid: str | None = None
    audience: str | None = None
    ttl: int | None = None
    format: str = "jwt"
    auth_method: str = "client_secret_basic"

    def as_config(self) -> dict:
        config = asdict(self)
        config["scope"] = self.scope if isinstance(self.scope, str) else " ".join(self.scope)
        config["token_endpoint_auth_method"] = config.pop("auth_method")
        return {k: v for k, v in config.items() if v is not None}


# ---- node and npm -------------------------------------------------------------------------------

def node_missing() -> str | None:
    """Why the provider cannot run here (node or npm not on PATH), or None."""
    missing = [tool for tool in ("node", "npm") if shutil.which(tool) is None]
    if missing:
        return f"{' and '.join(missing)} not found on PATH: the OIDC tests run oidc-provider (npm) under Node.js"
    return None


def require_node() -> None:
    """Skip the calling test when node/npm are missing, unless CI is set: then fail."""
    import pytest

    reason = node_missing()
    if reason is None:
        return
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{reason} (CI is set, so this is a failure, not a skip)", pytrace=False)
    pytest.skip(reason)


def _pinned_version() -> str:
    return json.loads((HERE / "package.json").read_text())["dependencies"]["oidc-provider"]


def _installed_version() -> str | None:
    manifest = HERE / "node_modules" / "oidc-provider" / "package.json"
    try:
        return json.loads(manifest.read_text())["version"]
    except (OSError, ValueError, KeyError):
        return None


def ensure_installed(timeout: float = 300) -> None:
    """`npm ci` in tests/oidc unless node_modules already has the pinned oidc-provider. A file lock
    keeps parallel test processes from installing at once."""
    if _installed_version() == _pinned_version():
        return
    lock_path = Path(tempfile.gettempdir()) / f"fhir-oidc-npm-{hashlib.sha256(str(HERE).encode()).hexdigest()[:16]}.lock"
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _installed_version() == _pinned_version():
            return
        result = subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=HERE,
                                stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)
        if result.returncode != 0 or _installed_version() != _pinned_version():
            raise RuntimeError(f"npm ci in {HERE} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")


def _die_with_parent() -> None:
    """Linux: SIGTERM the provider when the process that started it dies (as
    fhir_server/storage/embedded.py does for the database)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


# ---- the provider -------------------------------------------------------------------------------

class OidcProvider:
    """oidc-provider in a child process on 127.0.0.1.

    clients: Client objects or dicts of the same fields; audience: aud of tokens asked without a
    `resource`; port: 0 lets the OS choose. The provider also publishes the keys of `self.mint`
    (a Minter whose issuer/audience are this provider's), so minted tokens verify against its JWKS.
    """

    def __init__(self, clients: Iterable[Client | Mapping] = (), audience: str | None = None,
                 port: int = 0, minter: Minter | None = None, workdir: Path | None = None):
        self.clients = {c.client_id: c for c in (c if isinstance(c, Client) else Client(**c) for c in clients)}
        self.audience = audience
        self.port = port
        self.mint = minter or Minter(audience=audience)
        self.mint.audience = self.mint.audience or audience
        self._own_workdir = workdir is None
        self.workdir = Path(workdir) if workdir else None
        self.process: subprocess.Popen | None = None
        self.issuer: str | None = None
        self.generated_kids: dict[str, str] = {}
        self._http = httpx.Client(timeout=30)
        self._discovery: dict | None = None

    # ---- life cycle ----------------------------------------------------------------------------

    def start(self, timeout: float = 60) -> OidcProvider:
        reason = node_missing()
        if reason:
            raise RuntimeError(reason)
        ensure_installed()
        if self.workdir is None:
            self.workdir = Path(tempfile.mkdtemp(prefix="oidc-provider-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = {"clients": [c.as_config() for c in self.clients.values()], "jwks": self.mint.private_jwks()}
        if self.audience:
            config["audience"] = self.audience
        config_path = self.workdir / "config.json"
        config_path.write_text(json.dumps(config, indent=2))
        config_path.chmod(0o600)
        self.log_path = self.workdir / "provider.log"
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                ["node", str(SCRIPT), "--port", str(self.port), "--config", str(config_path)],
                cwd=HERE, stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent if sys.platform == "linux" else None)
        self._wait_ready(timeout)
        self.mint.issuer = self.issuer
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.log().splitlines():
                if line.startswith("READY "):
                    ready = json.loads(line[len("READY "):])
                    self.port, self.issuer, self.generated_kids = ready["port"], ready["issuer"], ready["kids"]
                    return
            if self.process.poll() is not None:
                raise RuntimeError(f"oidc-provider exited with {self.process.returncode}:\n{self.log()}")
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"oidc-provider not ready after {timeout}s:\n{self.log()}")

    def log(self) -> str:
        path = getattr(self, "log_path", None)
        return path.read_text(errors="replace") if path and path.exists() else ""

    def stop(self, timeout: float = 10) -> None:
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(OSError):
                self.process.stdin.close()  # the provider exits on EOF
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process is not None and self.process.stdin:
            with contextlib.suppress(OSError):
                self.process.stdin.close()
        self._http.close()
        if self._own_workdir and self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> OidcProvider:
        return self.start() if self.process is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- what it publishes ---------------------------------------------------------------------

    @property
    def discovery_url(self) -> str:
        return f"{self.issuer}/.well-known/openid-configuration"

    def discovery(self) -> dict:
        if self._discovery is None:
            response = self._http.get(self.discovery_url)
            response.raise_for_status()
            self._discovery = response.json()
        return self._discovery

    @property
    def jwks_uri(self) -> str:
        return self.discovery()["jwks_uri"]

    @property
    def token_endpoint(self) -> str:
        return self.discovery()["token_endpoint"]

    def jwks(self) -> dict:
        """The public JWKS as published at jwks_uri: the generated keys, then the minter's."""
        response = self._http.get(self.jwks_uri)
        response.raise_for_status()
        return response.json()

    def public_jwk(self, kid: str) -> dict:
        return next(k for k in self.jwks()["keys"] if k["kid"] == kid)

    # ---- tokens --------------------------------------------------------------------------------

    def token_response(self, client_id: str, scope: str | Iterable[str] | None = None,
                       audience: str | None = None, client_secret: str | None = None,
                       **params: str) -> httpx.Response:
        """The raw answer of a client_credentials token request. `audience` is sent as the RFC 8707
        `resource` (an absolute URI); without it the token's aud is the client's or provider's."""
        client = self.clients.get(client_id)
        secret = client_secret if client_secret is not None else (client.client_secret if client else "")
        data = {"grant_type": "client_credentials", **params}
        if scope is not None:
            data["scope"] = scope if isinstance(scope, str) else " ".join(scope)
        if audience is not None:
            data["resource"] = audience
        if client is not None and client.auth_method == "client_secret_post":
            data.update(client_id=client_id, client_secret=secret)
            return self._http.post(self.token_endpoint, data=data)
        # RFC 6749 2.3.1: id and secret are form-urlencoded before the Basic encoding.
        auth = (quote(client_id, safe=""), quote(secret, safe=""))
        return self._http.post(self.token_endpoint, data=data, auth=auth)

    def token(self, client_id: str, scope: str | Iterable[str] | None = None, audience: str | None = None,
              client_secret: str | None = None) -> str:
        """A real access token from the client_credentials grant; TokenError if refused."""
        response = self.token_response(client_id, scope=scope, audience=audience, client_secret=client_secret)
        try:
            body = response.json()
        except ValueError:
            body = response.text
        if response.status_code != 200:
            raise TokenError(response.status_code, body)
        return body["access_token"]

    def introspect(self, token: str, client_id: str) -> dict:
        """RFC 7662 introspection by `client_id` (for opaque tokens, format="opaque")."""
        client = self.clients[client_id]
        response = self._http.post(self.discovery()["introspection_endpoint"], data={"token": token},
                                   auth=(quote(client_id, safe=""), quote(client.client_secret, safe="")))
        response.raise_for_status()
        return response.json()
