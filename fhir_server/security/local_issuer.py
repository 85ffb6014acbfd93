"""A token issuer on this machine, for demos and tests of the access rules in open mode.

In open mode (no FHIR_AUTH_ISSUER) a request without a token is anonymous and may do everything,
so the scopes, the patient context and the rules about who sees what cannot be tried without
setting up an OpenID provider. `fhir-server token` fills that gap: it signs a JWT (ES256) with a
key kept in the data directory, and a server in open mode verifies a bearer token against that
key, then treats the request exactly as one bearing a real provider's token (same claims, same
Identity, same 401s). A token can only narrow what open mode already allows, and only whoever
may read the data directory can make one. With FHIR_AUTH_ISSUER set nothing here is used: only
the real issuer's tokens count.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import stat
import threading
import time
from pathlib import Path
from typing import Any

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, KeySet

from fhir_server.config import Settings
from fhir_server.security.tokens import InvalidToken, token_header, verify_with

ISSUER = "urn:fhir-server:local-issuer"
CLIENT_ID = "fhir-server-token"  # the `client_id` of its tokens: the audit trail names it
ALGORITHM = "ES256"
KEY_FILE = "local-issuer.jwk"
MAX_MINUTES = 24 * 60
USER_TYPES = ("Practitioner", "PractitionerRole", "Patient", "RelatedPerson", "Person")
_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")  # a FHIR id


class LocalIssuerError(Exception):
    """The key cannot be made or read, or a token cannot be made as asked (the message says why)."""


def key_path(data_dir: Path) -> Path:
    """Beside the embedded database's files: the key belongs to this server's data, never to a
    repository, and whoever may read it may already read the data."""
    return Path(data_dir) / KEY_FILE


def audience(settings: Settings) -> str:
    """The `aud` of local tokens: this server's audience (FHIR_AUTH_AUDIENCE, else FHIR_BASE_URL)
    when one is configured, else the issuer's own name; the same on both sides."""
    return settings.auth_audience or ISSUER


# -- the key -------------------------------------------------------------------------------------
def signing_key(data_dir: Path) -> tuple[ECKey, bool]:
    """The private key (and whether it was made now): read from the data directory, or made
    and kept there on first use."""
    path = key_path(data_dir)
    if not path.exists():
        try:
            return _create_key(path), True
        except FileExistsError:
            pass  # another `fhir-server token` made it meanwhile: use that one
    return _read_key(path, private=True), False


def _create_key(path: Path) -> ECKey:
    """A new P-256 key, written with mode 0600 under a temporary name, then linked to its name
    so that a reader never sees half a file and two writers never overwrite each other's key."""
    key = ECKey.generate_key("P-256", parameters={"use": "sig", "alg": ALGORITHM}, private=True)
    key.ensure_kid()
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(6)}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as out:
            json.dump(key.as_dict(private=True), out)
        os.link(temporary, path)  # FileExistsError if another process won
    finally:
        temporary.unlink(missing_ok=True)
    return key


def _read_key(path: Path, private: bool) -> ECKey:
    """The key file's key (its public half unless `private`). Signing refuses a file others may
    read, as ssh does: the key is what makes a token's identity believable."""
    try:
        if private and stat.S_IMODE(path.stat().st_mode) & 0o077:
            raise LocalIssuerError(f"{path} may be read by other users: chmod 600 {path}")
        data = json.loads(path.read_text())
        key = ECKey.import_key(data)
    except (OSError, ValueError, TypeError, JoseError) as exc:
        raise LocalIssuerError(f"the local issuer's key {path} cannot be read ({exc})") from None
    if not key.is_private or not key.kid or key.get("alg") != ALGORITHM:
        raise LocalIssuerError(f"{path} is not a local issuer key (a private {ALGORITHM} JWK with a kid)")
    return key if private else ECKey.import_key(key.as_dict(private=False))


