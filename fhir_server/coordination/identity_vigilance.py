"""Identity vigilance (RNIV): one INS identifies one Patient record.

A unit rule on every unit of work that writes a Patient. For each INS (INS-NIR production, test
or demo, INS-NIA: `validation/ins.py`) a written Patient holds, the unit touches the guard
`INS|system|value` (racing creates of one INS conflict there, the later runs again and finds the
first), then looks for another current Patient holding it, among every Patient, not only those
the caller may see: uniqueness that the caller's reach could hide would not be uniqueness.

- A second Patient with an INS already held is `409` (`duplicate`), naming the holder when the
  caller may read it; when the holder is out of the caller's reach, the answer says another
  record the token does not reach holds it, without its id (the caller knows the INS, not the
  record), and sends them to the structure's identity-vigilance referent.
- Two Patients of one transaction with one INS: `409`, on the second entry.
- An update keeping its own INS is no conflict; a deleted Patient holds nothing.
- A duplicate is marked without `$merge`: `active` false and `link` `replaced-by` the record to
  use (that one may say `replaces` back). The duplicate keeps its INS — its history stays true
  to what was known — and no longer counts: the record kept holds the INS alone. A transaction
  may mark the duplicate and give the INS to the record kept in one go; un-marking a duplicate
  whose INS is held elsewhere is `409` again.
"""

from __future__ import annotations

from typing import Any

from fhir_server import jsonio
from fhir_server.errors import Issue
from fhir_server.interactions.access import reach
from fhir_server.interactions.rules import WriteRefused
from fhir_server.search.execute import find
from fhir_server.search.params.token import keys_term
from fhir_server.search.reach import EVERYTHING
from fhir_server.storage.records import Record
from fhir_server.storage.store import Write
from fhir_server.validation.ins import ins_identifiers, retired_duplicate

TYPE = "Patient"
MARK = "mark the duplicate instead: active=false and a Patient.link of type replaced-by naming the record kept"


def register(rules) -> None:
    rules.register_unit(frozenset({TYPE}), check)


def check(server, req, writes: list[Write], session: Any) -> list[Write]:
    staged = {w.id: jsonio.loads(w.json) if w.json is not None else None for w in writes if w.type == TYPE}
    holders: dict[tuple[str, str], str] = {}  # (system, value) → the Patient of this unit counting it
    for id_, patient in staged.items():
        if patient is None:
            continue
        for i, system, value in ins_identifiers(patient):
            server.store.guard(session, f"INS|{system}|{value}")
            if retired_duplicate(patient):
                continue
            other = holders.setdefault((system, value), id_)
            if other != id_:
                raise _duplicate(i, system, value, id_, f"{TYPE}/{other}, also written by this transaction")
            for record in _stored_holders(server, session, system, value):
                if record.id != id_ and record.id not in staged and not retired_duplicate(jsonio.loads(record.json)):
                    raise _duplicate(i, system, value, id_, _named(server, req, record))
    return []


def _stored_holders(server, session: Any, system: str, value: str) -> list[Record]:
    """Current Patients with this INS, whoever may see them (2A/2B in either case)."""
    keys = {f"{system}|{value}", f"{system}|{value.lower()}"}
    return find(server, TYPE, [keys_term("identifier", keys)], reach=EVERYTHING, session=session, json=True)


def _named(server, req, record: Record) -> str:
    """Who holds the INS, as the caller may be told: the record when they may read it."""
    if reach(server, req, "r").sees(TYPE, record):
        return f"{TYPE}/{record.id}. Use that record (Patient/$match finds it)"
    return ("another Patient record, which this access token does not reach: ask the structure's "
            "identity-vigilance referent")


def _duplicate(i: int, system: str, value: str, id_: str, holder: str) -> WriteRefused:
    where = f"{TYPE}.identifier[{i}]"
    return WriteRefused(f"{TYPE}/{id_}", 409, Issue("error", "duplicate", (
        f"one INS identifies one person: the INS {system}|{value} in {where} is already held by {holder}. "
        f"If both records are the same person, {MARK}"), [f"{where}.value"]))
