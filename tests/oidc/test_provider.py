"""Tests of the OIDC harness itself: the real provider (discovery, JWKS, client_credentials JWT
access tokens with SMART scopes and extra claims, verified with joserfc against the published
JWKS) and the minted attack tokens (each broken exactly as its name says)."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from joserfc import errors, jwt
from joserfc.jwk import KeySet

from .mint import b64url, decode_unverified, malformed_tokens, public_key_pem
from .provider import Client, OidcProvider, TokenError, require_node

FHIR = "http://127.0.0.1:8080/fhir"
SMART_SCOPES = ["patient/Observation.rs?category=laboratory", "user/*.cruds", "system/Patient.read",
                "patient/*.read", "launch/patient", "openid", "fhirUser"]
CLAIMS = {"fhirUser": "Practitioner/123", "patient": "pat-1", "purpose_of_use": "TREAT"}
ALGS = ["RS256", "PS256", "ES256", "ES384", "EdDSA"]

# oidc-provider 8 signs Ed25519 tokens as alg "EdDSA", which RFC 9864 deprecates (for "Ed25519").
pytestmark = pytest.mark.filterwarnings("ignore:EdDSA is deprecated")


@pytest.fixture(scope="module")
def op():
    require_node()
    clients = [
        Client("app", "s3cret:/+ %&=", scope=SMART_SCOPES, claims=CLAIMS),
        Client("fixed-aud", scope="system/*.read", audience="fhir-server"),
        Client("post", scope="system/*.read", auth_method="client_secret_post"),
        Client("opaque", scope="system/*.read", format="opaque"),
        Client("short", scope="system/*.read", ttl=5),
        *[Client(f"alg-{alg}", scope="system/*.read", alg=alg) for alg in ALGS],
    ]
    with OidcProvider(clients, audience=FHIR) as provider:
        yield provider
        assert "server_error" not in provider.log(), provider.log()


def verify(token: str, op: OidcProvider, **claims_options) -> jwt.Token:
    """Signature against the published JWKS, then iss/aud/exp/nbf/iat."""
    keys = KeySet.import_key_set(op.jwks())
    header, _ = decode_unverified(token)
    decoded = jwt.decode(token, keys, algorithms=[header["alg"]])
    registry = jwt.JWTClaimsRegistry(iss={"essential": True, "value": op.issuer},
                                     aud={"essential": True, "value": claims_options.pop("aud", FHIR)},
                                     exp={"essential": True}, **claims_options)
    registry.validate(decoded.claims)
    return decoded


# ---- the provider -------------------------------------------------------------------------------

def test_discovery(op):
    d = op.discovery()
    assert d["issuer"] == op.issuer == f"http://127.0.0.1:{op.port}"
    assert d["jwks_uri"].startswith(op.issuer)
    assert d["token_endpoint"] == f"{op.issuer}/token"
    assert "client_credentials" in d["grant_types_supported"]
    assert set(SMART_SCOPES) <= set(d["scopes_supported"])


def test_jwks_publishes_generated_and_minter_keys(op):
    keys = op.jwks()["keys"]
    kids = [k["kid"] for k in keys]
    assert len(kids) == len(set(kids))
    assert set(op.generated_kids.values()) | set(op.mint.trusted_kids.values()) == set(kids)
    assert {(k["kty"], k.get("crv")) for k in keys} == {("RSA", None), ("EC", "P-256"), ("EC", "P-384"),
                                                        ("OKP", "Ed25519")}
    for key in keys:
        assert key["use"] == "sig"
        assert not {"d", "p", "q", "dp", "dq", "qi"} & key.keys(), "private members published"


def test_client_credentials_token_is_a_jwt_with_the_configured_claims(op):
    scope = "patient/Observation.rs?category=laboratory user/*.cruds system/Patient.read"
    token = op.token("app", scope=scope)
    decoded = verify(token, op)
    assert decoded.header["alg"] == "RS256"
    assert decoded.header["typ"] == "at+jwt"
    assert decoded.header["kid"] == op.generated_kids["RSA"]
    claims = decoded.claims
    assert claims["scope"] == scope  # space separated, SMART characters kept as they are
    assert claims["client_id"] == claims["sub"] == "app"
    assert claims["aud"] == FHIR
    assert claims["iss"] == op.issuer
    assert claims["iat"] <= time.time() + 1 < claims["exp"]
    assert {k: claims[k] for k in CLAIMS} == CLAIMS
    assert claims["jti"]


def test_resource_parameter_is_the_audience(op):
    token = op.token("app", scope="system/Patient.read", audience="http://127.0.0.1:9999/fhir")
    assert verify(token, op, aud="http://127.0.0.1:9999/fhir").claims["aud"] == "http://127.0.0.1:9999/fhir"


def test_client_with_a_fixed_audience(op):
    token = op.token("fixed-aud", scope="system/*.read", audience="http://ignored.test/fhir")
    assert verify(token, op, aud="fhir-server").claims["aud"] == "fhir-server"


def test_token_without_scope(op):
    claims = verify(op.token("app"), op).claims
    assert "scope" not in claims


@pytest.mark.parametrize("alg", ALGS)
def test_signing_algorithms(op, alg):
    token = op.token(f"alg-{alg}", scope="system/*.read")
    assert verify(token, op).header["alg"] == alg


def test_scope_not_allowed_for_the_client(op):
    for scope in ("system/*.read", "system/Patient.read user/*.*"):
        with pytest.raises(TokenError) as refused:
            op.token("app", scope=scope)
        assert refused.value.status == 400
        assert refused.value.error == "invalid_scope"


def test_wrong_secret_and_unknown_client(op):
    with pytest.raises(TokenError) as refused:
        op.token("app", scope="system/Patient.read", client_secret="wrong")
    assert (refused.value.status, refused.value.error) == (401, "invalid_client")
    with pytest.raises(TokenError) as refused:
        op.token("nobody", client_secret="x")
    assert refused.value.error == "invalid_client"


def test_resource_must_be_an_absolute_uri(op):
    with pytest.raises(TokenError) as refused:
        op.token("app", scope="system/Patient.read", audience="fhir-server")
    assert refused.value.error == "invalid_target"


def test_client_secret_post(op):
    assert verify(op.token("post", scope="system/*.read"), op).claims["client_id"] == "post"


def test_short_lived_token_expires(op):
    token = op.token("short", scope="system/*.read")
    claims = verify(token, op).claims
    assert claims["exp"] - claims["iat"] == 5


def test_opaque_token_and_introspection(op):
    token = op.token("opaque", scope="system/*.read")
    assert token.count(".") == 0
    info = op.introspect(token, "opaque")
    assert info["active"] is True
    assert info["scope"] == "system/*.read"
    assert info["aud"] == FHIR


def test_provider_can_sign_with_a_minter_key():
    require_node()
    with OidcProvider(audience=FHIR) as first:
        kid = first.mint.trusted_kids["RSA"]
    with OidcProvider([Client("k", scope="system/*.read", kid=kid)], audience=FHIR, minter=first.mint) as op:
        token = op.token("k", scope="system/*.read")
        assert verify(token, op).header["kid"] == kid
        # the same key in the minter's hands: the test can verify it offline too
        jwt.decode(token, op.mint.keyset(), algorithms=["RS256"])


def test_provider_dies_with_its_parent(tmp_path):
    """A parent killed with SIGKILL takes the provider with it (no orphan node process)."""
    require_node()
    script = (
        "import sys, time\n"
        "from oidc.provider import OidcProvider\n"
        "op = OidcProvider(audience='http://x.test/fhir').start()\n"
        "print(op.process.pid, flush=True)\n"
        "time.sleep(600)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], cwd=Path(__file__).resolve().parent.parent,
                              stdout=subprocess.PIPE, text=True)
    try:
        child = int(parent.stdout.readline())
        os.kill(child, 0)  # alive
    finally:
        parent.send_signal(signal.SIGKILL)
        parent.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if not _alive(child):
            break
        time.sleep(0.1)
    assert not _alive(child), "oidc-provider outlived its parent"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return not (stat.exists() and stat.read_text().split(") ")[1].startswith("Z"))


# ---- minted tokens ------------------------------------------------------------------------------

def test_minted_valid_token_verifies_against_the_providers_jwks(op):
    for alg in ALGS:
        token = op.mint.token(alg, scope="system/*.read", **CLAIMS)
        decoded = verify(token, op)
        assert decoded.header["kid"] in op.mint.trusted_kids.values()
        assert decoded.claims["iss"] == op.issuer
        assert decoded.claims["fhirUser"] == "Practitioner/123"


@pytest.mark.parametrize(("make", "error"), [
    (lambda m: m.expired(), errors.ExpiredTokenError),
    (lambda m: m.not_yet_valid(), errors.InvalidTokenError),
    (lambda m: m.issued_in_the_future(), errors.InvalidTokenError),
    (lambda m: m.wrong_issuer(), errors.InvalidClaimError),
    (lambda m: m.wrong_audience(), errors.InvalidClaimError),
    (lambda m: m.missing_claim("exp"), errors.MissingClaimError),
])
def test_minted_bad_claims_have_good_signatures(op, make, error):
    token = make(op.mint)
    keys = KeySet.import_key_set(op.jwks())
    decoded = jwt.decode(token, keys, algorithms=["RS256"])  # the signature is good
    assert decoded.header["kid"] == op.mint.trusted_kids["RSA"]
    with pytest.raises(error):
        verify(token, op)


def test_wrong_signature_under_a_published_kid(op):
    keys = KeySet.import_key_set(op.jwks())
    for kid in (op.generated_kids["RSA"], op.mint.trusted_kids["RSA"]):
        token = op.mint.wrong_signature(kid=kid)
        assert decode_unverified(token)[0]["kid"] == kid
        with pytest.raises(errors.BadSignatureError):
            jwt.decode(token, keys, algorithms=["RS256"])
    token = op.mint.wrong_signature(alg="ES256")
    with pytest.raises(errors.BadSignatureError):
        jwt.decode(token, keys, algorithms=["ES256"])


def test_tampered_payload(op):
    token = op.mint.tampered()
    assert decode_unverified(token)[1]["scope"] == "system/*.*"
    with pytest.raises(errors.BadSignatureError):
        jwt.decode(token, KeySet.import_key_set(op.jwks()), algorithms=["RS256"])


@pytest.mark.parametrize("spelling", ["none", "None", "NONE"])
def test_alg_none(op, spelling):
    token = op.mint.alg_none(spelling)
    header, claims = decode_unverified(token)
    assert header["alg"] == spelling
    assert token.endswith(".")
    assert claims["iss"] == op.issuer
    with pytest.raises(errors.JoseError):
        jwt.decode(token, KeySet.import_key_set(op.jwks()))


@pytest.mark.parametrize("form", ["pem", "pem-pkcs1", "der", "jwk", "n"])
def test_hs256_with_the_providers_public_key_as_secret(op, form):
    rsa = op.public_jwk(op.generated_kids["RSA"])
    token = op.mint.hs256_confusion(rsa, form=form)
    header, _ = decode_unverified(token)
    assert header == {"alg": "HS256", "typ": "at+jwt", "kid": rsa["kid"]}
    signing_input, signature = token.rsplit(".", 1)
    expected = hmac.new(public_key_pem(rsa, form), signing_input.encode(), hashlib.sha256).digest()
    assert b64url(expected) == signature  # the forgery a confused verifier would accept
    if form == "pem":
        assert public_key_pem(rsa, form).startswith(b"-----BEGIN PUBLIC KEY-----")
    with pytest.raises(errors.JoseError):
        jwt.decode(token, KeySet.import_key_set(op.jwks()))


def test_missing_kid(op):
    token = op.mint.missing_kid()
    assert "kid" not in decode_unverified(token)[0]
    jwt.decode(token, op.mint.key_for("RS256"), algorithms=["RS256"])  # good signature, only no kid


def test_unknown_kid(op):
    token = op.mint.unknown_kid()
    kid = decode_unverified(token)[0]["kid"]
    assert kid not in {k["kid"] for k in op.jwks()["keys"]}
    with pytest.raises(errors.JoseError):
        jwt.decode(token, KeySet.import_key_set(op.jwks()), algorithms=["RS256"])


def test_malformed_tokens(op):
    cases = op.mint.malformed()
    assert set(cases) == set(malformed_tokens())
    keys = KeySet.import_key_set(op.jwks())
    for name, token in cases.items():
        with pytest.raises((errors.JoseError, ValueError)):
            jwt.decode(token, keys, algorithms=["RS256"])
            pytest.fail(f"{name} decoded")


def test_minter_claims_overrides(op):
    claims = op.mint.claims(scope="user/*.cruds", patient="p", jti=None)
    assert claims["scope"] == "user/*.cruds" and claims["patient"] == "p" and "jti" not in claims
    assert json.loads(json.dumps(claims)) == claims
