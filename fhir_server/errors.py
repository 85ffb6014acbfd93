"""Errors as FHIR sees them: every failure becomes an OperationOutcome with an HTTP status.

Layers below HTTP raise `FhirError`; the HTTP layer only turns it into a response. Issue codes
are those of the R4 `issue-type` value set.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Issue:
    severity: str  # fatal | error | warning | information
    code: str  # issue-type code: invalid, structure, required, value, not-found, conflict, ...
    diagnostics: str
    expression: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"severity": self.severity, "code": self.code, "diagnostics": self.diagnostics}
        if self.expression:
            out["expression"] = list(self.expression)
        return out


MAX_ISSUES = 100  # an answer stays small whatever the request (a body of 20,000 errors)


def operation_outcome(issues: list[Issue]) -> dict[str, Any]:
    shown = issues[:MAX_ISSUES]
    out = [i.to_json() for i in shown]
    if len(issues) > MAX_ISSUES:
        out.append(Issue("information", "too-costly",
                         f"{len(issues) - MAX_ISSUES} more issues are not listed; fix these first").to_json())
    return {"resourceType": "OperationOutcome", "issue": out}


class FhirError(Exception):
    """A request that cannot be honoured; carries the HTTP status and the issues to report."""

    def __init__(self, status: int, issues: list[Issue] | Issue | str, code: str = "processing",
                 headers: dict[str, str] | None = None):
        if isinstance(issues, str):
            issues = [Issue("error", code, issues)]
        elif isinstance(issues, Issue):
            issues = [issues]
        self.status = status
        self.issues = issues
        self.headers = headers or {}
        super().__init__("; ".join(i.diagnostics for i in issues))

    def outcome(self) -> dict[str, Any]:
        return operation_outcome(self.issues)


def bad_request(message: str, code: str = "invalid", expression: str | None = None) -> FhirError:
    return FhirError(400, Issue("error", code, message, [expression] if expression else []))


def not_found(message: str) -> FhirError:
    return FhirError(404, Issue("error", "not-found", message))


class DatabaseUnavailable(FhirError):
    def __init__(self, detail: str = ""):
        text = "The database is unreachable; retry shortly."
        super().__init__(503, Issue("error", "transient", text + (f" ({detail})" if detail else "")),
                         headers={"Retry-After": "2"})
