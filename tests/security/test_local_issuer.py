"""Open mode with the local issuer: `fhir-server token` (run as a command, with the server's
FHIR_DATA_DIR) prints a token that the server, still in open mode, verifies and acts on exactly
like a provider's token (scopes, patient context, Provenance, 401s); a request without a token
stays anonymous and may do everything."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from joserfc import jwt

from fhir_server.config import Settings
from fhir_server.security import local_issuer
from tests.conftest import ROOT, die_with_pytest, start_server
from tests.oidc.mint import b64url, decode_unverified, hmac_signed, public_key_pem, unsigned
from tests.security.conftest import bearer

GP = "Practitioner/s2026-pr0"


@pytest.fixture(scope="module")
def open_server(tmp_path_factory, r4_examples):
    running = start_server(tmp_path_factory.mktemp("local-issuer"))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def client(open_server):
    with httpx.Client(base_url=open_server.base_url, timeout=60, headers={"Accept": "application/fhir+json"}) as c:
        yield c


def run_token(data_dir: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("FHIR_AUTH_")}
    environment.update({"FHIR_DATA_DIR": str(data_dir), **env})
    return subprocess.run([sys.executable, "-m", "fhir_server", "token", *args], env=environment, cwd=ROOT,
                          capture_output=True, text=True, timeout=60, preexec_fn=die_with_pytest)


def token(data_dir: Path, *args: str) -> str:
    done = run_token(data_dir, *args)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("\n") == 1, done.stdout  # the token alone, for $(fhir-server token …)
    return done.stdout.strip()


def assert_401(response: httpx.Response, mentions: str) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"].startswith('Bearer error="invalid_token"')
    assert mentions in response.json()["issue"][0]["diagnostics"], response.text


def test_without_a_token_open_mode_is_unchanged(client):
    created = client.post("/Patient", json={"resourceType": "Patient", "name": [{"family": "Ouvert"}]})
    assert created.status_code == 201, created.text
    assert client.delete(f"/Patient/{created.json()['id']}").status_code in (200, 204)
    assert client.get("/Patient", headers={"Authorization": "Basic YWRtaW46YWRtaW4="}).status_code == 200
    security = client.get("/metadata").json()["rest"][0]["security"]
    assert "OPEN MODE" in security["description"] and "fhir-server token" in security["description"]


def test_before_a_key_is_made_a_bearer_token_is_401(client, open_server, tmp_path):
    local_issuer.key_path(open_server.data_dir).unlink(missing_ok=True)
    elsewhere = token(tmp_path, "--user", GP)  # a good token of another data directory's issuer
    assert_401(client.get("/Patient", headers=bearer(elsewhere)), "no local issuer key")
    assert client.get("/Patient").status_code == 200  # still open without a token
    made = run_token(open_server.data_dir, "--user", GP)
    assert made.returncode == 0 and "local issuer key created" in made.stderr, made.stderr
    assert client.get("/Patient", headers=bearer(made.stdout.strip())).status_code == 200
    assert_401(client.get("/Patient", headers=bearer(elsewhere)), "another FHIR_DATA_DIR")


def test_the_command_prints_a_signed_token_and_keeps_its_key_private(open_server):
    printed = token(open_server.data_dir, "--user", GP, "--scope", "user/Patient.rs user/Observation.rs",
                    "--patient", "p1", "--purpose", "BTG", "--minutes", "5")
    header, claims = decode_unverified(printed)
    assert header["alg"] == "ES256" and header["kid"]
    assert claims["iss"] == local_issuer.ISSUER and claims["aud"] == local_issuer.ISSUER
    assert claims["sub"] == GP and claims["fhirUser"] == GP and claims["scope"] == "user/Patient.rs user/Observation.rs"
    assert claims["patient"] == "p1" and claims["purpose_of_use"] == "BTG" and claims["exp"] - claims["iat"] == 300
    assert claims["jti"] and claims["client_id"] == local_issuer.CLIENT_ID
    key = local_issuer.key_path(open_server.data_dir)
    assert key.stat().st_mode & 0o777 == 0o600
    assert ROOT not in key.resolve().parents  # in the data directory, never in the repository


def test_the_command_says_what_is_wrong(open_server):
    refused = run_token(open_server.data_dir, "--user", GP, FHIR_AUTH_ISSUER="http://127.0.0.1:9/op")
    assert refused.returncode == 2 and not refused.stdout and "open mode" in refused.stderr
    bad_user = run_token(open_server.data_dir, "--user", "s2026-pr0")
    assert bad_user.returncode == 2 and not bad_user.stdout and "--user must be a reference" in bad_user.stderr
    warned = run_token(open_server.data_dir, "--user", GP, "--scope", "patient/*.rs")
    assert warned.returncode == 0 and "grants nothing without --patient" in warned.stderr


def test_a_read_scope_token_cannot_create(client, open_server):
    reader = bearer(token(open_server.data_dir, "--user", GP, "--scope", "user/Patient.rs"))
    assert client.get("/Patient", params={"_count": 1}, headers=reader).status_code == 200
    created = client.post("/Patient", json={"resourceType": "Patient"}, headers=reader)
    assert created.status_code == 403, created.text
    assert created.json()["issue"][0]["code"] == "forbidden"
    assert client.get("/Observation", headers=reader).status_code == 403
    assert client.post("/Patient", json={"resourceType": "Patient"}).status_code == 201  # no token: open


def test_a_patient_token_reaches_its_patient_only(client, open_server):
    mine = client.post("/Patient", json={"resourceType": "Patient", "name": [{"family": "Mienne"}]}).json()["id"]
    other = client.post("/Patient", json={"resourceType": "Patient", "name": [{"family": "Autre"}]}).json()["id"]
    app = bearer(token(open_server.data_dir, "--user", f"Patient/{mine}", "--patient", mine, "--scope", "patient/*.rs"))
    assert client.get(f"/Patient/{mine}", headers=app).status_code == 200
    assert client.get(f"/Patient/{other}", headers=app).status_code == 404
    found = client.get("/Patient", params={"_id": f"{mine},{other}"}, headers=app).json()
    assert [e["resource"]["id"] for e in found.get("entry", ()) if e["search"]["mode"] == "match"] == [mine]


def test_writes_with_a_token_record_its_user(client, open_server):
    writer = bearer(token(open_server.data_dir, "--user", "Practitioner/local-gp", "--purpose", "BTG",
                          "--scope", "user/Organization.cruds"))
    created = client.post("/Organization", json={"resourceType": "Organization", "name": "MSP locale"}, headers=writer)
    assert created.status_code == 201, created.text
    target = f"Organization/{created.json()['id']}"
    provenance = client.get("/Provenance", params={"target": target}).json()["entry"][0]["resource"]
    agents = {a["type"]["coding"][0]["code"]: a["who"] for a in provenance["agent"]}
    assert agents["author"] == {"reference": "Practitioner/local-gp"}
    assert agents["performer"]["identifier"]["value"] == local_issuer.CLIENT_ID
    assert provenance["reason"][0]["coding"][0]["code"] == "BTG"
    # without a token nobody is identified: no Provenance
    anonymous = client.post("/Organization", json={"resourceType": "Organization", "name": "Anonyme"}).json()
    assert client.get("/Provenance", params={"target": f"Organization/{anonymous['id']}"}).json()["total"] == 0


def test_defective_tokens_are_401(client, open_server):
    data_dir = open_server.data_dir
    good = token(data_dir, "--user", GP, "--scope", "user/Patient.rs")
    key, _ = local_issuer.signing_key(data_dir)
    settings = Settings(data_dir=data_dir)
    now = int(time.time())

    def signed(**changes) -> str:
        claims = {**local_issuer.claims(settings, GP, "user/*.cruds"), **changes}
        return jwt.encode({"alg": "ES256", "kid": key.kid}, claims, key, algorithms=["ES256"])

    header, _, signature = good.split(".")
    widened = decode_unverified(good)[1] | {"scope": "user/*.cruds"}
    public = key.as_dict(private=False)
    cases = {
        "tampered": (f"{header}.{b64url(widened)}.{signature}", "signature does not verify"),
        "expired": (signed(iat=now - 7200, exp=now - 3600), "'exp'"),
        "other audience": (signed(aud="https://elsewhere.test/fhir"), "'aud'"),
        "alg none": (unsigned(decode_unverified(good)[1], header={"kid": key.kid}), "'none' are not accepted"),
        "HS256 with the public key": (hmac_signed(decode_unverified(good)[1], public_key_pem(public),
                                                  header={"kid": key.kid}), "'HS256' are not accepted"),
        "garbage": ("garbage", "not a JWT"),
        "empty": ("", "Bearer <token>"),
    }
    for name, (bad, says) in cases.items():
        response = client.post("/Patient", json={"resourceType": "Patient"},
                               headers={"Authorization": f"Bearer {bad}".strip()})
        assert response.status_code == 401, (name, response.text)
        assert_401(response, says)
    assert client.get("/Patient", params={"_count": 1}, headers=bearer(good)).status_code == 200
