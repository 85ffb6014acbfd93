"""Bearer access tokens: JWTs verified against the keys the OpenID provider publishes.

The provider's discovery document (`{issuer}/.well-known/openid-configuration`) names its
`jwks_uri`; the keys are cached and fetched again when a token names a key id not seen yet (at
most every `REFRESH_S` seconds, so forged key ids cannot make the server hammer the provider).
Signatures and claims are checked by joserfc; only asymmetric algorithms are accepted, so
neither `none` nor an HMAC keyed with a public key can pass.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.request
from collections.abc import Callable
from typing import Any

from joserfc import jws, jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

log = logging.getLogger(__name__)

ALGORITHMS = ("RS256", "PS256", "ES256")
REFRESH_S = 30.0  # fewest seconds between two fetches of the keys
LEEWAY_S = 30  # clock skew tolerated on exp/nbf/iat


class InvalidToken(Exception):
    """The token cannot be trusted; the message says why (safe to show the client)."""


class ProviderUnavailable(Exception):
    """The OpenID provider's discovery document or keys cannot be fetched."""


def fetch_json(url: str, timeout: float = 5.0) -> dict[str, Any]:
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - the configured issuer
            data = json.loads(response.read(2_000_000))
    except (OSError, ValueError) as exc:
        raise ProviderUnavailable(f"{url}: {exc}") from exc
    if not isinstance(data, dict):
        raise ProviderUnavailable(f"{url} did not answer a JSON object")
    return data


class TokenVerifier:
    def __init__(self, issuer: str, audience: str, fetch: Callable[[str], dict[str, Any]] = fetch_json):
        self.issuer = issuer.rstrip("/")
        self.audience = audience
        self._fetch = fetch
        self._discovery_lock = threading.Lock()
        self._keys_lock = threading.Lock()
        self._discovery: dict[str, Any] | None = None
        self._keys: KeySet | None = None
        self._kids: set[str] = set()
        self._fetched_at = 0.0

    # -- the provider --------------------------------------------------------------------------
    def discovery(self) -> dict[str, Any]:
        """The provider's OpenID configuration (fetched once, then kept)."""
        with self._discovery_lock:
            if self._discovery is None:
                found = self._fetch(f"{self.issuer}/.well-known/openid-configuration")
                if str(found.get("issuer", "")).rstrip("/") != self.issuer:
                    raise ProviderUnavailable(f"the discovery document of {self.issuer} names another issuer "
                                              f"({found.get('issuer')!r})")
                if not isinstance(found.get("jwks_uri"), str):
                    raise ProviderUnavailable(f"the discovery document of {self.issuer} has no jwks_uri")
                self._discovery = found
            return self._discovery

    def _key_set(self, kid: str | None) -> KeySet:
        """The cached keys; fetched again for a key id not seen yet, at most every REFRESH_S."""
        uri = self.discovery()["jwks_uri"]
        with self._keys_lock:
            stale = self._keys is None or (kid is not None and kid not in self._kids)
            if stale and (self._keys is None or time.monotonic() - self._fetched_at > REFRESH_S):
                self._fetched_at = time.monotonic()
                self._load_keys(uri)
            if self._keys is None:
                raise ProviderUnavailable(f"no keys from {self.issuer}")
            return self._keys

    def _load_keys(self, uri: str) -> None:
        data = self._fetch(uri)
        try:
            keys = KeySet.import_key_set({"keys": [k for k in data.get("keys") or () if k.get("kty") in ("RSA", "EC")
                                                   and k.get("use", "sig") == "sig"]})
        except (JoseError, ValueError, TypeError) as exc:
            raise ProviderUnavailable(f"the keys at {uri} cannot be read: {exc}") from exc
        self._keys = keys
        self._kids = {k.kid for k in keys.keys if k.kid}
        log.info("keys of %s loaded: %s", self.issuer, ", ".join(sorted(self._kids)) or "(no key ids)")

    # -- a token -------------------------------------------------------------------------------
    def verify(self, token: str) -> dict[str, Any]:
        """The claims of a valid token; InvalidToken saying why otherwise."""
        header = _header(token)
        alg = header.get("alg")
        if alg not in ALGORITHMS:
            raise InvalidToken(f"tokens signed with {alg!r} are not accepted; this server takes "
                               f"{', '.join(ALGORITHMS)}")
        kid = header.get("kid") if isinstance(header.get("kid"), str) else None
        keys = self._key_set(kid)
        if kid is not None and kid not in self._kids:
            raise InvalidToken(f"the key {kid!r} is not one of {self.issuer}'s keys")
        try:
            decoded = jwt.decode(token, keys, algorithms=list(ALGORITHMS))
        except JoseError as exc:
            raise InvalidToken(f"the signature does not verify with {self.issuer}'s keys ({exc.error})") from None
        except (ValueError, TypeError) as exc:
            raise InvalidToken(f"the token cannot be read: {exc}") from None
        registry = jwt.JWTClaimsRegistry(leeway=LEEWAY_S, iss={"essential": True, "value": self.issuer},
                                         aud={"essential": True, "value": self.audience}, exp={"essential": True})
        claims = dict(decoded.claims)
        if isinstance(claims.get("iss"), str):  # a trailing slash is the same issuer
            claims["iss"] = claims["iss"].rstrip("/")
        try:
            registry.validate(claims)
        except JoseError as exc:
            raise InvalidToken(_claim_problem(exc)) from None
        return claims


def _header(token: str) -> dict[str, Any]:
    if not token or token.count(".") != 2:
        raise InvalidToken("the bearer token is not a JWT (header.payload.signature)")
    try:
        return dict(jws.extract_compact(token.encode("ascii")).headers())
    except (JoseError, ValueError, UnicodeError, TypeError) as exc:
        raise InvalidToken(f"the token's header cannot be read ({exc})") from None


def _claim_problem(exc: JoseError) -> str:
    text = getattr(exc, "description", None) or str(exc)
    name = getattr(exc, "claim", None)
    return f"claim {name!r}: {text}" if name else text
