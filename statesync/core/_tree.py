"""The replicated state tree: a map from leaf path to a register of versions.

Storage is a trie. An interior node (``_Node``) maps segments to children and
may itself hold a register (a leaf value that coexists with leaves beneath it,
which only concurrent writes produce). A plain leaf is stored directly in its
parent's dict, as a ``Version`` (the common case: one version) or as a tuple
of concurrent versions in canonical order. This keeps memory per key close to
that of a plain dict.

Applying an op (``apply``):

1. removes every version in the op's *scope* (the op's path, its ancestors and
   everything beneath it) whose dot the op's context covers;
2. adds the op's leaves (one for a leaf value, one per leaf of a dict value),
   each a ``Version`` carrying the op's dot and hlc.

Given causal delivery (an op is applied only after everything its context
covers, see ``Replica``), the result does not depend on the order in which
ops are applied: a version survives exactly when no applied op that had seen
it covered its path. Removes leave nothing behind: no tombstones.

Read view (``get``): every register reads as one value, chosen by the
strategy for its path. Where a leaf value at ``P`` coexists with leaves
beneath ``P`` (concurrent ``set("a", 1)`` and ``set("a.b", 2)``), the rule is:

    the leaf at P is shown, and everything beneath P hidden, iff the highest
    (hlc, node_id) among P's versions is greater than that of every version
    beneath P; otherwise P's leaf is hidden and the paths beneath P are shown,
    each by the same rule.

So the most recent write, by hybrid time, decides the shape, and the rule
depends only on the state, never on the order ops arrived in.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from typing import TypeAlias

from statesync.core._context import Context
from statesync.core._op import ABSENT, PUT, AbsentType, Change, Op, Version, version_key
from statesync.core._path import Path
from statesync.core._strategy import Strategies
from statesync.core._treetyped import TypedTree
from statesync.core._typedops import TYPED, TypedBox, box_of, has_box, plain_version, shown
from statesync.core._value import Value, iter_leaves
from statesync.errors import ResolverError

Register: TypeAlias = Version | tuple[Version, ...]
_new_version = tuple.__new__  # builds a Version without the NamedTuple constructor's overhead
_Key: TypeAlias = tuple[int, str]

_Touched: TypeAlias = "dict[Path, Value | AbsentType] | None"
"""Where a write records the old value of each leaf it changes (None: nobody asks)."""


class _Node:
    """An interior node: children by segment, plus an optional register at this path."""

    __slots__ = ("children", "reg")

    def __init__(self) -> None:
        self.children: dict[str, Version | tuple[Version, ...] | _Node] = {}
        self.reg: Register | None = None


_Entry: TypeAlias = Version | tuple[Version, ...] | _Node


def reg_versions(reg: Register) -> tuple[Version, ...]:
    return (reg,) if type(reg) is Version else reg  # type: ignore[return-value]


def _top(reg: Register) -> Version:
    return reg if type(reg) is Version else reg[-1]  # type: ignore[return-value]


def _key(reg: Register) -> _Key:
    v = reg if type(reg) is Version else reg[-1]
    return (v.hlc, v.origin)  # type: ignore[union-attr]


def _strip_reg(reg: Register, covered: dict[str, int]) -> Register | None:
    """``reg`` without the versions ``covered`` names (the same object if none)."""
    if type(reg) is Version:
        return None if covered.get(reg.origin, 0) >= reg.seq else reg
    siblings: tuple[Version, ...] = reg  # type: ignore[assignment]
    kept = tuple(v for v in siblings if covered.get(v.origin, 0) < v.seq)
    if len(kept) == len(siblings):
        return reg
    if not kept:
        return None
    return kept[0] if len(kept) == 1 else kept


def _add_version(reg: Register | None, version: Version) -> Register:
    if reg is None:
        return version
    versions = reg_versions(reg)
    if any(v.origin == version.origin and v.seq == version.seq for v in versions):
        return reg
    return tuple(sorted((*versions, version), key=version_key))


def _note_dots(best: dict[str, int], reg: Register) -> None:
    for v in reg_versions(reg):
        if best.get(v.origin, 0) < v.seq:
            best[v.origin] = v.seq


def _canon(value: Value) -> str:
    """A canonical text of a value: dict keys sorted, types told apart."""
    if type(value) is dict:
        return "{" + ",".join(f"{k!r}:{_canon(v)}" for k, v in sorted(value.items())) + "}"
    if type(value) is list:
        return "[" + ",".join(_canon(v) for v in value) + "]"
    box = box_of(value)
    if box is not None:
        return f"{box.type_name}:{_canon(box.plain())}"
    return f"{type(value).__name__}:{value!r}"


class StateTree(TypedTree):
    """Registers of versions by leaf path, with observed-remove semantics."""

    __slots__ = ("_root", "leaf_count", "strategies", "typed_paths")

    def __init__(self, strategies: Strategies | None = None) -> None:
        self._root = _Node()
        self.typed_paths: set[Path] = set()
        """Paths that may hold a typed value (a superset; compaction prunes it)."""
        self.strategies = strategies if strategies is not None else Strategies()
        self.leaf_count = 0
        """Number of paths that hold at least one version."""

    # ------------------------------------------------------------------ reads

    def _find(self, path: Path) -> _Entry | None:
        entry: _Entry | None = self._root
        for seg in path:
            if type(entry) is not _Node:
                return None
            entry = entry.children.get(seg)
            if entry is None:
                return None
        return entry

    def _value(self, path: Path, reg: Register) -> Value:
        if type(reg) is Version:
            value: object = reg.value
            return value.plain() if type(value) is TypedBox else reg.value
        versions: tuple[Version, ...] = reg  # type: ignore[assignment]
        if any(has_box(v) for v in versions):
            versions = tuple(map(plain_version, versions))
        return self.strategies.resolve(path, versions)

    def _value_safe(self, path: Path, reg: Register | None) -> Value | AbsentType:
        """The value of a register for change records: never raises."""
        if reg is None:
            return ABSENT
        try:
            return self._value(path, reg)
        except ResolverError:
            return shown(_top(reg).value)

    def _max_key_below(self, node: _Node) -> _Key | None:
        best: _Key | None = None
        stack = [node]
        while stack:
            n = stack.pop()
            for entry in n.children.values():
                if type(entry) is _Node:
                    if entry.reg is not None:
                        k = _key(entry.reg)
                        if best is None or k > best:
                            best = k
                    stack.append(entry)
                else:
                    k = _key(entry)  # type: ignore[arg-type]
                    if best is None or k > best:
                        best = k
        return best

    def _shadowed(self, path: Path) -> bool:
        """True when a leaf at a strict ancestor of ``path`` hides it (see module doc)."""
        node = self._root
        for seg in path[:-1]:
            entry = node.children.get(seg)
            if type(entry) is not _Node:
                return False
            if entry.reg is not None:
                below = self._max_key_below(entry)
                if below is None or _key(entry.reg) > below:
                    return True
            node = entry
        return False

    def _view(self, node: _Node, path: Path) -> tuple[Value | AbsentType, _Key | None]:
        shown: dict[str, Value] = {}
        best: _Key | None = None
        for seg, entry in node.children.items():
            if type(entry) is _Node:
                value, k = self._view(entry, (*path, seg))
            else:
                value = self._value((*path, seg), entry)  # type: ignore[arg-type]
                k = _key(entry)  # type: ignore[arg-type]
            if value is not ABSENT:
                shown[seg] = value
            if k is not None and (best is None or k > best):
                best = k
        if node.reg is not None:
            rk = _key(node.reg)
            if best is None or rk > best:
                return self._value(path, node.reg), rk
            return (shown if shown else ABSENT), best
        return (shown if shown else ABSENT), best

    def hidden_by_below(self, path: Path) -> bool:
        """True when paths beneath ``path`` are newer than its own register, so a map is shown."""
        entry = self._find(path)
        if type(entry) is not _Node or entry.reg is None:
            return False
        below = self._max_key_below(entry)
        return below is not None and below > _key(entry.reg)

    def get(self, path: Path) -> Value | AbsentType:
        """The value at ``path``: a leaf value, a dict for a subtree, or ABSENT.

        The root reads as a dict (empty when the tree is). Raises ResolverError
        if a custom resolver fails on a register being read.
        """
        entry = self._find(path)
        if entry is None:
            return {} if not path else ABSENT
        if path and self._shadowed(path):
            return ABSENT
        if type(entry) is _Node:
            value = self._view(entry, path)[0]
            if value is ABSENT and not path:
                return {}
            return value
        return self._value(path, entry)  # type: ignore[arg-type]

    def versions(self, path: Path) -> tuple[Version, ...]:
        """The concurrent versions stored at exactly ``path`` (canonical order)."""
        entry = self._find(path)
        if entry is None:
            return ()
        if type(entry) is _Node:
            return reg_versions(entry.reg) if entry.reg is not None else ()
        return reg_versions(entry)  # type: ignore[arg-type]

    def conflicts(self, path: Path) -> list[Version]:
        """The siblings at ``path`` as its strategy reports them (empty if none)."""
        versions = self.versions(path)
        if len(versions) < 2:
            return []
        return self.strategies.siblings(path, versions)

    def iter_registers(self, prefix: Path = ()) -> Iterator[tuple[Path, tuple[Version, ...]]]:
        """Every (path, versions) at or beneath ``prefix``, depth first."""
        entry = self._find(prefix)
        if entry is None:
            return
        if type(entry) is not _Node:
            yield prefix, reg_versions(entry)  # type: ignore[arg-type]
            return
        stack: list[tuple[Path, _Node]] = [(prefix, entry)]
        while stack:
            path, node = stack.pop()
            if node.reg is not None:
                yield path, reg_versions(node.reg)
            for seg, child in node.children.items():
                if type(child) is _Node:
                    stack.append(((*path, seg), child))
                else:
                    yield (*path, seg), reg_versions(child)  # type: ignore[arg-type]

    # ----------------------------------------------------------------- writes

    def apply(self, op: Op, changes: list[Change] | None = None) -> None:
        """Apply ``op`` (see the module doc); append per-leaf changes to ``changes``.

        The caller guarantees causal delivery and that the op is new here.
        A put of one leaf value takes a fused single walk; everything else
        takes :meth:`apply_general`. Both have the same effect.
        """
        if op.kind == PUT and op.path and not (type(op.value) is dict and op.value):
            self._apply_leaf(op, changes)
        elif op.kind == TYPED:
            self._apply_typed(op, changes)
        else:
            self.apply_general(op, changes)

    def apply_general(self, op: Op, changes: list[Change] | None = None) -> None:
        """Apply any op in two steps: strip what its context covers, then insert."""
        touched: _Touched = {} if changes is not None else None
        if op.context:
            self._strip(op.path, dict(op.context), touched)
        if op.kind == PUT:
            value = op.value
            if type(value) is dict and value:
                base = op.path
                for rel, leaf in iter_leaves(value):
                    self._insert((*base, *rel), Version(leaf, op.hlc, op.origin, op.seq), touched)
            elif op.path:
                self._insert(op.path, Version(value, op.hlc, op.origin, op.seq), touched)
        if changes is not None and touched:
            origin, seq = op.origin, op.seq
            for path, old in touched.items():
                new = self._read_leaf(path)
                changes.append(Change(path, old, new, origin, seq))

    def _apply_leaf(self, op: Op, changes: list[Change] | None) -> None:
        path = op.path
        ctx = op.context
        covered = dict(ctx) if len(ctx) > 1 else None
        touched: _Touched = {} if changes is not None else None
        node = self._root
        last = len(path) - 1
        for i in range(last):
            seg = path[i]
            entry = node.children.get(seg)
            if type(entry) is _Node:
                if entry.reg is not None and ctx:
                    entry.reg = self._strip_one(
                        path[: i + 1], entry.reg, covered or dict(ctx), touched
                    )
                node = entry
                continue
            nxt = _Node()
            if entry is not None:
                # A leaf at an ancestor path: keep what the op had not seen.
                nxt.reg = (
                    self._strip_one(path[: i + 1], entry, covered or dict(ctx), touched)  # type: ignore[arg-type]
                    if ctx
                    else entry  # type: ignore[assignment]
                )
            node.children[seg] = nxt
            node = nxt
        seg = path[last]
        entry = node.children.get(seg)
        version = _new_version(Version, (op.value, op.hlc, op.origin, op.seq))
        if entry is None:
            node.children[seg] = version
            self.leaf_count += 1
            if touched is not None:
                touched[path] = ABSENT
        elif type(entry) is Version:
            if ctx and (
                covered.get(entry.origin, 0) >= entry.seq
                if covered is not None
                else ctx[0][0] == entry.origin and ctx[0][1] >= entry.seq
            ):
                node.children[seg] = version
            else:
                node.children[seg] = _add_version(entry, version)
            if touched is not None:
                touched[path] = entry.value
        else:
            cov = covered or dict(ctx)
            if type(entry) is _Node:
                if ctx:
                    if entry.reg is not None:
                        entry.reg = self._strip_one(path, entry.reg, cov, touched)
                    self._strip_subtree(entry, path, cov, touched)
                self._insert(path, version, touched)
                self._normalize(node, seg)
            else:
                if touched is not None:
                    touched[path] = self._value_safe(path, entry)  # type: ignore[arg-type]
                kept = _strip_reg(entry, cov) if ctx else entry  # type: ignore[arg-type]
                node.children[seg] = _add_version(kept, version)  # type: ignore[arg-type]
        if changes is not None and touched:
            origin, seq = op.origin, op.seq
            for p, old in touched.items():
                changes.append(Change(p, old, self._read_leaf(p), origin, seq))

    def write_local(
        self,
        path: Path,
        kind: int,
        value: Value,
        stamp: tuple[int, str, int],
        changes: list[Change] | None = None,
    ) -> Context:
        """A local write: replace everything in ``path``'s scope; return the context.

        The author of a local write has seen every version in its scope, so
        the write's effect is to remove them all and add its own leaves. The
        returned context covers exactly what was removed: applying the op
        built from it elsewhere has the same effect.
        """
        hlc, origin, seq = stamp
        best: dict[str, int] = {}
        touched: _Touched = {} if changes is not None else None
        node = self._root
        walked: list[tuple[_Node, str]] = []
        last = len(path) - 1
        removing = kind != PUT
        target_parent: _Node | None = node
        for i in range(last):
            seg = path[i]
            entry = node.children.get(seg)
            if type(entry) is _Node:
                if entry.reg is not None:
                    self._take_reg(path[: i + 1], entry.reg, best, touched)
                    entry.reg = None
                walked.append((node, seg))
                node = entry
                continue
            if entry is not None:
                self._take_reg(path[: i + 1], entry, best, touched)  # type: ignore[arg-type]
                if removing:
                    del node.children[seg]
                    target_parent = None
                    break
            elif removing:
                target_parent = None
                break
            nxt = _Node()
            node.children[seg] = nxt
            walked.append((node, seg))
            node = nxt
        if target_parent is not None and last >= 0:
            seg = path[last]
            entry = node.children.get(seg)
            if entry is not None:
                if type(entry) is _Node:
                    self._take_subtree(path, entry, best, touched)
                else:
                    self._take_reg(path, entry, best, touched)  # type: ignore[arg-type]
            if removing:
                if entry is not None:
                    del node.children[seg]
            elif type(value) is dict and value:
                fresh = _Node()
                node.children[seg] = fresh
                self._graft(fresh, path, value, (hlc, origin, seq), touched)
            else:
                node.children[seg] = _new_version(Version, (value, hlc, origin, seq))
                self.leaf_count += 1
                if touched is not None and path not in touched:
                    touched[path] = ABSENT
        elif last < 0:
            self._take_subtree(path, self._root, best, touched)
            self._root = _Node()
            walked = []
            if not removing and type(value) is dict and value:
                self._graft(self._root, path, value, (hlc, origin, seq), touched)
        if removing:
            # Only a remove can leave interior nodes childless.
            for parent, s in reversed(walked):
                self._normalize(parent, s)
        if changes is not None and touched:
            for p, old in touched.items():
                changes.append(Change(p, old, self._read_leaf(p), origin, seq))
        if not best:
            return ()
        return tuple(best.items()) if len(best) == 1 else tuple(sorted(best.items()))

    def _take_reg(self, path: Path, reg: Register, best: dict[str, int], touched: _Touched) -> None:
        """Account for a register a local write removes wholesale."""
        _note_dots(best, reg)
        self.leaf_count -= 1
        if touched is not None and path not in touched:
            touched[path] = self._value_safe(path, reg)

    def _take_subtree(
        self,
        base: Path,
        node: _Node,
        best: dict[str, int],
        touched: _Touched,
    ) -> None:
        if node.reg is not None:
            self._take_reg(base, node.reg, best, touched)
        for seg, entry in node.children.items():
            if type(entry) is _Node:
                self._take_subtree((*base, seg), entry, best, touched)
            elif touched is None:
                _note_dots(best, entry)  # type: ignore[arg-type]
                self.leaf_count -= 1
            else:
                self._take_reg((*base, seg), entry, best, touched)  # type: ignore[arg-type]

    def _graft(
        self,
        node: _Node,
        base: Path,
        value: dict[str, Value],
        stamp: tuple[int, str, int],
        touched: _Touched,
    ) -> None:
        """Build the subtree of a dict write under an empty node."""
        hlc, origin, seq = stamp
        for key, item in value.items():
            if type(item) is dict and item:
                child = _Node()
                node.children[key] = child
                self._graft(child, (*base, key), item, stamp, touched)
            else:
                node.children[key] = _new_version(Version, (item, hlc, origin, seq))
                self.leaf_count += 1
                if touched is not None:
                    path = (*base, key)
                    if path not in touched:
                        touched[path] = ABSENT

    def _read_leaf(self, path: Path) -> Value | AbsentType:
        entry = self._find(path)
        if entry is None:
            return ABSENT
        if type(entry) is _Node:
            return self._value_safe(path, entry.reg)
        return self._value_safe(path, entry)  # type: ignore[arg-type]

    def _strip_one(
        self,
        path: Path,
        reg: Register,
        covered: dict[str, int],
        touched: _Touched,
    ) -> Register | None:
        new = _strip_reg(reg, covered)
        if new is not reg:
            if new is None:
                self.leaf_count -= 1
            if touched is not None and path not in touched:
                touched[path] = self._value_safe(path, reg)
        return new

    def _strip(self, path: Path, covered: dict[str, int], touched: _Touched) -> None:
        node = self._root
        walked: list[tuple[_Node, str]] = []
        last = len(path) - 1
        if last < 0:
            self._strip_subtree(node, path, covered, touched)
            return
        for i, seg in enumerate(path):
            entry = node.children.get(seg)
            if entry is None:
                break
            if type(entry) is _Node:
                if entry.reg is not None:
                    entry.reg = self._strip_one(path[: i + 1], entry.reg, covered, touched)
                walked.append((node, seg))
                if i == last:
                    self._strip_subtree(entry, path, covered, touched)
                    break
                node = entry
            else:
                # A plain leaf at path[:i+1]: the target itself or an ancestor
                # leaf; either way nothing else in scope lies beneath it.
                new = self._strip_one(path[: i + 1], entry, covered, touched)  # type: ignore[arg-type]
                if new is None:
                    del node.children[seg]
                elif new is not entry:
                    node.children[seg] = new
                break
        for parent, seg in reversed(walked):
            self._normalize(parent, seg)

    def _strip_subtree(
        self,
        node: _Node,
        base: Path,
        covered: dict[str, int],
        touched: _Touched,
    ) -> None:
        children = node.children
        for seg, entry in list(children.items()):
            if type(entry) is _Node:
                sub = (*base, seg)
                if entry.reg is not None:
                    entry.reg = self._strip_one(sub, entry.reg, covered, touched)
                self._strip_subtree(entry, sub, covered, touched)
                self._normalize(node, seg)
            else:
                if type(entry) is Version and covered.get(entry.origin, 0) < entry.seq:
                    continue
                new = self._strip_one((*base, seg), entry, covered, touched)  # type: ignore[arg-type]
                if new is None:
                    del children[seg]
                elif new is not entry:
                    children[seg] = new

    @staticmethod
    def _normalize(parent: _Node, seg: str) -> None:
        """Collapse a childless node to its register, or drop it if empty."""
        child = parent.children.get(seg)
        if type(child) is _Node and not child.children:
            if child.reg is None:
                del parent.children[seg]
            else:
                parent.children[seg] = child.reg

    def _insert(self, path: Path, version: Version, touched: _Touched) -> None:
        old = self._add_at(self._make_parent(path[:-1]), path[-1], version)
        if touched is not None and path not in touched:
            touched[path] = self._value_safe(path, old)

    def _make_parent(self, prefix: Path) -> _Node:
        """The node at ``prefix``, made where missing (a leaf on the way becomes a node's register).

        Interior nodes are only ever created here, never replaced, so a node
        found for a prefix stays valid while nothing is removed.
        """
        node = self._root
        for seg in prefix:
            entry = node.children.get(seg)
            if type(entry) is _Node:
                node = entry
                continue
            nxt = _Node()
            if entry is not None:
                nxt.reg = entry  # type: ignore[assignment]
            node.children[seg] = nxt
            node = nxt
        return node

    def _add_at(self, node: _Node, seg: str, version: Version) -> Register | None:
        """Add ``version`` to the register at ``seg`` under ``node``; return the register it had."""
        children = node.children
        entry = children.get(seg)
        if entry is None:
            children[seg] = version
            self.leaf_count += 1
            return None
        if type(entry) is _Node:
            old = entry.reg
            if old is None:
                self.leaf_count += 1
            entry.reg = _add_version(old, version)
            return old
        children[seg] = _add_version(entry, version)  # type: ignore[arg-type]
        return entry  # type: ignore[return-value]

    # ---------------------------------------------------------- whole state

    def set_register(self, path: Path, versions: Iterable[Version]) -> None:
        """Add ``versions`` at ``path`` as they are (snapshot loading)."""
        for v in versions:
            self._insert(path, v, None)

    def replace_register(
        self,
        path: Path,
        versions: tuple[Version, ...],
        changes: list[Change] | None = None,
    ) -> None:
        """Make ``versions`` the register at ``path`` (empty: remove it)."""
        if path:
            self._set_versions(path, versions, changes, replace=True)

    def add_registers(
        self, items: Iterable[tuple[Path, tuple[Version, ...]]], changes: list[Change] | None = None
    ) -> None:
        """Make each ``versions`` the register at its path, where there is no register now.

        Built for loading a whole snapshot (a million paths when a node joins):
        paths in snapshot order share their parents, so the last parent found
        is reused instead of walking from the root for each path.
        """
        if changes is None:
            self._add_registers_bulk(items)
            return
        for path, versions in items:
            if path and versions:
                self._set_versions(path, versions, changes, replace=False)

    def _set_versions(
        self,
        path: Path,
        versions: tuple[Version, ...],
        changes: list[Change] | None,
        *,
        replace: bool,
    ) -> None:
        """Add ``versions`` at ``path`` (first dropping the register there if ``replace``); record the change."""
        old = self._read_leaf(path) if changes is not None else ABSENT
        if replace:
            self._drop_register(path)
        for v in versions:
            self._insert(path, v, None)
        if changes is not None:
            top = max(versions, key=version_key) if versions else None
            changes.append(
                Change(path, old, self._read_leaf(path), top.origin if top else "", top.seq if top else 0)
            )

    def _add_registers_bulk(self, items: Iterable[tuple[Path, tuple[Version, ...]]]) -> None:
        insert = self._insert
        make_parent = self._make_parent
        add_at = self._add_at
        node = self._root
        last: Path | None = None
        added = 0
        for path, versions in items:
            if not path or not versions:
                continue
            if len(versions) != 1:
                for v in versions:
                    insert(path, v, None)
                continue
            prefix = path[:-1]
            if prefix != last:
                node = make_parent(prefix)
                last = prefix
            children = node.children
            seg = path[-1]
            if seg in children:
                add_at(node, seg, versions[0])
            else:  # the common case when a new replica loads a snapshot: inline, no call
                children[seg] = versions[0]
                added += 1
        self.leaf_count += added

    def _drop_register(self, path: Path) -> None:
        node = self._root
        walked: list[tuple[_Node, str]] = []
        for seg in path[:-1]:
            entry = node.children.get(seg)
            if type(entry) is not _Node:
                return
            walked.append((node, seg))
            node = entry
        seg = path[-1]
        entry = node.children.get(seg)
        if entry is None:
            return
        if type(entry) is _Node:
            if entry.reg is not None:
                entry.reg = None
                self.leaf_count -= 1
            walked.append((node, seg))
        else:
            del node.children[seg]
            self.leaf_count -= 1
        for parent, s in reversed(walked):
            self._normalize(parent, s)

    def clear(self) -> None:
        self._root = _Node()
        self.typed_paths.clear()
        self.leaf_count = 0

    def digest_total(self) -> int:
        """An order-independent 64-bit sum over every stored version."""
        total = 0
        for path, versions in self.iter_registers():
            for v in versions:
                text = f"{path!r}|{_canon(v.value)}|{v.hlc}|{v.origin!r}|{v.seq}"
                h = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest()
                total = (total + int.from_bytes(h, "big")) & 0xFFFFFFFFFFFFFFFF
        return total
