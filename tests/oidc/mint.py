"""Access tokens minted by the tests themselves, for the cases a real provider never issues.

A `Minter` holds signing keys of its own ("trusted" keys). Hand `minter.private_jwks()` to the
provider (`OidcProvider(extra_jwks=...)` does it) and the provider publishes their public halves
at its jwks_uri: a token the minter signs then verifies against the provider's JWKS, so in
`expired()`, `not_yet_valid()`, `wrong_issuer()`, `wrong_audience()` only the claim is wrong,
the signature is good. The other cases are broken on purpose: a signature by another key under
a published kid, `alg: none`, HMAC keyed with the provider's public key (algorithm confusion),
no kid, an unknown kid, a tampered payload, and tokens that are not JWTs at all.

    minter = Minter(issuer=provider.issuer, audience="http://127.0.0.1:8080/fhir")
    minter.token(scope="system/*.read", fhirUser="Practitioner/1")      # valid
    minter.expired(scope="system/*.read")                               # exp an hour ago
    minter.hs256_confusion(provider.jwks()["keys"][0])                  # HS256, key = RSA PEM

Claims given as keyword arguments override the defaults; a value of `None` removes the claim
(`minter.token(exp=None)` has no exp).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Mapping
from typing import Any

from joserfc import jwt
from joserfc.jwk import ECKey, KeySet, OKPKey, RSAKey

__all__ = ["Minter", "b64url", "hmac_signed", "malformed_tokens", "unsigned", "decode_unverified",
           "public_key_pem"]

ALGS = {"RS256": "RSA", "RS384": "RSA", "RS512": "RSA", "PS256": "RSA", "PS384": "RSA", "PS512": "RSA",
        "ES256": "P-256", "ES384": "P-384", "EdDSA": "Ed25519"}


def b64url(data: bytes | str | Mapping | list) -> str:
    """base64url without padding; a dict or list is JSON-encoded first (compact, as JOSE does)."""
    if isinstance(data, Mapping | list):
        data = json.dumps(data, separators=(",", ":"))
    if isinstance(data, str):
        data = data.encode()
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _b64decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def decode_unverified(token: str) -> tuple[dict, dict]:
    """(header, claims) of a compact JWS, without checking anything: for the tests' assertions."""
    header, payload, _ = token.split(".")
    return json.loads(_b64decode(header)), json.loads(_b64decode(payload))


def unsigned(claims: Mapping, alg: str = "none", header: Mapping | None = None) -> str:
    """An unsecured JWT (RFC 7519 6.1): `alg` none (or a spelling of it), empty signature."""
    head = {"alg": alg, "typ": "at+jwt", **(header or {})}
    return f"{b64url(head)}.{b64url(dict(claims))}."


def hmac_signed(claims: Mapping, secret: bytes, alg: str = "HS256", header: Mapping | None = None) -> str:
    """A JWS signed with HMAC by hand (joserfc refuses an asymmetric key's bytes as an HMAC secret)."""
    digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}[alg]
    head = {"alg": alg, "typ": "at+jwt", **(header or {})}
    signing_input = f"{b64url(head)}.{b64url(dict(claims))}"
    signature = hmac.new(secret, signing_input.encode(), digest).digest()
    return f"{signing_input}.{b64url(signature)}"


def public_key_pem(public_jwk: Mapping, form: str = "pem") -> bytes:
    """Bytes of a public key as a confused verifier might feed them to HMAC.

    form: "pem" (SubjectPublicKeyInfo PEM, the classic), "pem-pkcs1" (RSA only), "der", "jwk" (the
    JWK as published, compact JSON), "n" (RSA modulus bytes)."""
    from cryptography.hazmat.primitives import serialization

    members = {k: v for k, v in public_jwk.items() if k not in ("d", "p", "q", "dp", "dq", "qi")}
    if form == "jwk":
        return json.dumps(dict(public_jwk), separators=(",", ":")).encode()
    if form == "n":
        return _b64decode(public_jwk["n"])
    key = {"RSA": RSAKey, "EC": ECKey, "OKP": OKPKey}[public_jwk["kty"]].import_key(members)
    public = key.public_key
    if form == "pem":
        return public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    if form == "pem-pkcs1":
        return public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.PKCS1)
    if form == "der":
        return public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    raise ValueError(f"unknown form {form!r}")


