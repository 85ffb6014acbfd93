"""Text folding, case- and accent-insensitive: what search compares (the same at write and query
time) and what terminology filters (`$expand?filter=`) match on. Shared, so that both read text alike."""

from __future__ import annotations

import unicodedata
from functools import lru_cache

# Ligatures NFKD leaves whole, written out as French readers would search them (Lætitia, cœur).
_LIGATURES = str.maketrans({"œ": "oe", "Œ": "oe", "æ": "ae", "Æ": "ae"})


@lru_cache(maxsize=65536)
def fold(text: str, keep_trailing_space: bool = False) -> str:
    """`Hélène  D'Aubigné` → `helene d'aubigne`, `Lætitia` → `laetitia`: NFKD, no combining
    marks, ligatures written out, casefolded, spaces collapsed. A search value keeps one
    trailing space (`ab ` must not match `abc`)."""
    decomposed = unicodedata.normalize("NFKD", text.translate(_LIGATURES))
    stripped = "".join(c for c in decomposed if not unicodedata.combining(c))
    folded = " ".join(stripped.casefold().split())
    if keep_trailing_space and folded and text[-1:].isspace():
        folded += " "
    return folded
