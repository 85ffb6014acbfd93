"""An attachment agrees with its content: `size` is the number of bytes, `hash` the base64 SHA-1
of those bytes (R4 Attachment; IHE MHD asks for both), `contentType` the Binary's. The content is
the attachment's inline `data` or the Binary its `url` names on this server. Pure: the caller
hands in how to read a local Binary."""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Callable
from typing import Any

from fhir_server.errors import Issue

# A local Binary by its `url` → (its JSON, or None when there is none), or NOT_LOCAL
BinaryLookup = Callable[[str], "dict[str, Any] | None | object"]
NOT_LOCAL = object()


def issues(attachment: dict[str, Any], where: str, binary: BinaryLookup) -> list[Issue]:
    """What is wrong with one attachment (`where`: its FHIRPath, for the issues)."""
    content, source, found = _content(attachment, binary)
    if found is None:
        return [Issue("error", "not-found", f"{where}.url names {attachment.get('url')}, which does not exist: "
                                            f"send the Binary in the same transaction or first", [f"{where}.url"])]
    out: list[Issue] = []
    if isinstance(found, dict):
        theirs, ours = found.get("contentType"), attachment.get("contentType")
        if theirs and ours and theirs.split(";")[0].strip().lower() != ours.split(";")[0].strip().lower():
            out.append(Issue("error", "value", f"{where}.contentType is {ours!r} but the Binary it names is "
                                               f"{theirs!r}", [f"{where}.contentType"]))
    if content is None:
        return out  # the content is elsewhere (another server): nothing to compare
    size = attachment.get("size")
    if isinstance(size, int) and size != len(content):
        out.append(Issue("error", "value", f"{where}.size is {size} but {source} holds {len(content)} bytes",
                         [f"{where}.size"]))
    hash_ = attachment.get("hash")
    if isinstance(hash_, str):
        expected = hashlib.sha1(content).digest()  # noqa: S324 — the digest MHD and R4 name, not a security choice
        given = _decoded(hash_)
        if given is None or len(given) != len(expected):
            out.append(Issue("error", "value", f"{where}.hash must be the base64 of the SHA-1 digest (20 bytes) of "
                                               f"the content; {hash_[:60]!r} is not (a hex digest must be "
                                               f"converted to base64)", [f"{where}.hash"]))
        elif given != expected:
            out.append(Issue("error", "value", f"{where}.hash does not match {source}: its SHA-1 is "
                                               f"{base64.b64encode(expected).decode()}", [f"{where}.hash"]))
    return out


def _content(attachment: dict[str, Any], binary: BinaryLookup) -> tuple[bytes | None, str, Any]:
    """(the bytes, what holds them, the Binary found — None if a local url names nothing)."""
    data = attachment.get("data")
    if isinstance(data, str):
        return _decoded(data) or b"", "its data", True
    url = attachment.get("url")
    if not isinstance(url, str):
        return None, "", True
    found = binary(url)
    if found is NOT_LOCAL:
        return None, "", True
    if not isinstance(found, dict):
        return None, "", None
    stored = found.get("data")
    return (_decoded(stored) or b"") if isinstance(stored, str) else b"", url, found


def _decoded(text: str) -> bytes | None:
    try:
        return base64.b64decode("".join(text.split()), validate=True)  # base64Binary may wrap lines
    except (binascii.Error, ValueError):
        return None
