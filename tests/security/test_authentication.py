"""Bearer tokens against a real OpenID provider (npm `oidc-provider`, started here): the server
reads the provider's discovery and keys, accepts the tokens it issues, and answers 401 with an
RFC 6750 challenge to every defective token, on every kind of interaction and on bundle entries;
SMART scopes decide what a valid token may do (403 for an interaction, left out of a search)."""

from __future__ import annotations

import httpx
import pytest

from tests.oidc.mint import decode_unverified
from tests.oidc.provider import Client
from tests.security.conftest import AUDIENCE, bearer

# the tests sign EdDSA tokens on purpose (joserfc warns that RFC 9864 deprecates the name)
pytestmark = pytest.mark.filterwarnings("ignore:EdDSA is deprecated")

EVERYTHING = "system/*.cruds"
CLIENTS = [
    Client("backend", scope=[EVERYTHING, "system/*.*"]),
    Client("reader", scope=["system/Patient.rs", "system/Observation.read"]),
    Client("gp", scope=["user/*.cruds"], claims={"fhirUser": "Practitioner/gp-1"}),
    Client("es256", scope=[EVERYTHING], alg="ES256"),
    Client("es384", scope=[EVERYTHING], alg="ES384"),
    Client("ps256", scope=[EVERYTHING], alg="PS256"),
    Client("eddsa", scope=[EVERYTHING], alg="EdDSA"),  # RFC 8037, with the provider's Ed25519 key
    Client("elsewhere", scope=[EVERYTHING], audience="https://another.server/fhir"),
]


@pytest.fixture(scope="module")
def admin(provider) -> dict[str, str]:
    return bearer(provider.token("backend", scope=EVERYTHING))


@pytest.fixture(scope="module")
def patient_id(http, admin) -> str:
    created = http.post("/Patient", json={"resourceType": "Patient", "name": [{"family": "Token"}]}, headers=admin)
    assert created.status_code == 201, created.text
    return created.json()["id"]


def assert_401(response: httpx.Response, mentions: str | None = None) -> None:
    assert response.status_code == 401, response.text
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith('Bearer error="invalid_token", error_description="'), challenge
    body = response.json()
    assert body["resourceType"] == "OperationOutcome" and body["issue"][0]["code"] == "login"
    if mentions:
        assert mentions in body["issue"][0]["diagnostics"], body


# -- what needs no token -----------------------------------------------------------------------------
def test_metadata_and_smart_discovery_need_no_token(http, provider):
    statement = http.get("/metadata")
    assert statement.status_code == 200
    security = statement.json()["rest"][0]["security"]
    assert security["service"][0]["coding"][0]["code"] == "SMART-on-FHIR"
    uris = {e["url"]: e["valueUri"] for e in security["extension"][0]["extension"]}
    assert uris["token"] == provider.discovery()["token_endpoint"]
    smart = http.get("/.well-known/smart-configuration", headers={"Accept": "application/json"})
    assert smart.status_code == 200, smart.text
    found = smart.json()
    assert found["issuer"] == provider.issuer and found["token_endpoint"] == provider.token_endpoint
    assert "permission-v2" in found["capabilities"] and found["scopes_supported"]


# -- tokens the provider issues ------------------------------------------------------------------------
@pytest.mark.parametrize("client", ["backend", "es256", "es384", "ps256", "eddsa"])
def test_a_token_from_the_provider_is_accepted(http, provider, patient_id, client):
    token = provider.token(client, scope=EVERYTHING)
    expected = {"backend": "RS256", "es256": "ES256", "es384": "ES384", "ps256": "PS256", "eddsa": "EdDSA"}[client]
    assert decode_unverified(token)[0]["alg"] == expected
    r = http.get(f"/Patient/{patient_id}", headers=bearer(token))
    assert r.status_code == 200, r.text


def test_the_eddsa_key_the_provider_signs_with_is_ed25519(provider):
    token = provider.token("eddsa", scope=EVERYTHING)
    kid = decode_unverified(token)[0]["kid"]
    assert kid == provider.generated_kids["Ed25519"]
    assert provider.public_jwk(kid)["crv"] == "Ed25519"


@pytest.mark.parametrize("alg", ["Ed25519", "EdDSA", "RS384", "RS512", "PS384", "PS512", "ES384"])
def test_minted_tokens_of_every_accepted_algorithm(http, provider, patient_id, alg):
    # `Ed25519` is RFC 9864's fully specified name for what RFC 8037 calls EdDSA over an Ed25519 key
    mint = provider.mint
    key = mint.key_for("EdDSA" if alg == "Ed25519" else alg)
    token = mint.sign(mint.claims(scope=EVERYTHING), alg=alg, key=key)
    r = http.get(f"/Patient/{patient_id}", headers=bearer(token))
    assert r.status_code == 200, r.text