# -- issuing -------------------------------------------------------------------------------------
def claims(settings: Settings, user: str, scope: str, patient: str | None = None, purpose: str | None = None,
           minutes: int = 60, now: int | None = None) -> dict[str, Any]:
    """The claims of a token for `user` (`Practitioner/ID`…), shaped like an OpenID provider's
    SMART access token so that the server reads them the same way."""
    kind, _, ident = user.partition("/")
    if kind not in USER_TYPES or not _ID.fullmatch(ident):
        raise LocalIssuerError(f"--user must be a reference such as Practitioner/ID ({', '.join(USER_TYPES)}), "
                               f"not {user!r}")
    if patient is not None and patient.startswith("Patient/"):
        patient = patient[len("Patient/"):]
    if patient is not None and not _ID.fullmatch(patient):
        raise LocalIssuerError(f"--patient must be a Patient id, not {patient!r}")
    if not 1 <= minutes <= MAX_MINUTES:
        raise LocalIssuerError(f"--minutes must be between 1 and {MAX_MINUTES}")
    issued = int(time.time()) if now is None else now
    found: dict[str, Any] = {
        "iss": ISSUER, "aud": audience(settings), "sub": user, "client_id": CLIENT_ID, "fhirUser": user,
        "scope": " ".join(scope.split()), "iat": issued, "exp": issued + minutes * 60,
        "jti": secrets.token_urlsafe(16)}
    if patient:
        found["patient"] = patient
    if purpose:
        found["purpose_of_use"] = purpose
    return found


def issue(settings: Settings, user: str, scope: str, patient: str | None = None, purpose: str | None = None,
          minutes: int = 60) -> tuple[str, bool]:
    """A signed token (and whether the key was made for it); see `claims`."""
    payload = claims(settings, user, scope, patient, purpose, minutes)
    key, created = signing_key(settings.data_dir)
    token = jwt.encode({"alg": ALGORITHM, "typ": "at+jwt", "kid": key.kid}, payload, key, algorithms=[ALGORITHM])
    return token, created


# -- verifying -----------------------------------------------------------------------------------
class LocalVerifier:
    """Verifies bearer tokens against the local key, in open mode only. The key file is looked
    at on every token (a stat), so a key made after the server started, or made again, counts
    at once."""

    def __init__(self, data_dir: Path, audience: str):
        self.path = key_path(data_dir)
        self.audience = audience
        self._lock = threading.Lock()
        self._seen: tuple[int, int, int] | None = None  # inode, size, mtime of the file read
        self._keys: KeySet | None = None

    def verify(self, token: str) -> dict[str, Any]:
        """The claims of a token made by `fhir-server token` with this data directory's key;
        InvalidToken saying why otherwise (a defect, or no key made yet)."""
        alg, kid = token_header(token)
        if alg != ALGORITHM:
            raise InvalidToken(f"the local issuer signs with {ALGORITHM}, not {alg}")
        keys = self._key_set()
        if kid is not None and kid not in {k.kid for k in keys.keys}:
            raise InvalidToken(f"the key {kid!r} is not the local issuer's key in {self.path.parent} "
                               f"(was the token made with another FHIR_DATA_DIR?)")
        return verify_with(token, alg, kid, keys, ISSUER, self.audience)

    def _key_set(self) -> KeySet:
        try:
            info = self.path.stat()
        except FileNotFoundError:
            raise InvalidToken(f"open mode: no local issuer key in {self.path.parent} yet; `fhir-server token` "
                               f"makes one (with FHIR_DATA_DIR={self.path.parent})") from None
        except OSError as exc:
            raise InvalidToken(f"open mode: the local issuer's key cannot be read ({exc})") from None
        seen = (info.st_ino, info.st_size, info.st_mtime_ns)
        with self._lock:
            if self._keys is None or seen != self._seen:
                try:
                    self._keys = KeySet([_read_key(self.path, private=False)])
                except LocalIssuerError as exc:
                    raise InvalidToken(f"open mode: {exc}") from None
                self._seen = seen
            return self._keys
