"""SMART App Launch discovery (`[base]/.well-known/smart-configuration`) and the security part
of the CapabilityStatement, both taken from the OpenID provider's own discovery document."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fhir_server.errors import FhirError, Issue
from fhir_server.interactions.request import FhirRequest, FhirResponse
from fhir_server.security.tokens import ProviderUnavailable

if TYPE_CHECKING:
    from fhir_server.server import FhirServer

CAPABILITIES = ["client-confidential-symmetric", "client-confidential-asymmetric", "permission-v1", "permission-v2",
                "permission-user", "permission-patient", "context-standalone-patient", "launch-standalone"]
SCOPES = ["openid", "fhirUser", "launch/patient", "patient/*.rs", "user/*.cruds", "system/*.cruds",
          "patient/*.read", "user/*.*", "system/*.*"]
_COPIED = ("authorization_endpoint", "token_endpoint", "introspection_endpoint", "revocation_endpoint",
           "registration_endpoint", "jwks_uri", "grant_types_supported", "token_endpoint_auth_methods_supported",
           "token_endpoint_auth_signing_alg_values_supported", "response_types_supported",
           "code_challenge_methods_supported")


def smart_configuration(server: FhirServer, req: FhirRequest) -> FhirResponse:
    verifier = server.token_verifier
    if verifier is None:
        raise FhirError(404, Issue("error", "not-found", "this server runs in open mode (no FHIR_AUTH_ISSUER): there "
                                   "is no authorization server to discover"))
    try:
        found = verifier.discovery()
    except ProviderUnavailable:
        raise FhirError(503, Issue("error", "transient", "the identity provider cannot be reached; retry shortly"),
                        headers={"Retry-After": "5"}) from None
    out: dict[str, Any] = {"issuer": verifier.issuer}
    out.update({key: found[key] for key in _COPIED if key in found})
    out["scopes_supported"] = SCOPES
    out["capabilities"] = CAPABILITIES
    return FhirResponse(200, out)


def rest_security(server: FhirServer) -> dict[str, Any]:
    """CapabilityStatement.rest.security: SMART on FHIR with the provider's endpoints, or the
    warning that nobody is authenticated (but for local tokens, which only narrow open mode)."""
    verifier = server.token_verifier
    cors = bool(server.settings.cors_origins.strip())  # FHIR_CORS_ORIGINS opens CORS to those origins
    if verifier is None:
        return {"cors": cors, "description": "OPEN MODE: no authentication, every request without a token may do "
                                              "everything; a bearer token of the local issuer (`fhir-server token`) "
                                              "acts with its own identity and scopes. Allowed only on a loopback "
                                              "address; set FHIR_AUTH_ISSUER."}
    uris = []
    try:
        found = verifier.discovery()
        uris = [{"url": name, "valueUri": found[key]} for name, key in
                (("token", "token_endpoint"), ("authorize", "authorization_endpoint"),
                 ("introspect", "introspection_endpoint"), ("revoke", "revocation_endpoint"))
                if isinstance(found.get(key), str)]
    except ProviderUnavailable:
        pass  # the statement is served even while the provider is away
    security: dict[str, Any] = {
        "cors": cors,
        "service": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                                 "code": "SMART-on-FHIR"}], "text": "OAuth2 bearer tokens (SMART on FHIR)"}],
        "description": f"JWT access tokens issued by {verifier.issuer} for audience {verifier.audience}, with SMART "
                       f"v1/v2 scopes; see [base]/.well-known/smart-configuration"}
    if uris:
        security["extension"] = [{"url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
                                  "extension": uris}]
    return security
