"""Bearer access tokens: JWTs verified against the keys the OpenID provider publishes.

The provider's discovery document (`{issuer}/.well-known/openid-configuration`) names its
`jwks_uri`; the keys are cached and fetched again when a token names a key id not seen yet (at
most every `REFRESH_S` seconds, so forged key ids cannot make the server hammer the provider).

Signatures and claims are checked by joserfc. Only asymmetric algorithms are accepted (RSA,
RSA-PSS and ECDSA with SHA-256/384/512, and Ed25519 under its RFC 8037 name `EdDSA` or its
RFC 9864 name `Ed25519`), so neither `none` nor an HMAC keyed with a public key can pass. The
key that verifies a token is the one its `kid` names, and it must be of the kind the token's
`alg` needs (`KEYS`): an `EdDSA` header over an RSA key, or over an Ed448 key, is refused before
any signature is checked, and joserfc checks the key against the algorithm again.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
import urllib.request
import warnings
from collections.abc import Callable
from typing import Any

from joserfc import jws, jwt
from joserfc.errors import JoseError, SecurityWarning
from joserfc.jwk import ECKey, Key, KeySet, OKPKey, RSAKey

log = logging.getLogger(__name__)

# alg → (kty, crv) of the key that may verify it (crv None: any RSA key of MIN_RSA_BITS or more)
KEYS: dict[str, tuple[str, str | None]] = {
    **{f"{family}{bits}": ("RSA", None) for family in ("RS", "PS") for bits in (256, 384, 512)},
    "ES256": ("EC", "P-256"), "ES384": ("EC", "P-384"), "ES512": ("EC", "P-521"),
    # RFC 8037's EdDSA names no curve; RFC 9864 deprecates it for the fully specified Ed25519 and
    # Ed448. Both names are taken here with an Ed25519 key only (what providers sign EdDSA with).
    "EdDSA": ("OKP", "Ed25519"), "Ed25519": ("OKP", "Ed25519"),
}
ALGORITHMS = tuple(KEYS)
MIN_RSA_BITS = 2048
REFRESH_S = 30.0  # fewest seconds between two fetches of the keys
LEEWAY_S = 30  # clock skew tolerated on exp/nbf/iat

# joserfc warns on every use of `EdDSA` that RFC 9864 deprecates it; it is accepted on purpose
# (providers still sign with it, e.g. oidc-provider), and only over an Ed25519 key (see KEYS).
warnings.filterwarnings("ignore", message="EdDSA is deprecated", category=SecurityWarning)


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
        self._refused: dict[str, str] = {}  # kid → why that published key is not used
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
            known = kid is None or kid in self._kids or kid in self._refused
            if self._keys is None or (not known and time.monotonic() - self._fetched_at > REFRESH_S):
                self._fetched_at = time.monotonic()
                self._load_keys(uri)
            if self._keys is None:
                raise ProviderUnavailable(f"no keys from {self.issuer}")
            return self._keys

    def _load_keys(self, uri: str) -> None:
        data = self._fetch(uri)
        published = data.get("keys")
        if not isinstance(published, list):
            raise ProviderUnavailable(f"the keys at {uri} are not a JWK set")
        keys, refused = [], {}
        for entry in published:
            key, problem = signing_key(entry)
            if key is not None:
                keys.append(key)
            elif isinstance(entry, dict) and isinstance(entry.get("kid"), str):
                refused[entry["kid"]] = problem
        for kid, problem in refused.items():
            log.warning("key %s of %s not used: %s", kid, self.issuer, problem)
        self._keys = KeySet(keys)
        self._kids = {k.kid for k in keys if k.kid}
        self._refused = {kid: problem for kid, problem in refused.items() if kid not in self._kids}
        log.info("keys of %s loaded: %s", self.issuer, ", ".join(sorted(self._kids)) or "(no key ids)")

    # -- a token -------------------------------------------------------------------------------
    def verify(self, token: str) -> dict[str, Any]:
        """The claims of a valid token; InvalidToken saying why otherwise."""
        alg, kid = token_header(token)
        keys = self._key_set(kid)
        if kid is not None and kid in self._refused:
            raise InvalidToken(f"the key {kid!r} of {self.issuer} is not accepted here: {self._refused[kid]}")
        if kid is not None and kid not in self._kids:
            raise InvalidToken(f"the key {kid!r} is not one of {self.issuer}'s keys")
        return verify_with(token, alg, kid, keys, self.issuer, self.audience)


def signing_key(entry: Any) -> tuple[Key | None, str]:
    """A published JWK as a key that may verify tokens, or None and why not: signature keys
    (`use` sig or absent) of the kinds some accepted algorithm needs, RSA of MIN_RSA_BITS or more."""
    if not isinstance(entry, dict):
        return None, "not a JWK"
    if entry.get("use", "sig") != "sig":
        return None, f"it is for use {entry.get('use')!r}, not sig"
    kind = (entry.get("kty"), entry.get("crv"))
    if kind[0] != "RSA" and kind not in KEYS.values():
        return None, f"{_kind(*kind)} signs none of {', '.join(ALGORITHMS)}"
    if isinstance(entry.get("alg"), str) and entry["alg"] not in KEYS:
        return None, f"it is published for {entry['alg']}, which is not accepted"
    bits = _bits(entry.get("n")) if kind[0] == "RSA" else None
    if bits and bits < MIN_RSA_BITS:
        return None, f"an RSA key of {bits} bits (at least {MIN_RSA_BITS})"
    members = _public(entry)
    if kind == ("OKP", "Ed25519") and members.get("alg") in ("EdDSA", "Ed25519"):
        # one algorithm under two names (RFC 9864): a key published for either verifies both
        del members["alg"]
    try:
        key = {"RSA": RSAKey, "EC": ECKey, "OKP": OKPKey}[kind[0]].import_key(members)
    except (JoseError, ValueError, TypeError) as exc:
        return None, f"it cannot be read ({exc})"
    return key, ""


def _bits(modulus: Any) -> int:
    """The size of an RSA key from its `n` (0 if unreadable: the import then says why)."""
    try:
        return int.from_bytes(base64.urlsafe_b64decode(modulus + "=" * (-len(modulus) % 4))).bit_length()
    except (TypeError, ValueError):
        return 0


def _public(entry: dict[str, Any]) -> dict[str, Any]:
    """The public members of a JWK (a provider publishing private parts gives them to nobody here)."""
    return {k: v for k, v in entry.items() if k not in ("d", "p", "q", "dp", "dq", "qi", "oth")}


def token_header(token: str) -> tuple[str, str | None]:
    """(alg, kid) of a compact JWS whose alg is accepted; InvalidToken otherwise."""
    header = _header(token)
    alg = header.get("alg")
    if alg not in KEYS:
        raise InvalidToken(f"tokens signed with {alg!r} are not accepted; this server takes "
                           f"{', '.join(ALGORITHMS)}")
    kid = header.get("kid") if isinstance(header.get("kid"), str) else None
    return alg, kid


def verify_with(token: str, alg: str, kid: str | None, keys: KeySet, issuer: str, audience: str) -> dict[str, Any]:
    """The claims of `token` (alg and kid from `token_header`) once joserfc has verified its
    signature with the key `kid` names among `keys` and its iss, aud, exp (and nbf, iat); the
    key must suit the alg (KEYS). InvalidToken saying why otherwise."""
    key = _key_for(keys, alg, kid, issuer)
    try:
        decoded = jwt.decode(token, key, algorithms=[alg])
    except JoseError as exc:
        raise InvalidToken(f"the signature does not verify with {issuer}'s keys ({exc.error})") from None
    except (ValueError, TypeError) as exc:
        raise InvalidToken(f"the token cannot be read: {exc}") from None
    registry = jwt.JWTClaimsRegistry(leeway=LEEWAY_S, iss={"essential": True, "value": issuer},
                                     aud={"essential": True, "value": audience}, exp={"essential": True})
    claims = dict(decoded.claims)
    if isinstance(claims.get("iss"), str):  # a trailing slash is the same issuer
        claims["iss"] = claims["iss"].rstrip("/")
    try:
        registry.validate(claims)
    except JoseError as exc:
        raise InvalidToken(_claim_problem(exc)) from None
    return claims


def _key_for(keys: KeySet, alg: str, kid: str | None, issuer: str) -> Key:
    """The key of `keys` that `kid` names (without a kid: the only key), if it suits `alg`."""
    if kid is None:
        if len(keys.keys) != 1:
            raise InvalidToken(f"the token names no key (kid) and {issuer} has {len(keys.keys)} keys")
        named = list(keys.keys)
    else:
        named = [k for k in keys.keys if k.kid == kid]
        if not named:
            raise InvalidToken(f"the key {kid!r} is not one of {issuer}'s keys")
    kty, crv = KEYS[alg]
    for key in named:
        if key.key_type == kty and (crv is None or key.get("crv") == crv) and key.get("alg") in (None, alg):
            return key
    key = named[0]
    described = f"published for {key.get('alg')}" if key.key_type == kty and key.get("crv") == crv \
        else _kind(key.key_type, key.get("crv"))
    raise InvalidToken(f"the key {kid or '(only)'!r} of {issuer} is {described}: it cannot verify {alg}, "
                       f"which needs {_kind(kty, crv)}")


def _kind(kty: Any, crv: Any) -> str:
    """'an RSA key', 'an EC P-256 key', 'an OKP Ed448 key'."""
    if not kty:
        return "a key without kty"
    return "an " + " ".join(str(part) for part in (kty, crv) if part) + " key"  # RSA, EC, OKP, oct


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
