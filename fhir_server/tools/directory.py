"""Import of a CPTS member directory from CSV: Practitioner, PractitionerRole, Organization.

One row per professional in a structure (RPPS, name, profession TRE_G15, specialty, MSSanté
address, phone; structure FINESS or SIRET, name, category TRE_R66); the column mapping is
`mappings/directory-csv.json` (checked against its JSON Schema). Every row is checked first;
one bad row and nothing is imported — the report lists each bad row by line number. The rows
become one transaction of conditional updates keyed by identifier, so importing the same
directory again updates instead of duplicating.
"""

from __future__ import annotations

import csv
import io
import json
import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema

MAPPINGS = Path(__file__).resolve().parents[2] / "mappings"
_RPPS = re.compile(r"^\d{11}$")
_FINESS = re.compile(r"^\d[\dAB]\d{7}$")
_SIRET = re.compile(r"^\d{14}$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_CODE = re.compile(r"^[A-Za-z0-9_.-]{1,32}$")


class DirectoryError(Exception):
    """The CSV cannot be imported; `problems` lists each one (with its line number)."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__(f"{len(problems)} problem(s) in the directory")


@dataclass
class Row:
    line: int
    values: dict[str, str]


@dataclass
class Directory:
    mapping: dict[str, Any]
    rows: list[Row] = field(default_factory=list)


def load_mapping(path: Path | None = None) -> dict[str, Any]:
    path = path or MAPPINGS / "directory-csv.json"
    mapping = json.loads(path.read_text(encoding="utf-8"))
    schema = json.loads((MAPPINGS / "directory-csv.schema.json").read_text(encoding="utf-8"))
    try:
        jsonschema.validate(mapping, schema)
    except jsonschema.ValidationError as exc:
        raise DirectoryError([f"{path}: the mapping does not follow its schema: {exc.message}"]) from None
    return mapping


def read(text: str, mapping: dict[str, Any]) -> Directory:
    """Parse and check every row; DirectoryError listing all problems if any."""
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")), delimiter=mapping["delimiter"])
    columns = mapping["columns"]
    missing = [name for key, name in columns.items() if key in mapping["required"]
               and name not in (reader.fieldnames or [])]
    if missing:
        raise DirectoryError([f"line 1: the header lacks the column(s) {', '.join(missing)}"])
    directory = Directory(mapping)
    problems: list[str] = []
    for number, raw in enumerate(reader, start=2):
        values = {key: (raw.get(name) or "").strip() for key, name in columns.items()}
        found = _problems(values, mapping)
        problems.extend(f"line {number}: {p}" for p in found)
        if not found:
            directory.rows.append(Row(number, values))
    if not directory.rows and not problems:
        problems.append("the file holds no row")
    if problems:
        raise DirectoryError(problems)
    return directory


def _problems(values: dict[str, str], mapping: dict[str, Any]) -> list[str]:
    out = [f"{mapping['columns'][key]} is empty" for key in mapping["required"] if not values.get(key)]
    if values.get("rpps") and not _RPPS.match(values["rpps"]):
        out.append(f"RPPS {values['rpps']!r} is not 11 digits")
    kind = values.get("structure_identifier_type", "").upper()
    ident = values.get("structure_identifier", "")
    if kind not in ("FINESS", "SIRET"):
        out.append(f"structure identifier type {values.get('structure_identifier_type')!r} is not FINESS or SIRET")
    elif ident and not (_FINESS if kind == "FINESS" else _SIRET).match(ident):
        out.append(f"{kind} {ident!r} is not a valid {kind} ({'9 characters' if kind == 'FINESS' else '14 digits'})")
    for key in ("profession", "specialty", "structure_category"):
        if values.get(key) and not _CODE.match(values[key]):
            out.append(f"{mapping['columns'][key]} {values[key]!r} is not a code")
    if values.get("mssante") and not _EMAIL.match(values["mssante"]):
        out.append(f"MSSanté address {values['mssante']!r} is not an e-mail address")
    return out


def transaction(directory: Directory) -> dict[str, Any]:
    """The directory as one transaction Bundle of conditional updates (idempotent)."""
    mapping, systems = directory.mapping, directory.mapping["systems"]
    entries: list[dict[str, Any]] = []
    organizations: dict[tuple[str, str], str] = {}
    practitioners: dict[str, str] = {}
    for row in directory.rows:
        v = row.values
        kind = v["structure_identifier_type"].upper()
        org_key = (kind, v["structure_identifier"])
        if org_key not in organizations:
            organizations[org_key] = _add(entries, _organization(v, kind, mapping),
                                          f"Organization?identifier={systems[kind.lower()]}|{v['structure_identifier']}")
        if v["rpps"] not in practitioners:
            practitioners[v["rpps"]] = _add(entries, _practitioner(v, mapping),
                                            f"Practitioner?identifier={systems['rpps']}|{v['rpps']}")
        role_id = f"{v['rpps']}-{v['structure_identifier']}"
        _add(entries, _role(v, mapping, role_id, practitioners[v["rpps"]], organizations[org_key]),
             f"PractitionerRole?identifier={systems['role_identifier']}|{role_id}")
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def _add(entries: list[dict[str, Any]], resource: dict[str, Any], condition: str) -> str:
    full_url = f"urn:uuid:{uuid.uuid4()}"
    entries.append({"fullUrl": full_url, "resource": resource, "request": {"method": "PUT", "url": condition}})
    return full_url


def _profile(mapping, type_: str) -> dict[str, Any]:
    url = mapping["profiles"].get(type_)
    return {"meta": {"profile": [url]}} if url else {}


def _organization(v: dict[str, str], kind: str, mapping: dict[str, Any]) -> dict[str, Any]:
    systems = mapping["systems"]
    org: dict[str, Any] = {"resourceType": "Organization", **_profile(mapping, "Organization"),
                           "identifier": [{"use": "official", "system": systems[kind.lower()],
                                           "value": v["structure_identifier"]}],
                           "active": True, "name": v["structure_name"]}
    if v.get("structure_category"):
        org["type"] = [{"coding": [{"system": systems["structure_category"], "code": v["structure_category"]}]}]
    return org


def _type(systems: dict[str, str], code: str) -> dict[str, Any]:
    """An FR Core identifier type (fr-core-cs-v2-0203: IDNPS, RPPS, IDNST, FINEG…)."""
    return {"coding": [{"system": systems["identifier_type"], "code": code}]}


def _practitioner(v: dict[str, str], mapping: dict[str, Any]) -> dict[str, Any]:
    systems = mapping["systems"]
    name: dict[str, Any] = {"family": v["family"]}
    if v.get("given"):
        name["given"] = [v["given"]]
    return {"resourceType": "Practitioner", **_profile(mapping, "Practitioner"),
            "identifier": [{"use": "official", "type": _type(systems, "IDNPS"), "system": systems["idnps"],
                            "value": "8" + v["rpps"]},
                           {"use": "official", "type": _type(systems, "RPPS"), "system": systems["rpps"],
                            "value": v["rpps"]}],
            "active": True, "name": [name]}


def _role(v: dict[str, str], mapping: dict[str, Any], role_id: str, practitioner: str,
          organization: str) -> dict[str, Any]:
    systems = mapping["systems"]
    role: dict[str, Any] = {
        "resourceType": "PractitionerRole", **_profile(mapping, "PractitionerRole"),
        "identifier": [{"system": systems["role_identifier"], "value": role_id}],
        "active": True, "practitioner": {"reference": practitioner}, "organization": {"reference": organization},
        "code": [{"coding": [{"system": systems["profession"], "code": v["profession"]}]}]}
    if v.get("specialty"):
        role["specialty"] = [{"coding": [{"system": systems["specialty"], "code": v["specialty"]}]}]
    telecom = []
    if v.get("mssante"):
        telecom.append({"extension": [{"url": mapping["email_type_extension"],
                                       "valueCoding": {"system": systems["email_type"], "code": "MSSANTE"}}],
                        "system": "email", "value": v["mssante"], "use": "work"})
    if v.get("phone"):
        telecom.append({"system": "phone", "value": v["phone"], "use": "work"})
    if telecom:
        role["telecom"] = telecom
    return role
