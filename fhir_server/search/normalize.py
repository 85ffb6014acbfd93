"""String folding for search: case- and accent-insensitive, the same at write and query time."""

from __future__ import annotations

import unicodedata
from functools import lru_cache


@lru_cache(maxsize=65536)
def fold(text: str) -> str:
    """`Hélène  D'Aubigné` → `helene d'aubigne`: NFKD, no combining marks, casefolded, spaces collapsed."""
    decomposed = unicodedata.normalize("NFKD", text)
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(stripped.casefold().split())
