"""ele-1 and ext-1, the invariants of every element, checked in one pass over the JSON.

They hold on every element of every resource, so they are not evaluated with fhirpathpy
element by element: same meaning (an element has a value or children other than `id`; an
extension has `extension` or `value[x]`, not both), one walk of the resource.
"""

from __future__ import annotations

from typing import Any

from fhir_server.errors import Issue


def scan(value: Any, expression: str, issues: list[Issue]) -> None:
    """ele-1 and ext-1 over a whole resource (nested resources included)."""
    if isinstance(value, dict):
        _scan_object(value, expression, issues, False)


def _has_choice_value(obj: dict[str, Any]) -> bool:
    for key in obj:
        if key.startswith("value") and len(key) > 5 and key[5].isupper():
            return True
        if key.startswith("_value") and len(key) > 6 and key[6].isupper():
            return True
    return False


def _scan_object(obj: dict[str, Any], expression: str, issues: list[Issue], is_extension: bool) -> None:
    if is_extension:
        has_extension = "extension" in obj
        if has_extension == _has_choice_value(obj):
            issues.append(Issue("error", "invariant",
                                "Constraint ext-1 failed: Must have either extensions or value[x], not both "
                                + ("(this extension has both)" if has_extension else "(this extension has neither)")
                                + " [extension.exists() != value.exists()]", [expression]))
    elif "resourceType" not in obj and len(obj) == 1 and "id" in obj:
        issues.append(Issue("error", "invariant", "Constraint ele-1 failed: All FHIR elements must have a @value "
                                                  "or children (this one only has an id) "
                                                  "[hasValue() or (children().count() > id.count())]",
                            [expression]))
    for key, value in obj.items():
        if key[:1] == "_":
            name = key[1:]
            base = obj.get(name)
            if isinstance(value, list):
                for i, extra in enumerate(value):
                    if isinstance(extra, dict):
                        has_value = isinstance(base, list) and i < len(base) and base[i] is not None
                        _scan_companion(extra, f"{expression}.{name}[{i}]", issues, has_value)
            elif isinstance(value, dict):
                _scan_companion(value, f"{expression}.{name}", issues, base is not None)
            continue
        extension = key == "extension" or key == "modifierExtension"
        if isinstance(value, list):
            for i, item in enumerate(value):
                if isinstance(item, dict):
                    _scan_object(item, f"{expression}.{key}[{i}]", issues, extension)
        elif isinstance(value, dict):
            _scan_object(value, f"{expression}.{key}", issues, extension)


def _scan_companion(extra: dict[str, Any], expression: str, issues: list[Issue], has_value: bool) -> None:
    if not has_value and "extension" not in extra:
        issues.append(Issue("error", "invariant", "Constraint ele-1 failed: All FHIR elements must have a @value "
                                                  "or children (this primitive has neither a value nor an "
                                                  "extension) [hasValue() or (children().count() > id.count())]",
                            [expression]))
    for i, item in enumerate(extra.get("extension") or ()):
        if isinstance(item, dict):
            _scan_object(item, f"{expression}.extension[{i}]", issues, True)
