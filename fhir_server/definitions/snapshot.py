"""Snapshots of StructureDefinitions: the one the package ships, or one generated from the
differential when the package has none (ans.fhir.fr.tddui is published differential-only).

`snapshots_for(definitions).structure_definition(url)` gives the StructureDefinition with a
snapshot; generated ones are built once per URL and cached for the life of the process.

Generation walks the differential in order over a tree made from the base definition's
snapshot (itself generated first when it has none, recursively):

* each differential element is found by its `id` (`Task.input:accompagnement.value[x]`);
  elements below one whose children are not in the tree yet are reached by *unfolding* it:
  copying the snapshot of its type (the profile on the type when there is exactly one, so an
  extension slice unfolds from the extension's definition), or the element a
  `contentReference` points to;
* a slice named in the differential that the base does not have starts as a copy of the sliced
  element as the base defines it (without the differential's changes to it, nor its slicing),
  its children unfolding from the slice's own type when the differential names them; `min` is
  0 unless the differential says otherwise (the sliced element's own constraints still apply to
  every item: the validator checks items against both); an `extension`/`modifierExtension` sliced without a
  `slicing` gets the implicit one (value of `url`, open), a choice element the type slicing;
  `valueQuantity` written for `value[x]` is read as the type slice `value[x]:valueQuantity`;
* the differential element is merged into the one found: `constraint`, `condition` and
  `mapping` are added to those of the base, `binding` and `slicing` are merged key by key,
  a `closed` slicing stays closed; every other property (cardinality, `type` with profiles and
  target profiles, `fixed[x]`, `pattern[x]`, `maxLength`, `minValue[x]`/`maxValue[x]`, texts,
  flags…) replaces the base's.

Not covered (the validator works from what is generated): checks that the differential is a
legal constraint of its base (a wider cardinality or a type the base does not allow is taken
as written), `ordered`/`rules` consistency between a profile's slicing and its base's, and
differentials of specializations (logical models, new resources): only constraints are
generated. Element ids are required in the differential (every package in use has them).
"""

from __future__ import annotations

import copy
import logging
import threading
import weakref
from typing import Any

from fhir_server.definitions.registry import FHIR_BASE, Definitions

log = logging.getLogger(__name__)

# Properties of a differential element merged rather than replaced.
_APPENDED = ("constraint", "condition", "mapping")
_MERGED = ("binding", "slicing")
_NOT_COPIED = ("id", "path")
_DEFAULT_EXTENSION_SLICING = {"discriminator": [{"type": "value", "path": "url"}], "ordered": False,
                              "rules": "open"}
_TYPE_SLICING = {"discriminator": [{"type": "type", "path": "$this"}], "ordered": False, "rules": "closed"}


class SnapshotError(Exception):
    """A snapshot cannot be generated (missing base, an element the differential names that
    cannot be found); the message says which."""


def split_id(element_id: str, path: str) -> list[tuple[str, str | None]]:
    """`Patient.identifier:INS-NIR.system` (path `Patient.identifier.system`) →
    [("Patient", None), ("identifier", "INS-NIR"), ("system", None)].

    Slice names may contain dots: the path tells how many segments there are.
    """
    names = path.split(".")
    parts = element_id.split(".")
    if len(parts) != len(names):  # a dot inside a slice name: glue pieces back together
        merged: list[str] = []
        for part in parts:
            expected = names[len(merged)] if len(merged) < len(names) else None
            if merged and (expected is None or not (part == expected or part.startswith(expected + ":"))):
                merged[-1] += "." + part
            else:
                merged.append(part)
        parts = merged
    out = []
    for part, name in zip(parts, names, strict=False):
        if part.startswith(name + ":"):
            out.append((name, part[len(name) + 1:]))
        else:
            out.append((part.split(":", 1)[0], part.split(":", 1)[1] if ":" in part else None))
    return out