def _generate(kind: str, kid: str) -> RSAKey | ECKey | OKPKey:
    parameters = {"kid": kid, "use": "sig"}
    if kind == "RSA":
        return RSAKey.generate_key(2048, parameters=parameters)
    if kind in ("P-256", "P-384"):
        return ECKey.generate_key(kind, parameters=parameters)
    return OKPKey.generate_key("Ed25519", parameters=parameters)


def malformed_tokens(valid: str | None = None) -> dict[str, str]:
    """Bearer values that are not a well-formed compact JWS, by name. Built from `valid` (a good
    token) where a case needs real parts, so only the named defect is wrong."""
    header = b64url({"alg": "RS256", "typ": "at+jwt", "kid": "k"})
    payload = b64url({"iss": "x", "sub": "y", "exp": int(time.time()) + 300})
    h, p, s = valid.split(".") if valid else (header, payload, b64url(b"sig"))
    return {
        "empty": "",
        "garbage": "not-a-jwt",
        "one-part": h,
        "two-parts": f"{h}.{p}",
        "four-parts": f"{h}.{p}.{s}.{s}",
        "five-parts-jwe-like": f"{h}.{p}.{s}.{s}.{s}",
        "empty-header": f".{p}.{s}",
        "empty-payload": f"{h}..{s}",
        "not-base64url-header": f"%%%.{p}.{s}",
        "base64-padding-and-plus": f"{h}==.{p.replace('-', '+')}.{s}",
        "header-not-json": f"{b64url(b'{not json')}.{p}.{s}",
        "payload-not-json": f"{h}.{b64url(b'not json')}.{s}",
        "header-is-array": f"{b64url([1, 2])}.{p}.{s}",
        "payload-is-array": f"{h}.{b64url(['sub'])}.{s}",
        "header-without-alg": f"{b64url({'typ': 'at+jwt', 'kid': 'k'})}.{p}.{s}",
        "whitespace-inside": f"{h}. {p}.{s}",
        "bad-signature-encoding": f"{h}.{p}.!!!",
    }


