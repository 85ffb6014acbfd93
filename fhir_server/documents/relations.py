"""Relations between documents (DocumentReference.relatesTo), as IHE MHD and XDS give them
meaning: a relation names an existing document of the same patient; `replaces` makes the
replaced document `superseded` in the same unit of work (only a `current` one can be replaced);
`transforms`, `appends` and `signs` leave it current. When a replacing document is later marked
`entered-in-error`, the document it replaced is `current` again. A relation to nothing (or to
the document itself) is refused, unless FHIR_REFERENTIAL_INTEGRITY is off."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from fhir_server.errors import Issue
from fhir_server.interactions import conditional, integrity
from fhir_server.interactions.access import reach
from fhir_server.interactions.rules import WriteRefused
from fhir_server.interactions.unit_of_work import UnitOfWork
from fhir_server.storage.store import Write

TYPE = "DocumentReference"


def follow(unit: UnitOfWork) -> list[Write]:
    """The status changes the unit's documents bring to the documents they relate to."""
    changes: dict[str, tuple[str, str]] = {}  # target key → (new status, the document that causes it)
    for write, doc in unit.written(TYPE):
        source = f"{TYPE}/{write.id}"
        previous = unit.previous(write)
        before = {(r.get("code"), _target_text(r)) for r in (previous or {}).get("relatesTo") or ()
                  if isinstance(r, dict)}
        for j, relation in enumerate(doc.get("relatesTo") or ()):
            if not isinstance(relation, dict) or (relation.get("code"), _target_text(relation)) in before:
                continue  # checked when it was written
            found = _target(unit, source, j, relation)
            if found is None:
                continue  # FHIR_REFERENTIAL_INTEGRITY=off: a relation to nothing is let be
            target_key, target = found
            _same_patient(unit, source, j, doc, target)
            if relation.get("code") == "replaces" and doc.get("status") == "current":
                _replaceable(unit, source, j, target_key, target)
                _once(changes, target_key, ("superseded", source), source, j)
        if doc.get("status") == "entered-in-error" and (previous or {}).get("status") != "entered-in-error":
            for j, relation in enumerate(doc.get("relatesTo") or ()):
                if isinstance(relation, dict) and relation.get("code") == "replaces":
                    restored = _restorable(unit, relation)
                    if restored is not None:
                        _once(changes, restored, ("current", source), source, j)
    return [_with_status(unit, key, status) for key, (status, _) in changes.items()]


def _target_text(relation: dict[str, Any]) -> str:
    target = relation.get("target")
    return repr(sorted(target.items())) if isinstance(target, dict) else ""


def _target(unit: UnitOfWork, source: str, j: int, relation: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """The related document (a local reference, or a logical one by identifier), as the request
    may see it; when there is none, 422 (None if the operator turned referential integrity off)."""
    where = f"DocumentReference.relatesTo[{j}].target"
    target = relation.get("target") if isinstance(relation.get("target"), dict) else {}
    key = unit.key(target)
    letter = "u" if relation.get("code") == "replaces" else "r"
    if key is None and isinstance(target.get("identifier"), dict):
        key = _by_identifier(unit, target["identifier"], letter)
    if key is not None and key.startswith(f"{TYPE}/") and key != source:
        if key in unit.by_key:
            raise WriteRefused(source, 422, Issue(
                "error", "business-rule", f"{where} names {key}, which this transaction also writes; relate a "
                                          f"document to one already stored", [where]))
        found = unit.visible(key, letter)
        if found is not None:
            return key, found
    if not integrity.enabled(unit.server):
        return None
    named = target.get("reference") or target.get("identifier", {}).get("value") or "nothing"
    raise WriteRefused(source, 422, Issue("error", "not-found", f"{where} names {named!r}, which is not a stored "
                                                                f"DocumentReference", [where]))


def _by_identifier(unit: UnitOfWork, identifier: dict[str, Any], letter: str) -> str | None:
    system, value = identifier.get("system"), identifier.get("value")
    if not isinstance(value, str) or not value:
        return None
    token = f"{system}|{value}" if isinstance(system, str) else value
    searched = reach(unit.server, unit.req, letter)
    query = conditional.parse(unit.server, TYPE, f"identifier={quote(token, safe='|:/')}",
                              "relatesTo.target.identifier", searched)
    found = conditional.matches(unit.server, TYPE, query, unit.session, searched)
    return f"{TYPE}/{found[0].id}" if len(found) == 1 else None


def _same_patient(unit: UnitOfWork, source: str, j: int, doc: dict[str, Any], target: dict[str, Any]) -> None:
    mine, theirs = unit.key(doc.get("subject")), unit.key(target.get("subject"))
    if mine != theirs:
        where = f"DocumentReference.relatesTo[{j}].target"
        raise WriteRefused(source, 422, Issue("error", "business-rule", (
            f"{where} is a document about {theirs or 'no patient'}, this one is about {mine or 'no patient'}: "
            f"related documents belong to the same patient"), [where]))


def _replaceable(unit: UnitOfWork, source: str, j: int, key: str, target: dict[str, Any]) -> None:
    if target.get("status") != "current":
        where = f"DocumentReference.relatesTo[{j}].target"
        raise WriteRefused(source, 422, Issue("error", "business-rule", (
            f"{where} names {key}, which is {target.get('status')}: only a current document can be replaced "
            f"(replace the document that superseded it)"), [where]))


def _once(changes: dict[str, tuple[str, str]], key: str, change: tuple[str, str], source: str, j: int) -> None:
    if key in changes and changes[key] != change:
        where = f"DocumentReference.relatesTo[{j}].target"
        raise WriteRefused(source, 422, Issue("error", "business-rule", (
            f"{where} names {key}, which {changes[key][1]} already changes in this transaction: a document is "
            f"replaced by one document"), [where]))
    changes[key] = change


def _restorable(unit: UnitOfWork, relation: dict[str, Any]) -> str | None:
    """The document a withdrawn replacement had superseded, if it is still superseded."""
    key = unit.key(relation.get("target"))
    if key is None or not key.startswith(f"{TYPE}/") or key in unit.by_key:
        return None
    stored = unit.visible(key, "u")
    return key if stored is not None and stored.get("status") == "superseded" else None


def _with_status(unit: UnitOfWork, key: str, status: str) -> Write:
    return unit.replace(key, {**(unit.stored(key) or {}), "status": status})
