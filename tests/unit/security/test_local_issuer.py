"""The local issuer of open mode: its key (made once, mode 0600, never overwritten), the claims of
its tokens, and their verification (the same checks as a provider's tokens)."""

from __future__ import annotations

import stat
import threading
import time

import pytest
from joserfc import jwt
from joserfc.jwk import ECKey

from fhir_server.config import Settings
from fhir_server.security import local_issuer
from fhir_server.security.local_issuer import LocalIssuerError, LocalVerifier
from fhir_server.security.tokens import InvalidToken

GP = "Practitioner/s2026-pr0"


def verifier(settings: Settings) -> LocalVerifier:
    return LocalVerifier(settings.data_dir, local_issuer.audience(settings))


def test_the_key_is_made_once_with_mode_0600(tmp_path):
    data = tmp_path / "data"  # not there yet
    key, created = local_issuer.signing_key(data)
    path = local_issuer.key_path(data)
    assert created and path.parent == data and stat.S_IMODE(path.stat().st_mode) == 0o600
    again, created_again = local_issuer.signing_key(data)
    assert not created_again and again.kid == key.kid and again.is_private
    assert [p.name for p in data.iterdir()] == [local_issuer.KEY_FILE]  # no temporary file left


def test_concurrent_first_uses_share_one_key(tmp_path):
    found, barrier = [], threading.Barrier(8)

    def make():
        barrier.wait()
        found.append(local_issuer.signing_key(tmp_path)[0].kid)

    threads = [threading.Thread(target=make) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(found)) == 1 and len(found) == 8


def test_a_key_others_may_read_is_not_used_to_sign(tmp_path):
    local_issuer.signing_key(tmp_path)
    local_issuer.key_path(tmp_path).chmod(0o644)
    with pytest.raises(LocalIssuerError, match="chmod 600"):
        local_issuer.issue(Settings(data_dir=tmp_path), GP, "user/*.cruds")


def test_a_file_that_is_not_a_local_key_is_refused(tmp_path):
    path = local_issuer.key_path(tmp_path)
    path.write_text('{"kty": "EC"}')
    path.chmod(0o600)
    with pytest.raises(LocalIssuerError, match="cannot be read"):
        local_issuer.signing_key(tmp_path)
    with pytest.raises(InvalidToken, match="cannot be read"):
        verifier(Settings(data_dir=tmp_path)).verify(_foreign_token(tmp_path / "other"))


def test_the_claims_are_those_of_a_smart_access_token(tmp_path):
    settings = Settings(data_dir=tmp_path)
    found = local_issuer.claims(settings, GP, "user/Patient.rs  user/Observation.rs", patient="Patient/p1",
                                purpose="BTG", minutes=5, now=1000)
    assert found.pop("jti")
    assert found == {"iss": local_issuer.ISSUER, "aud": local_issuer.ISSUER, "sub": GP, "fhirUser": GP,
                     "client_id": local_issuer.CLIENT_ID, "scope": "user/Patient.rs user/Observation.rs",
                     "patient": "p1", "purpose_of_use": "BTG", "iat": 1000, "exp": 1300}
    base = Settings(data_dir=tmp_path, base_url="https://fhir.test/fhir", auth_audience="https://fhir.test/fhir")
    assert local_issuer.claims(base, GP, "user/*.cruds")["aud"] == "https://fhir.test/fhir"


@pytest.mark.parametrize(("user", "patient", "minutes", "says"), [
    ("s2026-pr0", None, 60, "--user must be a reference"),
    ("Organization/1", None, 60, "--user must be a reference"),
    ("Practitioner/a/b", None, 60, "--user must be a reference"),
    ("Practitioner/", None, 60, "--user must be a reference"),
    (GP, "Patient/a b", 60, "--patient must be a Patient id"),
    (GP, None, 0, "--minutes must be between 1 and 1440"),
    (GP, None, 1441, "--minutes must be between"),
])
def test_what_cannot_be_asked(tmp_path, user, patient, minutes, says):
    with pytest.raises(LocalIssuerError, match=says):
        local_issuer.claims(Settings(data_dir=tmp_path), user, "user/*.cruds", patient=patient, minutes=minutes)