def test_v1_scopes_from_the_provider(http, provider, patient_id):
    token = provider.token("backend", scope="system/*.*")
    assert http.get(f"/Patient/{patient_id}", headers=bearer(token)).status_code == 200


# -- every defect is a 401, whatever the interaction --------------------------------------------------
DEFECTS = ["missing", "not bearer", "empty", "garbage", "expired", "not yet valid", "wrong issuer", "wrong audience",
           "wrong signature", "alg none", "HS256 with the public key", "unknown kid", "tampered",
           "other audience from the provider", "EdDSA over an RSA key", "EdDSA wrong signature",
           "HS256 with the Ed25519 public key"]


def defective(provider, defect: str) -> dict[str, str]:
    mint = provider.mint
    rsa = provider.generated_kids["RSA"]
    tokens = {
        "garbage": "garbage",
        "expired": mint.expired(scope=EVERYTHING),
        "not yet valid": mint.not_yet_valid(scope=EVERYTHING),
        "wrong issuer": mint.wrong_issuer(scope=EVERYTHING),
        "wrong audience": mint.wrong_audience(scope=EVERYTHING),
        "wrong signature": mint.wrong_signature(kid=rsa, scope=EVERYTHING),
        "alg none": mint.alg_none(scope=EVERYTHING),
        "HS256 with the public key": mint.hs256_confusion(provider.public_jwk(rsa), scope=EVERYTHING),
        "unknown kid": mint.unknown_kid(scope=EVERYTHING),
        "tampered": mint.tampered(scope=EVERYTHING),
        "other audience from the provider": provider.token("elsewhere", scope=EVERYTHING),
        "EdDSA over an RSA key": mint.sign(mint.claims(scope=EVERYTHING), alg="EdDSA", key=mint.key_for("EdDSA"),
                                           header={"kid": rsa}),
        "EdDSA wrong signature": mint.wrong_signature(kid=provider.generated_kids["Ed25519"], alg="EdDSA",
                                                      scope=EVERYTHING),
        "HS256 with the Ed25519 public key": mint.hs256_confusion(
            provider.public_jwk(provider.generated_kids["Ed25519"]), scope=EVERYTHING),
    }
    if defect == "missing":
        return {}
    if defect == "not bearer":
        return {"Authorization": "Basic YWRtaW46YWRtaW4="}
    if defect == "empty":
        return {"Authorization": "Bearer"}
    return bearer(tokens[defect])


INTERACTIONS = [
    ("GET", "/Patient/{id}", None),
    ("GET", "/Patient/{id}/_history/1", None),
    ("GET", "/Patient?name=token", None),
    ("POST", "/Patient/_search", None),
    ("GET", "/Patient/{id}/_history", None),
    ("GET", "/_history", None),
    ("POST", "/Patient", {"resourceType": "Patient"}),
    ("PUT", "/Patient/{id}", {"resourceType": "Patient", "id": "{id}"}),
    ("PATCH", "/Patient/{id}", [{"op": "add", "path": "/active", "value": True}]),
    ("DELETE", "/Patient/{id}", None),
    ("GET", "/Patient/{id}/$everything", None),
    ("POST", "/", {"resourceType": "Bundle", "type": "batch", "entry": [{"request": {"method": "GET",
                                                                                     "url": "Patient/{id}"}}]}),
]


@pytest.mark.parametrize("defect", DEFECTS)
def test_every_token_defect_is_401_on_every_interaction(http, provider, patient_id, defect):
    headers = defective(provider, defect)
    for method, path, body in INTERACTIONS:
        url = path.replace("{id}", patient_id)
        kwargs = {}
        if body is not None:
            text = httpx.Request("POST", "/", json=body).content.decode().replace("{id}", patient_id)
            content_type = "application/json-patch+json" if method == "PATCH" else "application/fhir+json"
            kwargs = {"content": text, "headers": {**headers, "Content-Type": content_type}}
        else:
            kwargs = {"headers": headers}
            if path.endswith("_search"):
                kwargs = {"headers": {**headers, "Content-Type": "application/x-www-form-urlencoded"},
                          "content": "name=token"}
        assert_401(http.request(method, url, **kwargs))
    # nothing was changed by any of them
    admin_token = provider.token("backend", scope=EVERYTHING)
    assert http.get(f"/Patient/{patient_id}", headers=bearer(admin_token)).json()["meta"]["versionId"] == "1"


