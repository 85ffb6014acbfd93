"""What the terminology layer raises when a question cannot be answered here."""

from __future__ import annotations


class TerminologyError(Exception):
    """A question that cannot be answered locally; the message says why.

    `code` is the OperationOutcome issue type that fits: `not-supported` (a code system or
    filter this server does not hold or evaluate), `not-found` (a ValueSet/CodeSystem a
    definition refers to is unknown), `too-costly` (an expansion beyond the size limit),
    `invalid` (the definition itself is broken: an import cycle, a bad regex).
    """

    def __init__(self, message: str, code: str = "not-supported"):
        super().__init__(message)
        self.code = code