class Minter:
    """Tokens shaped like the provider's JWT access tokens, signed with the minter's own keys.

    Trusted keys (their kids are `trusted_kids`, by alg family): RSA for RS*/PS*, P-256 for ES256,
    P-384 for ES384, Ed25519 for EdDSA. `issuer`/`audience` may be set after construction
    (the provider's port is known only once it runs)."""

    def __init__(self, issuer: str | None = None, audience: str | None = None,
                 kid_prefix: str = "minted", client_id: str = "minted-client", ttl: int = 300):
        self.issuer = issuer
        self.audience = audience
        self.client_id = client_id
        self.ttl = ttl
        suffix = secrets.token_hex(4)
        self._trusted = {kind: _generate(kind, f"{kid_prefix}-{kind.lower()}-{suffix}")
                         for kind in ("RSA", "P-256", "P-384", "Ed25519")}
        self.trusted_kids = {kind: key.kid for kind, key in self._trusted.items()}

    # ---- the keys -------------------------------------------------------------------------------

    def private_jwks(self) -> dict:
        """The trusted keys with their private parts: what the provider loads (and publishes)."""
        return {"keys": [key.as_dict(private=True) for key in self._trusted.values()]}

    def public_jwks(self) -> dict:
        return {"keys": [key.as_dict(private=False) for key in self._trusted.values()]}

    def keyset(self) -> KeySet:
        return KeySet(list(self._trusted.values()))

    def key_for(self, alg: str) -> RSAKey | ECKey | OKPKey:
        return self._trusted[ALGS[alg]]

    # ---- valid tokens ---------------------------------------------------------------------------

    def claims(self, **overrides: Any) -> dict:
        """Default claims (iss, aud, sub, client_id, scope, iat, exp, jti) with `overrides`
        applied; an override of None removes the claim."""
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer, "aud": self.audience, "sub": self.client_id, "client_id": self.client_id,
            "scope": "system/*.read", "iat": now, "exp": now + self.ttl, "jti": secrets.token_urlsafe(12),
        }
        claims.update(overrides)
        return {k: v for k, v in claims.items() if v is not None}

    def sign(self, claims: Mapping, alg: str = "RS256", key: RSAKey | ECKey | OKPKey | None = None,
             header: Mapping | None = None) -> str:
        """Sign `claims` as given; header {alg, typ: at+jwt, kid} updated by `header` (a header
        value of None removes it, e.g. header={"kid": None})."""
        key = key or self.key_for(alg)
        head = {"alg": alg, "typ": "at+jwt", "kid": key.kid, **(header or {})}
        head = {k: v for k, v in head.items() if v is not None}
        return jwt.encode(head, dict(claims), key, algorithms=[alg])

    def token(self, alg: str = "RS256", header: Mapping | None = None, **claims: Any) -> str:
        """A valid token: good signature by a trusted (published) key, good claims."""
        return self.sign(self.claims(**claims), alg=alg, header=header)

    # ---- only a claim is wrong (good signature) ---------------------------------------------------

    def expired(self, ago: int = 3600, alg: str = "RS256", **claims: Any) -> str:
        now = int(time.time())
        return self.token(alg, iat=now - ago - self.ttl, exp=now - ago, **claims)

    def not_yet_valid(self, ahead: int = 3600, alg: str = "RS256", **claims: Any) -> str:
        """nbf in the future (iat now, exp after nbf)."""
        now = int(time.time())
        return self.token(alg, nbf=now + ahead, exp=now + ahead + self.ttl, **claims)

    def issued_in_the_future(self, ahead: int = 3600, alg: str = "RS256", **claims: Any) -> str:
        """iat in the future, no nbf."""
        now = int(time.time())
        return self.token(alg, iat=now + ahead, exp=now + ahead + self.ttl, **claims)

    def wrong_issuer(self, iss: str = "http://127.0.0.1:9/not-the-issuer", alg: str = "RS256",
                     **claims: Any) -> str:
        return self.token(alg, iss=iss, **claims)

    def wrong_audience(self, aud: str | list = "http://127.0.0.1:9/not-this-server", alg: str = "RS256",
                       **claims: Any) -> str:
        return self.token(alg, aud=aud, **claims)

    def missing_claim(self, name: str, alg: str = "RS256", **claims: Any) -> str:
        return self.token(alg, **{**claims, name: None})

    # ---- the signature or header is wrong -------------------------------------------------------

    def wrong_signature(self, kid: str | None = None, alg: str = "RS256", **claims: Any) -> str:
        """Signed by a fresh key (never published) under the kid of a published key: `kid` (e.g.
        one of the provider's own, from its JWKS) or the minter's trusted key for `alg`."""
        impostor = _generate(ALGS[alg], kid or self.key_for(alg).kid)
        return self.sign(self.claims(**claims), alg=alg, key=impostor)

    def tampered(self, alg: str = "RS256", **changes: Any) -> str:
        """A valid token whose payload is then changed (default: scope widened to system/*.*),
        the original signature kept."""
        good = self.token(alg)
        header, payload, signature = good.split(".")
        _, claims = decode_unverified(good)
        claims.update(changes or {"scope": "system/*.*"})
        return f"{header}.{b64url(claims)}.{signature}"

    def alg_none(self, spelling: str = "none", kid: str | None = None, **claims: Any) -> str:
        """alg none (or "None", "NONE", "nOnE"), empty signature, kid of a trusted key by default."""
        return unsigned(self.claims(**claims), alg=spelling, header={"kid": kid or self.key_for("RS256").kid})

    def hs256_confusion(self, public_jwk: Mapping, form: str = "pem", alg: str = "HS256",
                        **claims: Any) -> str:
        """HMAC-signed with the bytes of an asymmetric PUBLIC key (e.g. the provider's RSA key from
        its JWKS) as secret, with that key's kid: a verifier that takes the alg from the token and
        the key from the JWKS accepts it. `form`: see public_key_pem."""
        secret = public_key_pem(public_jwk, form)
        return hmac_signed(self.claims(**claims), secret, alg, header={"kid": public_jwk.get("kid")})

    def missing_kid(self, alg: str = "RS256", **claims: Any) -> str:
        """Good signature by a trusted key, but no kid in the header."""
        return self.sign(self.claims(**claims), alg=alg, header={"kid": None})

    def unknown_kid(self, alg: str = "RS256", kid: str = "no-such-kid", **claims: Any) -> str:
        """Signed by a key nobody published, under a kid nobody published."""
        stranger = _generate(ALGS[alg], kid)
        return self.sign(self.claims(**claims), alg=alg, key=stranger)

    def malformed(self) -> dict[str, str]:
        """malformed_tokens() built from a valid token of this minter."""
        return malformed_tokens(self.token())
