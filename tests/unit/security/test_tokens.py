"""Token verification against a provider's keys, without a provider: the discovery document and
the JWKS come from a function. Every accepted algorithm verifies with the key it needs; every
other algorithm, and every key that does not suit the token's algorithm, is refused saying why."""

from __future__ import annotations

import time

import pytest
from joserfc import jwt
from joserfc.jwk import ECKey, OKPKey, RSAKey

from fhir_server.security.tokens import ALGORITHMS, InvalidToken, ProviderUnavailable, TokenVerifier, signing_key

pytestmark = [pytest.mark.filterwarnings("ignore:EdDSA is deprecated"),  # signed on purpose here
              pytest.mark.filterwarnings("ignore:Key size should be")]  # the 1024-bit key that must be refused

ISSUER = "https://op.test"
AUDIENCE = "https://fhir.test/fhir"


@pytest.fixture(scope="module")
def keys() -> dict[str, RSAKey | ECKey | OKPKey]:
    made = {"RSA": RSAKey.generate_key(2048), "P-256": ECKey.generate_key("P-256"),
            "P-384": ECKey.generate_key("P-384"), "P-521": ECKey.generate_key("P-521"),
            "Ed25519": OKPKey.generate_key("Ed25519"), "Ed448": OKPKey.generate_key("Ed448"),
            "RSA-1024": RSAKey.generate_key(1024), "X25519": OKPKey.generate_key("X25519")}
    for name, key in made.items():
        key.dict_value["kid"] = name
    return made


def verifier(published: list[dict]) -> TokenVerifier:
    def fetch(url: str) -> dict:
        if url.endswith("/.well-known/openid-configuration"):
            return {"issuer": ISSUER, "jwks_uri": f"{ISSUER}/jwks"}
        return {"keys": published}

    return TokenVerifier(ISSUER, AUDIENCE, fetch)


def public(*found) -> list[dict]:
    return [key.as_dict(private=False) for key in found]


def sign(key, alg: str, kid: str | None = "same", **claims) -> str:
    now = int(time.time())
    payload = {"iss": ISSUER, "aud": AUDIENCE, "sub": "x", "iat": now, "exp": now + 300, **claims}
    header = {"alg": alg, "typ": "at+jwt"}
    if kid is not None:
        header["kid"] = key.kid if kid == "same" else kid
    return jwt.encode(header, payload, key, algorithms=[alg])


KEY_OF = {"RS256": "RSA", "RS384": "RSA", "RS512": "RSA", "PS256": "RSA", "PS384": "RSA", "PS512": "RSA",
          "ES256": "P-256", "ES384": "P-384", "ES512": "P-521", "EdDSA": "Ed25519", "Ed25519": "Ed25519"}


def test_the_accepted_algorithms():
    assert set(ALGORITHMS) == set(KEY_OF)


@pytest.mark.parametrize("alg", sorted(KEY_OF))
def test_every_accepted_algorithm_verifies_with_its_key(keys, alg):
    checker = verifier(public(*keys.values()))
    assert checker.verify(sign(keys[KEY_OF[alg]], alg))["sub"] == "x"


@pytest.mark.parametrize("published_for", ["EdDSA", "Ed25519"])
@pytest.mark.parametrize("alg", ["EdDSA", "Ed25519"])
def test_eddsa_and_ed25519_are_one_algorithm_over_an_ed25519_key(keys, published_for, alg):
    # oidc-provider publishes its Ed25519 keys with "alg": "EdDSA"; RFC 9864 names the same thing Ed25519
    entry = {**keys["Ed25519"].as_dict(private=False), "alg": published_for}
    assert verifier([entry]).verify(sign(keys["Ed25519"], alg))["sub"] == "x"


@pytest.mark.parametrize("alg", ["none", "HS256", "HS384", "HS512", "ES256K", "Ed448", "RSA-OAEP", None])
def test_other_algorithms_are_refused(keys, alg):
    header = f'{{"alg": {"null" if alg is None else repr(alg).replace(chr(39), chr(34))}, "kid": "RSA"}}'
    import base64

    def b64(text: str) -> str:
        return base64.urlsafe_b64encode(text.encode()).rstrip(b"=").decode()

    token = f"{b64(header)}.{b64('{}')}.{b64('sig')}"
    with pytest.raises(InvalidToken, match="are not accepted"):
        verifier(public(keys["RSA"])).verify(token)


