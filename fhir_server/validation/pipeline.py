"""The whole validation of one resource, as writes and `$validate` run it.

First the structure (well-formed R4 JSON; nothing else is worth checking on a malformed
resource), then the base definition's rules (required bindings, invariants) and every profile
that applies: those the resource declares in `meta.profile`, those `FHIR_REQUIRED_PROFILES`
imposes on its type, and those a `$validate` caller names.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fhir_server.errors import Issue

if TYPE_CHECKING:
    from fhir_server.server import FhirServer

_BLOCKING = ("error", "fatal")


def required_profiles(setting: str, resource_type: str) -> list[str]:
    """`FHIR_REQUIRED_PROFILES=Patient=url1,Patient=url2,Practitioner=url3` → a type's profiles."""
    out = []
    for item in setting.split(","):
        type_, _, url = item.strip().partition("=")
        if type_.strip() == resource_type and url.strip():
            out.append(url.strip())
    return out


def profiles_for(server: FhirServer, resource: dict[str, Any], extra: list[str] = ()) -> list[str]:
    declared = (resource.get("meta") or {}).get("profile") or []
    wanted = [p for p in declared if isinstance(p, str)]
    wanted += required_profiles(server.settings.required_profiles, resource["resourceType"])
    wanted += list(extra)
    return list(dict.fromkeys(wanted))


def validate(server: FhirServer, resource: dict[str, Any], extra_profiles: list[str] = ()) -> list[Issue]:
    """Every issue, all severities: structural, then base rules and profiles."""
    issues = structural(server, resource)
    if any(i.severity in _BLOCKING for i in issues):
        return issues
    return issues + rules(server, resource, extra_profiles)


def structural(server: FhirServer, resource: dict[str, Any]) -> list[Issue]:
    """Is it well-formed R4 JSON (and are its INS keys right)?"""
    return server.validator.validate(resource, resource.get("resourceType"))


def rules(server: FhirServer, resource: dict[str, Any], extra_profiles: list[str] = ()) -> list[Issue]:
    """The base definition's rules (bindings, invariants, reference targets) and the profiles."""
    found = server.profile_validator.validate(resource, profiles_for(server, resource, extra_profiles))
    return [_escalate(server, i) for i in found]


def _escalate(server: FhirServer, issue: Issue) -> Issue:
    """An unknown declared profile is a warning, or an error with FHIR_UNKNOWN_PROFILE=error."""
    if issue.code == "not-found" and issue.severity == "warning" and issue.diagnostics.startswith("Profile ") \
            and server.settings.unknown_profile == "error":
        return Issue("error", issue.code, issue.diagnostics, issue.expression)
    return issue


def blocking(issues: list[Issue]) -> list[Issue]:
    return [i for i in issues if i.severity in _BLOCKING]