def test_401_says_what_is_wrong(http, provider):
    assert_401(http.get("/Patient"), "no access token")
    assert_401(http.get("/Patient", headers=bearer(provider.mint.expired(scope=EVERYTHING))), "exp")
    assert_401(http.get("/Patient", headers=bearer(provider.mint.alg_none(scope=EVERYTHING))), "not accepted")
    assert_401(http.get("/Patient", headers=bearer(provider.mint.wrong_audience(scope=EVERYTHING))), "aud")


def test_algorithm_and_key_confusions_say_why(http, provider):
    mint = provider.mint
    rsa, ed25519 = provider.generated_kids["RSA"], provider.generated_kids["Ed25519"]
    claims = mint.claims(scope=EVERYTHING)
    hs256 = mint.hs256_confusion(provider.public_jwk(rsa), scope=EVERYTHING)
    assert_401(http.get("/Patient", headers=bearer(hs256)), "'HS256' are not accepted")
    assert_401(http.get("/Patient", headers=bearer(mint.alg_none(scope=EVERYTHING))), "'none' are not accepted")
    eddsa_over_rsa = mint.sign(claims, alg="EdDSA", key=mint.key_for("EdDSA"), header={"kid": rsa})
    assert_401(http.get("/Patient", headers=bearer(eddsa_over_rsa)), "is an RSA key: it cannot verify EdDSA")
    ed25519_over_rsa = mint.sign(claims, alg="Ed25519", key=mint.key_for("EdDSA"), header={"kid": rsa})
    assert_401(http.get("/Patient", headers=bearer(ed25519_over_rsa)), "cannot verify Ed25519")
    rs256_over_ed25519 = mint.sign(claims, alg="RS256", key=mint.key_for("RS256"), header={"kid": ed25519})
    assert_401(http.get("/Patient", headers=bearer(rs256_over_ed25519)), "is an OKP Ed25519 key")
    es256_over_p384 = mint.sign(claims, alg="ES256", key=mint.key_for("ES256"),
                                header={"kid": provider.generated_kids["P-384"]})
    assert_401(http.get("/Patient", headers=bearer(es256_over_p384)), "needs an EC P-256 key")


def test_a_local_issuer_token_is_refused_when_an_issuer_is_configured(http, secured, patient_id):
    # `fhir-server token` refuses to run with FHIR_AUTH_ISSUER; a token made with the server's key anyway
    from fhir_server.config import Settings
    from fhir_server.security import local_issuer

    token, _ = local_issuer.issue(Settings(data_dir=secured.data_dir, auth_audience=AUDIENCE),
                                  "Practitioner/gp-1", EVERYTHING)
    assert_401(http.get(f"/Patient/{patient_id}", headers=bearer(token)), "is not one of")


def test_a_minted_token_signed_with_a_published_key_is_accepted(http, provider, patient_id):
    # the minter's keys are published by the provider: only the claims decide
    assert http.get(f"/Patient/{patient_id}", headers=bearer(provider.mint.token(scope=EVERYTHING))).status_code == 200


# -- scopes ---------------------------------------------------------------------------------------------
def test_a_scope_that_does_not_cover_the_interaction_is_403(http, provider, patient_id):
    reader = bearer(provider.token("reader", scope="system/Patient.rs system/Observation.read"))
    assert http.get(f"/Patient/{patient_id}", headers=reader).status_code == 200
    assert http.get("/Patient", params={"_id": patient_id}, headers=reader).json()["total"] == 1
    for method, path, body in [("POST", "/Patient", {"resourceType": "Patient"}),
                               ("DELETE", f"/Patient/{patient_id}", None),
                               ("GET", "/Encounter", None),
                               ("GET", "/Encounter/x", None)]:
        r = http.request(method, path, json=body, headers=reader)
        assert r.status_code == 403, (method, path, r.text)
        assert r.json()["issue"][0]["code"] == "forbidden"
    assert http.get(f"/Patient/{patient_id}", headers=reader).json()["meta"]["versionId"] == "1"


def test_bundle_entries_are_checked_one_by_one(http, provider, patient_id):
    reader = bearer(provider.token("reader", scope="system/Patient.rs"))
    batch = {"resourceType": "Bundle", "type": "batch", "entry": [
        {"request": {"method": "GET", "url": f"Patient/{patient_id}"}},
        {"request": {"method": "POST", "url": "Patient"}, "resource": {"resourceType": "Patient"}},
        {"request": {"method": "GET", "url": "Encounter?status=finished"}}]}
    entries = http.post("/", json=batch, headers=reader).json()["entry"]
    assert [e["response"]["status"][:3] for e in entries] == ["200", "403", "403"]
    transaction = {**batch, "type": "transaction", "entry": batch["entry"][1:2]}
    assert http.post("/", json=transaction, headers=reader).status_code == 403