def test_a_token_verifies_with_the_key_of_its_data_directory(tmp_path):
    settings = Settings(data_dir=tmp_path)
    token, created = local_issuer.issue(settings, GP, "user/Patient.rs", patient="p1", purpose="BTG")
    claims = verifier(settings).verify(token)
    assert created and claims["fhirUser"] == GP and claims["scope"] == "user/Patient.rs"
    assert claims["patient"] == "p1" and claims["purpose_of_use"] == "BTG"


def test_no_key_yet_is_an_invalid_token(tmp_path):
    with pytest.raises(InvalidToken, match="no local issuer key .* yet; `fhir-server token` makes one"):
        verifier(Settings(data_dir=tmp_path / "empty")).verify(_foreign_token(tmp_path / "other"))


def test_a_key_made_after_the_server_started_or_made_again_counts_at_once(tmp_path):
    settings = Settings(data_dir=tmp_path)
    checker = verifier(settings)
    first, _ = local_issuer.issue(settings, GP, "user/*.cruds")
    assert checker.verify(first)
    local_issuer.key_path(tmp_path).unlink()
    second, created = local_issuer.issue(settings, GP, "user/*.cruds")
    assert created and checker.verify(second)
    with pytest.raises(InvalidToken, match="not the local issuer's key"):
        checker.verify(first)


def test_defective_tokens(tmp_path):
    settings = Settings(data_dir=tmp_path)
    checker = verifier(settings)
    token, _ = local_issuer.issue(settings, GP, "user/Patient.rs")
    key, _ = local_issuer.signing_key(tmp_path)
    now = int(time.time())

    def signed(alg="ES256", signer=key, **changes):
        claims = {**local_issuer.claims(settings, GP, "user/Patient.rs"), **changes}
        return jwt.encode({"alg": alg, "kid": key.kid}, claims, signer, algorithms=[alg])

    header, payload, signature = token.split(".")
    cases = {
        "tampered": (f"{header}.{signed(scope='user/*.cruds').split('.')[1]}.{signature}", "signature does not verify"),
        "other key": (_foreign_token(tmp_path / "other"), "not the local issuer's key"),
        "same kid, other key": (signed(signer=ECKey.generate_key("P-256")), "signature does not verify"),
        "expired": (signed(iat=now - 7200, exp=now - 3600), "'exp'"),
        "other audience": (signed(aud="https://elsewhere/fhir"), "'aud'"),
        "other issuer": (signed(iss="https://op.test"), "'iss'"),
        "none": (f"{jwt_part({'alg': 'none', 'kid': key.kid})}.{payload}.", "'none' are not accepted"),
        "HS256": (f"{jwt_part({'alg': 'HS256', 'kid': key.kid})}.{payload}.{signature}", "'HS256' are not accepted"),
        "garbage": ("not-a-jwt", "not a JWT"),
    }
    for name, (bad, says) in cases.items():
        with pytest.raises(InvalidToken, match=says):
            checker.verify(bad)
            pytest.fail(name)
    assert checker.verify(token)


def test_another_accepted_algorithm_is_not_the_local_issuers(tmp_path):
    from joserfc.jwk import OKPKey

    settings = Settings(data_dir=tmp_path)
    local_issuer.signing_key(tmp_path)
    other = OKPKey.generate_key("Ed25519")
    token = jwt.encode({"alg": "Ed25519"}, local_issuer.claims(settings, GP, "user/*.cruds"), other,
                       algorithms=["Ed25519"])
    with pytest.raises(InvalidToken, match="signs with ES256, not Ed25519"):
        verifier(settings).verify(token)


def jwt_part(value: dict) -> str:
    import base64
    import json

    return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()


def _foreign_token(data_dir) -> str:
    """A good token of another data directory's local issuer."""
    return local_issuer.issue(Settings(data_dir=data_dir), GP, "user/*.cruds")[0]
