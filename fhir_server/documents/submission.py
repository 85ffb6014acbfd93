"""The shape of an IHE MHD provide (ITI-65) bundle, checked when a transaction creates a
SubmissionSet (a List coded `submissionset`): one SubmissionSet, which lists every
DocumentReference the bundle creates; its items are stored or created DocumentReferences and
Folders; the SubmissionSet, its documents and its folders are about one patient, who exists.
When the ANS PDSm guide is loaded, the SubmissionSet and the documents must also conform to its
comprehensive profiles, whether they declare them or not (the DMP takes nothing less)."""

from __future__ import annotations

from typing import Any

from fhir_server.errors import Issue
from fhir_server.interactions.rules import WriteRefused
from fhir_server.interactions.unit_of_work import UnitOfWork
from fhir_server.validation import pipeline

LIST_TYPES = "https://profiles.ihe.net/ITI/MHD/CodeSystem/MHDlistTypes"
PDSM = "https://interop.esante.gouv.fr/ig/fhir/pdsm/StructureDefinition/"
PDSM_PROFILES = {"List": PDSM + "pdsm-submissionset-comprehensive",
                 "DocumentReference": PDSM + "pdsm-comprehensive-document-reference"}


def coded(resource: dict[str, Any], code: str) -> bool:
    """A List that is an MHD SubmissionSet or Folder (`List.code` from MHDlistTypes)."""
    codings = (resource.get("code") or {}).get("coding") or ()
    return any(isinstance(c, dict) and c.get("system") == LIST_TYPES and c.get("code") == code for c in codings)


def check(unit: UnitOfWork) -> None:
    sets = [(w, r) for w, r in unit.written("List") if w.expected is None and coded(r, "submissionset")]
    if not sets:
        return
    write, submission = sets[0]
    source = f"List/{write.id}"
    if len(sets) > 1:
        raise _refused(source, "List", f"a provide bundle holds one SubmissionSet; List/{sets[1][0].id} is another")
    patient = unit.key(submission.get("subject"))
    _patient_exists(unit, source, patient)
    listed = _items(unit, source, submission)
    for doc_write, doc in unit.written("DocumentReference"):
        key = f"DocumentReference/{doc_write.id}"
        if doc_write.expected is None and key not in listed:
            raise _refused(key, "DocumentReference", f"{key} is not listed by the SubmissionSet (List.entry.item): "
                                                     f"a provide bundle's SubmissionSet lists every document it "
                                                     f"creates")
        _same_patient(unit, key, "DocumentReference.subject", doc, patient)
    for folder_write, folder in unit.written("List"):
        if coded(folder, "folder"):
            _same_patient(unit, f"List/{folder_write.id}", "List.subject", folder, patient)
    _conforms(unit, f"List/{write.id}", submission)
    for doc_write, doc in unit.written("DocumentReference"):
        if doc_write.expected is None:
            _conforms(unit, f"DocumentReference/{doc_write.id}", doc)


def _conforms(unit: UnitOfWork, source: str, resource: dict[str, Any]) -> None:
    """Against the PDSm comprehensive profile of its type, when the PDSm package is loaded."""
    profile = PDSM_PROFILES[resource["resourceType"]]
    if unit.server.definitions.structure_definition(profile) is None:
        return
    found = pipeline.blocking(pipeline.rules(unit.server, resource, [profile]))
    if found:
        raise WriteRefused(source, 422, found)


def _patient_exists(unit: UnitOfWork, source: str, patient: str | None) -> None:
    if patient is None or not patient.startswith("Patient/"):
        raise _refused(source, "List.subject", "the SubmissionSet's subject must be the Patient the documents are "
                                               "about, a reference to it on this server")
    if unit.resource(patient) is None:
        raise WriteRefused(source, 422, Issue("error", "not-found", f"List.subject names {patient}, which does not "
                                                                    f"exist: create the Patient first",
                                              ["List.subject"]))


def _items(unit: UnitOfWork, source: str, submission: dict[str, Any]) -> set[str]:
    listed: set[str] = set()
    for i, entry in enumerate(submission.get("entry") or ()):
        key = unit.key(entry.get("item") if isinstance(entry, dict) else None)
        where = f"List.entry[{i}].item"
        if key is None or key.split("/")[0] not in ("DocumentReference", "List") or unit.resource(key) is None:
            named = (entry.get("item") or {}).get("reference") if isinstance(entry, dict) else None
            raise WriteRefused(source, 422, Issue("error", "not-found", (
                f"{where} names {named or 'nothing'}: a SubmissionSet lists DocumentReferences and Folders (Lists) "
                f"of this bundle or already stored"), [where]))
        listed.add(key)
    return listed


def _same_patient(unit: UnitOfWork, source: str, element: str, resource: dict[str, Any], patient: str | None) -> None:
    theirs = unit.key(resource.get("subject"))
    if theirs != patient:
        raise _refused(source, element, f"{source} is about {theirs or 'no patient'}, the SubmissionSet about "
                                        f"{patient}: everything a provide bundle holds is about one patient")


def _refused(source: str, element: str, text: str) -> WriteRefused:
    return WriteRefused(source, 422, Issue("error", "business-rule", text, [element]))