class _Node:
    """One element of a snapshot under construction, with its children and slices."""

    __slots__ = ("children", "ed", "slices", "unfolded")

    def __init__(self, ed: dict[str, Any]):
        self.ed = ed
        self.children: list[_Node] = []
        self.slices: list[_Node] = []
        self.unfolded = False

    @property
    def name(self) -> str:
        return self.ed["path"].rsplit(".", 1)[-1]

    def child(self, name: str) -> _Node | None:
        for child in self.children:
            if child.name == name:
                return child
        return None

    def slice(self, name: str) -> _Node | None:
        for s in self.slices:
            if s.ed.get("sliceName") == name:
                return s
        return None

    def walk(self, out: list[dict[str, Any]]) -> None:
        out.append(self.ed)
        for child in self.children:
            child.walk(out)
        for s in self.slices:
            s.walk(out)

    def copy(self, with_slices: bool) -> _Node:
        new = _Node(copy.deepcopy(self.ed))
        new.unfolded = self.unfolded
        new.children = [c.copy(True) for c in self.children]
        if with_slices:
            new.slices = [s.copy(True) for s in self.slices]
        return new

    def rebase(self, old_path: str, new_path: str, old_id: str, new_id: str) -> None:
        """Rename the path and id prefixes of this subtree (after a copy)."""
        path = self.ed["path"]
        if path == old_path or path.startswith(old_path + "."):
            self.ed["path"] = new_path + path[len(old_path):]
        element_id = self.ed.get("id") or path
        if element_id == old_id or element_id.startswith((old_id + ".", old_id + ":")):
            self.ed["id"] = new_id + element_id[len(old_id):]
        for node in (*self.children, *self.slices):
            node.rebase(old_path, new_path, old_id, new_id)


def _tree(elements: list[dict[str, Any]]) -> _Node:
    """A snapshot's element list as a tree (elements are deep-copied)."""
    root: _Node | None = None
    by_id: dict[str, _Node] = {}
    for raw in elements:
        ed = copy.deepcopy(raw)
        ed.setdefault("id", ed["path"])
        node = _Node(ed)
        element_id = ed["id"]
        if root is None:
            root = node
            by_id[element_id] = node
            continue
        segments = split_id(element_id, ed["path"])
        name, slice_name = segments[-1]
        prefix = element_id[: len(element_id) - len(name) - (len(slice_name) + 1 if slice_name else 0)]
        parent_id = prefix[:-1]  # without the dot
        if slice_name is not None:
            if "/" in slice_name:  # a reslice: sliced by the slice it refines
                sliced_id = parent_id + "." + name + ":" + slice_name.rsplit("/", 1)[0]
            else:
                sliced_id = parent_id + "." + name
            sliced = by_id.get(sliced_id)
            if sliced is None:
                raise SnapshotError(f"snapshot element {element_id} comes before the element it slices")
            sliced.slices.append(node)
        else:
            parent = by_id.get(parent_id)
            if parent is None:
                raise SnapshotError(f"snapshot element {element_id} has no parent {parent_id}")
            parent.children.append(node)
            parent.unfolded = True
        by_id[element_id] = node
    if root is None:
        raise SnapshotError("empty snapshot")
    return root


def _merge(ed: dict[str, Any], diff: dict[str, Any]) -> None:
    """Apply one differential element to the element it constrains."""
    for key, value in diff.items():
        if key in _NOT_COPIED:
            continue
        if key in _APPENDED:
            current = ed.setdefault(key, [])
            if key == "constraint":
                known = {c.get("key") for c in current}
                current.extend(copy.deepcopy(c) for c in value if c.get("key") not in known)
            elif key == "condition":
                current.extend(c for c in value if c not in current)
            else:
                current.extend(copy.deepcopy(value))
        elif key in _MERGED and isinstance(ed.get(key), dict):
            ed[key] = {**ed[key], **copy.deepcopy(value)}
        else:
            if key.startswith(("fixed", "pattern")):
                for other in [k for k in ed if k.startswith(("fixed", "pattern"))]:
                    del ed[other]
            ed[key] = copy.deepcopy(value)


