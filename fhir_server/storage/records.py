"""What the rest of the server sees of a stored document, and how it asks for documents.

The document field names (`json`, `ix`, `k`, `cix`, `del`, `ts`, `v`) belong to `storage/`: search
hands over the values it computed (`IndexValues`) and the keys it wants (`Ids`, `Keys` with
`KeyRange`s), and gets `Record`s back. No MongoDB query or field name leaves this package.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(frozen=True, slots=True)
class ContainedValues:
    """The search values of a resource contained in another (for `_contained` searches)."""

    type: str
    id: str
    values: dict[str, Any]


@dataclass(frozen=True, slots=True)
class IndexValues:
    """The search values of a resource, computed at write time and stored beside its JSON.

    `values`: per parameter code, what exact predicates, sorting and includes read;
    `keys`: the same flattened into ordered strings under the one index every search drives with;
    `contained`: the values of contained resources (their keys are in `keys`, prefixed)."""

    values: dict[str, Any]
    keys: list[str]
    contained: list[ContainedValues] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Record:
    """A current, live resource as search sees it. `json` and `contained` are only filled when
    asked for: predicates need the values alone, and most searches never read the JSON of
    what they reject."""

    type: str
    id: str
    version: int
    last_updated: datetime
    values: dict[str, Any]
    json: bytes | None = None
    contained: tuple[ContainedValues, ...] = ()

    @property
    def key(self) -> str:
        return f"{self.type}/{self.id}"


@dataclass(frozen=True, slots=True)
class KeyRange:
    """The index keys between `low` and `high` (string order), each end open or closed."""

    low: str
    high: str
    low_closed: bool = True
    high_closed: bool = False


Key = str | KeyRange


@dataclass(frozen=True, slots=True)
class Ids:
    """Select by resource id."""

    ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Keys:
    """Select the resources holding any of these index keys (one indexed query each)."""

    keys: tuple[Key, ...]


Selection = Ids | Keys | None  # None: every resource of the type (a scan of the search values)
