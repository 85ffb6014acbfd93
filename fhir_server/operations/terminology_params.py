"""The inputs of the terminology operations, read as their OperationDefinition says.

Names, types and cardinalities come from the R4 OperationDefinition in the core package
(`ValueSet-expand`, `CodeSystem-lookup`…). Primitive inputs may come in the query string (GET
or POST) or in a `Parameters` body (POST); complex ones (Coding, CodeableConcept, a ValueSet)
only in the body. A value of the wrong type, a repeated 0..1 input, a body that is not a
`Parameters`: 400. Inputs the definition does not name are ignored (400 with
`Prefer: handling=strict`); inputs that would change the answer in a way this server does not
implement (e.g. `system-version`) are refused with 400 rather than ignored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fhir_server.errors import FhirError, Issue, bad_request
from fhir_server.interactions.request import FhirRequest

if TYPE_CHECKING:
    from fhir_server.server import FhirServer

CONTROL = frozenset({"_format", "_pretty", "_summary", "_elements"})
_STRINGS = frozenset({"string", "uri", "url", "canonical", "code", "id", "oid", "uuid", "markdown", "dateTime",
                      "date", "instant", "time"})


@dataclass
class Inputs:
    op: str
    values: dict[str, list[Any]]

    def get(self, name: str) -> Any:
        found = self.values.get(name)
        return found[0] if found else None

    def all(self, name: str) -> list[Any]:
        return list(self.values.get(name) or ())

    def __contains__(self, name: str) -> bool:
        return name in self.values


def read_inputs(server: FhirServer, req: FhirRequest, definition: str, refused: tuple[str, ...] = ()) -> Inputs:
    opdef = server.definitions.resource(definition)
    if opdef is None:  # the core package always has them; say so plainly if it does not
        raise FhirError(500, Issue("fatal", "exception", f"the OperationDefinition {definition} is not loaded"))
    op = f"${opdef.get('code')}"
    declared = {p["name"]: p for p in opdef.get("parameter") or () if p.get("use") == "in"}
    values: dict[str, list[Any]] = {}
    strict = req.prefer_handling == "strict"
    for name, raw in req.params:
        if name in CONTROL:
            continue
        param = declared.get(name)
        if param is None:
            _unknown(op, name, strict)
            continue
        type_ = param.get("type") or ""
        if not type_[:1].islower():
            raise bad_request(f"{op}: {name} is a {type_ or 'group of parts'}; send it in a Parameters body with POST",
                              code="not-supported")
        values.setdefault(name, []).append(_from_text(op, name, type_, raw))
    if req.method == "POST" and req.body is not None:
        body = req.body
        if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
            raise bad_request(f"{op} takes a Parameters resource in the body", code="structure")
        for item in body.get("parameter") or ():
            if not isinstance(item, dict) or not isinstance(item.get("name"), str):
                raise bad_request(f"{op}: each parameter needs a name", code="structure")
            name = item["name"]
            param = declared.get(name)
            if param is None:
                _unknown(op, name, strict)
                continue
            values.setdefault(name, []).append(_from_parameter(op, name, param.get("type") or "", item))
    for name, found in values.items():
        if declared[name].get("max") == "1" and len(found) > 1:
            raise bad_request(f"{op}: {name} is given {len(found)} times; it takes one value", code="value")
    for name in refused:
        if name in values:
            raise FhirError(400, Issue("error", "not-supported", f"{op}: the {name} parameter is not supported by "
                                                                 f"this server"))
    return Inputs(op, values)


def _unknown(op: str, name: str, strict: bool) -> None:
    if strict:
        raise FhirError(400, Issue("error", "not-supported",
                                   f"{op} has no parameter {name!r} (Prefer: handling=strict)"))


_INTEGER = re.compile(r"-?[0-9]{1,10}")


def _from_text(op: str, name: str, type_: str, raw: str) -> Any:
    if type_ == "boolean":
        if raw not in ("true", "false"):
            raise bad_request(f"{op}: {name} is true or false, not {raw!r}", code="value")
        return raw == "true"
    if type_ in ("integer", "positiveInt", "unsignedInt"):
        if not _INTEGER.fullmatch(raw.strip()) or not -2 ** 31 <= int(raw) < 2 ** 31:
            raise bad_request(f"{op}: {name} is an integer (32 bits, as FHIR's), not {raw[:40]!r}", code="value")
        return int(raw)
    return raw


def _from_parameter(op: str, name: str, type_: str, item: dict[str, Any]) -> Any:
    if "resource" in item:
        resource = item["resource"]
        if not isinstance(resource, dict) or resource.get("resourceType") != type_:
            raise bad_request(f"{op}: {name} must be a {type_} resource", code="value")
        return resource
    found = [(k, v) for k, v in item.items() if k.startswith("value")]
    if len(found) != 1:
        raise bad_request(f"{op}: {name} needs one value ({_value_key(type_)})", code="value")
    key, value = found[0]
    if type_[:1].isupper():  # a data type (Coding, CodeableConcept) or a resource
        if key != _value_key(type_) or not isinstance(value, dict):
            raise bad_request(f"{op}: {name} is a {type_}: send it as {_value_key(type_)}", code="value")
        return value
    if type_ == "boolean":
        if not isinstance(value, bool):
            raise bad_request(f"{op}: {name} is a boolean (valueBoolean)", code="value")
        return value
    if type_ in ("integer", "positiveInt", "unsignedInt"):
        if not isinstance(value, int) or isinstance(value, bool):
            raise bad_request(f"{op}: {name} is an integer ({_value_key(type_)})", code="value")
        return value
    if not isinstance(value, str) or key[len("value"):][:1].lower() + key[len("value") + 1:] not in _STRINGS:
        raise bad_request(f"{op}: {name} is a {type_} ({_value_key(type_)})", code="value")
    return value


def _value_key(type_: str) -> str:
    return "value" + type_[:1].upper() + type_[1:]