def test_an_ed448_key_is_refused_clearly(keys):
    # joserfc's EdDSA verifies with an Ed448 key too: the server takes EdDSA over Ed25519 only
    checker = verifier(public(keys["Ed448"], keys["RSA"]))
    with pytest.raises(InvalidToken, match="'Ed448' of https://op.test is not accepted here: an OKP Ed448 key"):
        checker.verify(sign(keys["Ed448"], "EdDSA"))
    with pytest.raises(InvalidToken, match="tokens signed with 'Ed448' are not accepted"):
        checker.verify(sign(keys["Ed448"], "Ed448"))


@pytest.mark.parametrize(("alg", "signer", "named", "says"), [
    ("EdDSA", "Ed25519", "RSA", "'RSA' of https://op.test is an RSA key: it cannot verify EdDSA, which needs an OKP "
                                "Ed25519 key"),
    ("Ed25519", "Ed25519", "P-256", "is an EC P-256 key: it cannot verify Ed25519"),
    ("RS256", "RSA", "Ed25519", "is an OKP Ed25519 key: it cannot verify RS256, which needs an RSA key"),
    ("ES256", "P-256", "P-384", "is an EC P-384 key: it cannot verify ES256, which needs an EC P-256 key"),
    ("ES384", "P-384", "P-256", "needs an EC P-384 key"),
    ("PS256", "RSA", "P-521", "is an EC P-521 key"),
])
def test_a_key_that_does_not_suit_the_algorithm_is_refused(keys, alg, signer, named, says):
    checker = verifier(public(keys["RSA"], keys["P-256"], keys["P-384"], keys["P-521"], keys["Ed25519"]))
    with pytest.raises(InvalidToken, match=says):
        checker.verify(sign(keys[signer], alg, kid=named))


def test_a_key_published_for_another_algorithm_is_refused(keys):
    entry = {**keys["RSA"].as_dict(private=False), "alg": "PS256"}
    checker = verifier([entry])
    assert checker.verify(sign(keys["RSA"], "PS256"))
    with pytest.raises(InvalidToken, match="is published for PS256: it cannot verify RS256"):
        checker.verify(sign(keys["RSA"], "RS256"))


def test_a_forged_signature_under_a_published_kid(keys):
    impostor = OKPKey.generate_key("Ed25519")
    with pytest.raises(InvalidToken, match="signature does not verify"):
        verifier(public(keys["Ed25519"])).verify(sign(impostor, "EdDSA", kid="Ed25519"))


@pytest.mark.parametrize(("key", "says"), [
    ("RSA-1024", "an RSA key of 1024 bits"),
    ("X25519", "an OKP X25519 key signs none of"),
])
def test_weak_or_unsuitable_published_keys_are_not_used(keys, key, says):
    checker = verifier(public(keys[key], keys["RSA"]))
    algorithm = "RS256" if key.startswith("RSA") else "EdDSA"
    signer = keys[key] if key.startswith("RSA") else keys["Ed25519"]
    with pytest.raises(InvalidToken, match=says):
        checker.verify(sign(signer, algorithm, kid=key))
    assert checker.verify(sign(keys["RSA"], "RS256"))  # the other keys still serve


def test_without_a_kid_only_a_single_key_is_used(keys):
    assert verifier(public(keys["Ed25519"])).verify(sign(keys["Ed25519"], "EdDSA", kid=None))
    with pytest.raises(InvalidToken, match="names no key"):
        verifier(public(keys["Ed25519"], keys["RSA"])).verify(sign(keys["Ed25519"], "EdDSA", kid=None))


def test_published_keys_the_server_cannot_use():
    assert signing_key({"kty": "RSA", "use": "enc", "n": "x", "e": "AQAB"})[0] is None
    assert "not accepted" in signing_key({"kty": "EC", "crv": "P-256", "alg": "ES256K", "x": "", "y": ""})[1]
    assert "cannot be read" in signing_key({"kty": "OKP", "crv": "Ed25519", "x": "!!"})[1]
    assert "cannot be read" in signing_key({"kty": "RSA", "n": "!!", "e": "AQAB"})[1]
    assert signing_key("not a key")[1] == "not a JWK"


def test_private_members_of_a_published_key_are_dropped(keys):
    key, _ = signing_key(keys["Ed25519"].as_dict(private=True))
    assert key is not None and not key.is_private


def test_a_jwks_that_is_not_a_key_set_is_a_provider_problem():
    def fetch(url: str) -> dict:
        return {"issuer": ISSUER, "jwks_uri": f"{ISSUER}/jwks"} if "well-known" in url else {"keys": "none"}

    with pytest.raises(ProviderUnavailable):
        TokenVerifier(ISSUER, AUDIENCE, fetch).verify(sign(RSAKey.generate_key(2048), "RS256", kid="k"))