class Snapshots:
    """StructureDefinitions with snapshots, generated when missing (thread-safe, cached)."""

    def __init__(self, definitions: Definitions):
        self.definitions = definitions
        self._generated: dict[str, dict[str, Any] | None] = {}
        self._errors: dict[str, str] = {}
        self._lock = threading.RLock()
        self._building: set[str] = set()

    def structure_definition(self, url: str) -> dict[str, Any] | None:
        """The StructureDefinition at `url` (or `url|version`) with a snapshot; None when unknown
        or when its snapshot cannot be generated (`error(url)` says why)."""
        url = url.split("|", 1)[0]
        sd = self.definitions.structure_definition(url)
        if sd is None:
            return None
        if (sd.get("snapshot") or {}).get("element"):
            return sd
        try:
            return self._generated[url]
        except KeyError:
            pass
        with self._lock:
            if url in self._generated:
                return self._generated[url]
            if url in self._building:
                raise SnapshotError(f"{url} derives from itself")
            self._building.add(url)
            try:
                result: dict[str, Any] | None = self._generate(sd)
            except SnapshotError as exc:
                log.warning("cannot generate the snapshot of %s: %s", url, exc)
                self._errors[url] = str(exc)
                result = None
            finally:
                self._building.discard(url)
            self._generated[url] = result
            return result

    def error(self, url: str) -> str | None:
        return self._errors.get(url.split("|", 1)[0])

    def is_generated(self, url: str) -> bool:
        return self._generated.get(url.split("|", 1)[0]) is not None

    def elements(self, url: str) -> list[dict[str, Any]] | None:
        sd = self.structure_definition(url)
        return None if sd is None else sd["snapshot"]["element"]

    # -- generation ----------------------------------------------------------------------------
    def _generate(self, sd: dict[str, Any]) -> dict[str, Any]:
        url = sd.get("url")
        if sd.get("derivation") not in (None, "constraint"):
            raise SnapshotError(f"{url} is a {sd.get('derivation')}: only constraints are generated")
        base_url = sd.get("baseDefinition")
        if not base_url:
            raise SnapshotError(f"{url} has neither a snapshot nor a baseDefinition")
        base = self.structure_definition(base_url)
        if base is None:
            raise SnapshotError(f"{url}: its base {base_url} is not loaded"
                                + (f" ({self._errors[base_url.split('|')[0]]})"
                                   if base_url.split("|")[0] in self._errors else ""))
        root = _tree(base["snapshot"]["element"])
        pristine = _tree(base["snapshot"]["element"])  # the base as published: where new slices start
        for diff in (sd.get("differential") or {}).get("element") or ():
            self._apply(root, pristine, diff, url)
        elements: list[dict[str, Any]] = []
        root.walk(elements)
        generated = {k: v for k, v in sd.items() if k != "text"}
        generated["snapshot"] = {"element": elements}
        return generated

    def _apply(self, root: _Node, pristine: _Node, diff: dict[str, Any], url: str | None) -> None:
        path = diff.get("path")
        element_id = diff.get("id")
        if not path:
            raise SnapshotError(f"{url}: a differential element has no path")
        if not element_id:
            element_id = path if not diff.get("sliceName") else f"{path}:{diff['sliceName']}"
        segments = split_id(element_id, path)
        if segments[0][0] != root.name:
            raise SnapshotError(f"{url}: differential element {element_id} is not in {root.ed['path']}")
        node = root
        for depth, (name, slice_name) in enumerate(segments[1:], start=1):
            last = depth == len(segments) - 1
            child = node.child(name)
            if child is None:
                self._unfold(node, root, url, element_id)
                child = node.child(name)
            if child is None:
                child, slice_name = self._choice_rename(node, name, slice_name, url, element_id)
            if slice_name is not None:
                child = self._slice(child, slice_name, diff if last else None, pristine)
            node = child
        if "slicing" in diff and (node.ed.get("slicing") or {}).get("rules") == "closed":
            diff = {**diff, "slicing": {**diff["slicing"], "rules": "closed"}}  # a profile cannot reopen
        _merge(node.ed, diff)

    def _choice_rename(self, node: _Node, name: str, slice_name: str | None, url: str | None,
                       element_id: str) -> tuple[_Node, str]:
        """`valueQuantity` for `value[x]`: the type slice `value[x]:valueQuantity`."""
        for child in node.children:
            base = child.name
            if base.endswith("[x]") and name.startswith(base[:-3]) and len(name) > len(base) - 3 \
                    and name[len(base) - 3].isupper():
                if slice_name is not None:
                    raise SnapshotError(f"{url}: cannot slice the renamed choice {element_id}")
                suffix = name[len(base) - 3:]
                if not child.ed.get("slicing"):
                    child.ed["slicing"] = copy.deepcopy(_TYPE_SLICING)
                existing = child.slice(name)
                if existing is None:
                    existing = self._new_slice(child, name, None, None)
                    code = next((t["code"] for t in child.ed.get("type") or ()
                                 if t.get("code", "").lower() == suffix.lower()), suffix)
                    existing.ed["type"] = [{"code": code}]
                return child, name
        raise SnapshotError(f"{url}: differential element {element_id}: no element {name!r} in "
                            f"{node.ed['path']}")

    def _slice(self, sliced: _Node, slice_name: str, diff: dict[str, Any] | None, pristine: _Node) -> _Node:
        node = sliced
        parts = slice_name.split("/")
        for i in range(len(parts)):
            full = "/".join(parts[: i + 1])
            found = node.slice(full)
            if found is None:
                if not node.ed.get("slicing"):
                    if node.name in ("extension", "modifierExtension"):
                        node.ed["slicing"] = copy.deepcopy(_DEFAULT_EXTENSION_SLICING)
                    elif node.name.endswith("[x]"):
                        node.ed["slicing"] = copy.deepcopy(_TYPE_SLICING)
                found = self._new_slice(node, full, diff if i == len(parts) - 1 else None, pristine)
            node = found
        return node

    @staticmethod
    def _new_slice(sliced: _Node, slice_name: str, diff: dict[str, Any] | None, pristine: _Node | None) -> _Node:
        """A new slice: the sliced element as the base defines it (or as it stands, when the base
        does not have it), without its children, which unfold from the slice's own type."""
        origin = _find_id(pristine, sliced.ed["id"], sliced.ed["path"]) if pristine is not None else None
        source = origin or sliced
        new = _Node(copy.deepcopy(source.ed))
        codes = [t.get("code") for t in source.ed.get("type") or ()]
        if source.children and (not codes or codes[0] in ("BackboneElement", "Element")):
            # a backbone element has no type to unfold from: its children come along
            new.children = [c.copy(True) for c in source.children]
            new.unfolded = True
        new.ed.pop("slicing", None)
        new.ed["sliceName"] = slice_name
        if diff is None or "min" not in diff:
            new.ed["min"] = 0
        sliced_id = sliced.ed["id"]
        base_id = sliced_id.rsplit(":", 1)[0] if "/" in slice_name else sliced_id
        new.ed["id"] = f"{base_id}:{slice_name}"
        new.ed["path"] = sliced.ed["path"]
        for child in new.children:
            child.rebase(source.ed["path"], new.ed["path"], source.ed["id"], new.ed["id"])
        sliced.slices.append(new)
        return new

    def _unfold(self, node: _Node, root: _Node, url: str | None, element_id: str) -> None:
        """Give `node` the children of its type (or of the element its contentReference names)."""
        if node.unfolded and node.children:
            return
        ed = node.ed
        reference = ed.get("contentReference")
        if reference:
            target = self._find(root, reference.split("#", 1)[-1])
            if target is None:
                raise SnapshotError(f"{url}: {ed['id']} refers to unknown {reference}")
            for child in target.children:
                new = child.copy(True)
                new.rebase(target.ed["path"], ed["path"], target.ed["id"], ed["id"])
                node.children.append(new)
            node.unfolded = True
            return
        types = ed.get("type") or ()
        if len(types) != 1:
            raise SnapshotError(f"{url}: cannot find the children of {ed['id']} (for {element_id}): it has "
                                f"{len(types)} types")
        type_ = types[0]
        profiles = type_.get("profile") or ()
        source_url = profiles[0] if len(profiles) == 1 else FHIR_BASE + type_["code"]
        source = self.structure_definition(source_url)
        if source is None and source_url != FHIR_BASE + type_["code"]:
            source = self.structure_definition(FHIR_BASE + type_["code"])
        if source is None:
            raise SnapshotError(f"{url}: no definition of type {type_['code']} to unfold {ed['id']}")
        type_root = _tree(source["snapshot"]["element"])
        for child in type_root.children:
            child.rebase(type_root.ed["path"], ed["path"], type_root.ed["id"], ed["id"])
            node.children.append(child)
        node.unfolded = True

    @staticmethod
    def _find(root: _Node, path: str) -> _Node | None:
        node: _Node | None = root
        for name in path.split(".")[1:]:
            node = node.child(name) if node is not None else None
        return node


def _find_id(root: _Node, element_id: str, path: str) -> _Node | None:
    """The element with this id in a tree, without unfolding anything."""
    node: _Node | None = root
    for name, slice_name in split_id(element_id, path)[1:]:
        node = node.child(name) if node is not None else None
        if node is not None and slice_name is not None:
            for part in range(1, slice_name.count("/") + 2):
                node = node.slice("/".join(slice_name.split("/")[:part])) if node is not None else None
    return node


_shared: weakref.WeakKeyDictionary[Definitions, Snapshots] = weakref.WeakKeyDictionary()
_shared_lock = threading.Lock()


def snapshots_for(definitions: Definitions) -> Snapshots:
    """The one `Snapshots` cache of a `Definitions`."""
    with _shared_lock:
        snapshots = _shared.get(definitions)
        if snapshots is None:
            snapshots = _shared[definitions] = Snapshots(definitions)
        return snapshots