def test_a_system_search_leaves_out_the_types_the_scopes_do_not_cover(http, provider, admin, patient_id):
    http.post("/Encounter", json={"resourceType": "Encounter", "status": "finished", "class": {"code": "AMB"},
                                  "subject": {"reference": f"Patient/{patient_id}"}}, headers=admin)
    reader = bearer(provider.token("reader", scope="system/Patient.rs"))
    bundle = http.get("/", params={"_type": "Patient,Encounter", "_id": patient_id}, headers=reader).json()
    types = {e["resource"]["resourceType"] for e in bundle.get("entry", ())}
    assert "Encounter" not in types and "Patient" in types
    outcome = next(e["resource"] for e in bundle["entry"] if e["search"]["mode"] == "outcome")
    assert any("Encounter" in i["diagnostics"] for i in outcome["issue"])
    compartment = http.get(f"/Patient/{patient_id}/*", headers=reader).json()
    assert all(e["resource"]["resourceType"] != "Encounter" for e in compartment.get("entry", ()))
    included = http.get("/Patient", params={"_id": patient_id, "_revinclude": "Encounter:subject"},
                        headers=reader).json()
    assert {e["resource"]["resourceType"] for e in included["entry"]} == {"Patient"}
    everything = http.get(f"/Patient/{patient_id}/$everything", headers=reader).json()
    assert {e["resource"]["resourceType"] for e in everything["entry"]} == {"Patient"}
    assert http.get("/_history", headers=reader).status_code == 403


def test_user_scopes_act_for_the_fhir_user(http, provider, admin, patient_id):
    """The user is the token's fhirUser: the équipe de soins rule opens the patient once
    Practitioner/gp-1 is its médecin traitant (tests/security/test_care_team.py has the rest)."""
    gp = bearer(provider.token("gp", scope="user/*.cruds"))
    assert http.get(f"/Patient/{patient_id}", headers=gp).status_code == 404
    patient = http.get(f"/Patient/{patient_id}", headers=admin).json()
    gp_1 = http.put("/Practitioner/gp-1", json={"resourceType": "Practitioner", "id": "gp-1"}, headers=admin)
    assert gp_1.status_code in (200, 201), gp_1.text  # the reference must resolve (referential integrity)
    patient["generalPractitioner"] = [{"reference": "Practitioner/gp-1"}]
    assert http.put(f"/Patient/{patient_id}", json=patient, headers=admin).status_code == 200
    assert http.get(f"/Patient/{patient_id}", headers=gp).status_code == 200


def test_conditions_are_searches_and_need_a_search_scope(http, provider, patient_id):
    creator = bearer(provider.token("reader", scope="system/Observation.read"))
    writer = bearer(provider.mint.token(scope="system/Patient.cu"))
    r = http.put("/Patient", params={"_id": patient_id}, json={"resourceType": "Patient"}, headers=writer)
    assert r.status_code == 403, r.text
    r = http.post("/Patient", json={"resourceType": "Patient"}, headers={**writer, "If-None-Exist": f"_id={patient_id}"})
    assert r.status_code == 403, r.text
    transaction = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"request": {"method": "POST", "url": "Observation"}, "resource": {
            "resourceType": "Observation", "status": "final", "code": {"text": "x"},
            "subject": {"reference": f"Patient?_id={patient_id}"}}}]}
    assert http.post("/", json=transaction, headers=bearer(provider.mint.token(scope="system/Observation.c"))
                     ).status_code == 403
    assert creator  # a read scope alone writes nothing either
    assert http.post("/", json=transaction, headers=creator).status_code == 403


def test_third_party_clients_work_with_a_token(secured, provider):
    from fhirclient import client as smart_client
    from fhirclient.models.patient import Patient as FCPatient
    from fhirpy import SyncFHIRClient
    from fhirpy.base.exceptions import AuthorizationError

    token = provider.token("backend", scope=EVERYTHING)
    fhirpy = SyncFHIRClient(secured.base_url, authorization=f"Bearer {token}",
                            extra_headers={"Accept": "application/fhir+json"})
    patient = fhirpy.resource("Patient", name=[{"family": "Porteur"}])
    patient.save()
    assert fhirpy.reference("Patient", patient.id).to_resource()["name"][0]["family"] == "Porteur"
    with pytest.raises(AuthorizationError):
        SyncFHIRClient(secured.base_url).reference("Patient", patient.id).to_resource()

    smart = smart_client.FHIRClient(settings={"app_id": "fhir-server-tests", "api_base": secured.base_url})
    smart.server.session.headers["Authorization"] = f"Bearer {token}"
    assert FCPatient.read(patient.id, smart.server).name[0].family == "Porteur"
