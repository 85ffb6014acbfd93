"""String folding for search: case- and accent-insensitive, the same at write and query time."""

from __future__ import annotations

import unicodedata
from functools import lru_cache


@lru_cache(maxsize=65536)
def fold(text: str, keep_trailing_space: bool = False) -> str:
    """`Hélène  D'Aubigné` → `helene d'aubigne`: NFKD, no combining marks, casefolded, spaces
    collapsed. A search value keeps one trailing space (`ab ` must not match `abc`)."""
    decomposed = unicodedata.normalize("NFKD", text)
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    folded = " ".join(stripped.casefold().split())
    if keep_trailing_space and folded and text[-1:].isspace():
        folded += " "
    return folded
