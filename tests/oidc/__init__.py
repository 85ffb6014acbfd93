"""Test harness for OpenID Connect bearer-token authentication: a real oidc-provider (npm) run by
provider.py, and tokens minted by the tests themselves (mint.py). See README.md."""
