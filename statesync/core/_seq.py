"""The sequence engine under text and lists: FugueMax over runs of elements.

Algorithm: FugueMax, from Matthew Weidner and Martin Kleppmann, "The Art of
the Fugue: Minimizing Interleaving in Collaborative Text Editing" (2023,
arXiv:2305.00583), in its list form: each element records its left origin
(the element just before it when it was inserted) and its right origin (the
element just after that one, tombstones included), and a replica integrates
a remote element by scanning the elements between the two origins, ties
broken by author (the form Joseph Gentle's crdt-from-scratch gives
FugueMax). Concurrent inserts at one position never interleave: a run typed
by one author stays together, forward or backward (property-tested).

Element ids are dots of the tree's scheme: the op that inserted an element
has one dot ``(origin, seq)``, and its n elements are ``(origin, seq, 0..n-1)``.
Memory is kept by runs, not per element: an :class:`_Item` holds one author's
consecutive elements, the ops of one typing run included (each op one
*segment* of the item), and is split on demand when an edit lands inside it.
Items sit in document order in chunks of at most ``CHUNK_ITEMS_MAX`` with a
visible length per chunk, and a cursor remembers the last place edited, so a
local edit near the previous one costs O(1) and a remote one O(chunks).

Deleted elements keep their id (other ops may name them as origins) but drop
their content at once; :meth:`Sequence.compact` also drops the origins of
causally stable elements, and a snapshot stores adjacent stable items of one
author as one run (``_seqruns``). See :meth:`Sequence.compact` for why a
stable tombstone keeps its id.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterator, Mapping
from itertools import accumulate
from typing import Generic, TypeAlias, TypeVar

from statesync.core._context import Dot
from statesync.core._typebase import Char

Target: TypeAlias = tuple[str, int, int, int]
"""A run of elements of one op: ``(origin, seq, offset, count)``."""

C = TypeVar("C", str, list[Char])

CHUNK_ITEMS_MAX = 64
GONE: Char = ("", 0, -1)
"""Origins of a causally stable item: dropped, never read again, never equal to a real id."""
_END_KEY = (1 << 62, 0, 0)
_NO_KEY = (-1, 0, 0)


class _Item(Generic[C]):
    """A run of one author's consecutive elements, all live or all deleted."""

    __slots__ = (
        "chunk",
        "content",
        "deleted_by",
        "left",
        "length",
        "offs",
        "origin",
        "right",
        "seqs",
        "starts",
        "vis",
    )

    def __init__(  # noqa: PLR0917 (hot path: positional)
        self,
        origin: str,
        seqs: list[int],
        offs: list[int],
        starts: list[int],
        content: C,
        length: int,
        left: Char | None,
        right: Char | None,
        deleted_by: Dot | None,
    ) -> None:
        self.origin = origin
        self.seqs = seqs
        self.offs = offs
        self.starts = starts
        self.content: C = content
        self.length = length
        self.vis = 0 if deleted_by is not None else length
        self.left = left
        self.right = right
        self.deleted_by = deleted_by
        self.chunk: _Chunk[C] | None = None

    def char(self, k: int) -> Char:
        """The id of this item's k-th element."""
        i = bisect_right(self.starts, k) - 1
        return (self.origin, self.seqs[i], self.offs[i] + k - self.starts[i])

    def seg_len(self, i: int) -> int:
        starts = self.starts
        return (starts[i + 1] if i + 1 < len(starts) else self.length) - starts[i]

    def targets(self) -> Iterator[Target]:
        for i, s in enumerate(self.seqs):
            yield (self.origin, s, self.offs[i], self.seg_len(i))


class _Chunk(Generic[C]):
    __slots__ = ("items",)

    def __init__(self, items: list[_Item[C]]) -> None:
        self.items: list[_Item[C]] = items


class Sequence(Generic[C]):
    """Runs of elements in FugueMax order; content ``C`` is ``str`` or a list of ids."""

    def __init__(self, empty: C) -> None:
        self._empty: C = empty
        self._chunks: list[_Chunk[C]] = [_Chunk([])]
        self._cvis: list[int] = [0]
        # origin -> seq -> the item holding op seq's elements, or its pieces in offset order
        self._index: dict[str, dict[int, _Item[C] | list[_Item[C]]]] = {}
        self.length = 0
        # cursor: (chunk index, item index, visible position of the item's start)
        self._cur: tuple[int, int, int] | None = None

    @property
    def empty(self) -> C:
        """The empty content (``""`` or ``[]``)."""
        return self._empty

    # ---- lookup ---------------------------------------------------------------

    def find(self, char: Char) -> tuple[_Item[C], int]:
        """The item holding ``char`` and its offset there; KeyError if unknown."""
        o, s, off = char
        e = self._index[o][s]
        pieces = e if isinstance(e, list) else (e,)
        for it in pieces:
            seqs = it.seqs
            i = bisect_left(seqs, s)
            if i < len(seqs) and seqs[i] == s:
                so = it.offs[i]
                if so <= off < so + it.seg_len(i):
                    return it, it.starts[i] + off - so
        raise KeyError(char)

    def has(self, char: Char) -> bool:
        try:
            self.find(char)
        except KeyError:
            return False
        return True

    def _where(self, it: _Item[C]) -> tuple[int, int]:
        chunk = it.chunk
        assert chunk is not None
        return self._chunks.index(chunk), chunk.items.index(it)

    def _pos_at(self, ci: int, ii: int) -> int:
        """Visible position of the start of item ``ii`` of chunk ``ci``."""
        return sum(self._cvis[:ci]) + sum(it.vis for it in self._chunks[ci].items[:ii])

    def position(self, char: Char) -> int | None:
        """The visible position of ``char``, or None when it is deleted."""
        it, k = self.find(char)
        if it.vis == 0:
            return None
        ci, ii = self._where(it)
        return self._pos_at(ci, ii) + k

    def _seek(self, p: int) -> tuple[int, int, int]:
        """(chunk, item, item start) of the live item holding visible element ``p``."""
        chunks = self._chunks
        cvis = self._cvis
        cur = self._cur
        if cur is None or abs(cur[2] - p) > 4096:
            acc = list(accumulate(cvis))
            ci = bisect_right(acc, p)
            start = acc[ci - 1] if ci else 0
            ii = 0
        else:
            ci, ii, start = cur
            if p < start:
                items = chunks[ci].items
                while p < start:
                    if ii == 0:
                        ci -= 1
                        items = chunks[ci].items
                        ii = len(items)
                        if p < start - cvis[ci]:
                            start -= cvis[ci]
                            ii = 0
                            continue
                    ii -= 1
                    start -= items[ii].vis
        items = chunks[ci].items
        while True:
            if ii == 0 and p >= start + cvis[ci]:
                start += cvis[ci]
                ci += 1
                items = chunks[ci].items
                continue
            it = items[ii]
            if p < start + it.vis:
                return ci, ii, start
            start += it.vis
            ii += 1
            if ii == len(items):
                ci += 1
                ii = 0
                items = chunks[ci].items

    def _next(self, ci: int, ii: int) -> _Item[C] | None:
        """The item after item ``ii`` of chunk ``ci``, in document order."""
        chunks = self._chunks
        ii += 1
        while ci < len(chunks):
            items = chunks[ci].items
            if ii < len(items):
                return items[ii]
            ci += 1
            ii = 0
        return None

    # ---- structure ---------------------------------------------------------------

    def _put(self, ci: int, ii: int, it: _Item[C]) -> None:
        """Insert ``it`` at item ``ii`` of chunk ``ci``; split the chunk when full."""
        chunk = self._chunks[ci]
        chunk.items.insert(ii, it)
        it.chunk = chunk
        self._cvis[ci] += it.vis
        if len(chunk.items) > CHUNK_ITEMS_MAX:
            self._split_chunk(ci)

    def _split_chunk(self, ci: int) -> None:
        chunk = self._chunks[ci]
        h = len(chunk.items) // 2
        moved = chunk.items[h:]
        del chunk.items[h:]
        new = _Chunk(moved)
        for it in moved:
            it.chunk = new
        vis = sum(it.vis for it in moved)
        self._chunks.insert(ci + 1, new)
        self._cvis[ci] -= vis
        self._cvis.insert(ci + 1, vis)
        cur = self._cur
        if cur is not None:
            cci, cii, start = cur
            if cci > ci:
                self._cur = (cci + 1, cii, start)
            elif cci == ci and cii >= h:
                self._cur = (ci + 1, cii - h, start)

    def _split(self, it: _Item[C], k: int, ci: int, ii: int) -> _Item[C]:
        """Split ``it`` (item ``ii`` of chunk ``ci``) before its element ``k``; return the right part."""
        starts: list[int] = it.starts
        i: int = bisect_right(starts, k) - 1
        origin = it.origin
        if starts[i] == k:
            seqs_r = it.seqs[i:]
            offs_r = it.offs[i:]
            starts_r = [s - k for s in starts[i:]]
            del it.seqs[i:]
            del it.offs[i:]
            del starts[i:]
            whole = seqs_r
            cut = None
        else:
            d = k - starts[i]
            seqs_r = it.seqs[i:]
            offs_r = [it.offs[i] + d, *it.offs[i + 1 :]]
            starts_r = [0, *(s - k for s in starts[i + 1 :])]
            del it.seqs[i + 1 :]
            del it.offs[i + 1 :]
            del starts[i + 1 :]
            whole = seqs_r[1:]
            cut = seqs_r[0]
        live = it.deleted_by is None
        right = _Item(
            origin,
            seqs_r,
            offs_r,
            starts_r,
            it.content[k:] if live else it.content,
            it.length - k,
            it.char(k - 1) if it.right is not GONE else GONE,
            it.right,
            it.deleted_by,
        )
        if live:
            it.content = it.content[:k]
            it.vis = k
        it.length = k
        index = self._index[origin]
        for s in whole:
            e = index[s]
            if e is it:
                index[s] = right
            else:
                assert type(e) is list
                e[e.index(it)] = right
        if cut is not None:
            e = index[cut]
            if e is it:
                index[cut] = [it, right]
            else:
                assert type(e) is list
                e.insert(e.index(it) + 1, right)
        chunk = self._chunks[ci]
        chunk.items.insert(ii + 1, right)
        right.chunk = chunk
        if len(chunk.items) > CHUNK_ITEMS_MAX:
            self._split_chunk(ci)
        return right

    def _register(self, origin: str, seq: int, it: _Item[C]) -> None:
        by_seq = self._index.get(origin)
        if by_seq is None:
            by_seq = self._index[origin] = {}
        by_seq[seq] = it

    # ---- local edits ------------------------------------------------------------

    def _relocate(self, it: _Item[C], ci: int, ii: int) -> tuple[int, int]:
        """Where ``it`` (item ``ii`` of chunk ``ci`` before something was put after it) is now."""
        chunk = it.chunk
        if chunk is self._chunks[ci]:
            return ci, ii
        assert chunk is not None
        return ci + 1, chunk.items.index(it)

    def _after(self, ci: int, ii: int) -> tuple[int, int]:
        if ii + 1 < len(self._chunks[ci].items):
            return ci, ii + 1
        return ci + 1, 0

    def _extend(self, it: _Item[C], ci: int, seq: int, content: C) -> None:
        """Append op ``seq``'s run to ``it`` (live, same author, continuing it; in chunk ``ci``)."""
        n = len(content)
        it.seqs.append(seq)
        it.offs.append(0)
        it.starts.append(it.length)
        it.content += content
        it.length += n
        it.vis += n
        self._cvis[ci] += n
        self._index[it.origin][seq] = it

    def local_insert(self, origin: str, seq: int, pos: int, content: C) -> tuple[Char | None, Char | None]:
        """Insert ``content`` at visible ``pos`` as op ``(origin, seq)``; return its origins.

        The caller checked ``0 <= pos <= length`` and that ``content`` is non-empty.
        """
        n = len(content)
        self.length += n
        right: Char | None
        if pos == 0:
            first = self._next(0, -1)
            right = first.char(0) if first is not None else None
            new = _Item(origin, [seq], [0], [0], content, n, None, right, None)
            self._register(origin, seq, new)
            self._cur = (0, 0, 0)
            self._put(0, 0, new)
            return None, right
        ci, ii, start = self._seek(pos - 1)
        it = self._chunks[ci].items[ii]
        k = pos - 1 - start
        left = it.char(k)
        if k + 1 < it.length:
            nxt = self._split(it, k + 1, ci, ii)
            ci, ii = self._relocate(it, ci, ii)
            right = nxt.char(0)
        else:
            nxt2 = self._next(ci, ii)
            right = nxt2.char(0) if nxt2 is not None else None
            if it.origin == origin and it.right == right and seq > it.seqs[-1]:
                self._extend(it, ci, seq, content)
                self._cur = (ci, ii, start)
                return left, right
        new = _Item(origin, [seq], [0], [0], content, n, left, right, None)
        self._register(origin, seq, new)
        self._cur = (ci, ii, start)
        self._put(ci, ii + 1, new)
        return left, right

    def local_delete(self, pos: int, n: int, by: Dot) -> list[Target]:
        """Delete ``n`` visible elements from ``pos`` as op ``by``; return their ids.

        The caller checked ``0 <= pos`` and ``pos + n <= length``, ``n >= 1``.
        """
        ci, ii, start = self._seek(pos)
        it = self._chunks[ci].items[ii]
        k = pos - start
        if k > 0:
            self._split(it, k, ci, ii)
            ci, ii = self._after(*self._relocate(it, ci, ii))
        self._cur = (ci, ii, pos)
        targets: list[Target] = []
        left = n
        chunks = self._chunks
        while left > 0:
            items = chunks[ci].items
            if ii == len(items):
                ci += 1
                ii = 0
                continue
            it = items[ii]
            if it.vis == 0:
                ii += 1
                continue
            if it.length > left:
                self._split(it, left, ci, ii)
                ci, ii = self._relocate(it, ci, ii)
            targets.extend(it.targets())
            left -= it.length
            self._kill(it, ci, by)
            ii += 1
        self.length -= n
        cur = self._cur
        assert cur is not None
        self._coalesce(cur[0], cur[1], cur[1] + 1 + len(targets))
        return targets

    def _kill(self, it: _Item[C], ci: int, by: Dot) -> None:
        self._cvis[ci] -= it.vis
        it.vis = 0
        it.content = self._empty
        it.deleted_by = by

    def _coalesce(self, ci: int, lo: int, hi: int) -> None:
        """Join adjacent tombstones among items ``lo - 1 .. hi`` of chunk ``ci`` where ids allow.

        Two deleted items join when the second continues the first as a run
        would (its left origin is the first's last element, same right origin,
        same author, increasing seqs) and one author deleted both: the joined
        item keeps every element's id and implied origins, and the later
        delete (stable implies the earlier one stable too).
        """
        items = self._chunks[ci].items
        i = max(lo, 1)
        hi = min(hi, len(items) - 1)
        while i <= hi:
            a, b = items[i - 1], items[i]
            da, db = a.deleted_by, b.deleted_by
            if (
                da is None
                or db is None
                or da[0] != db[0]
                or a.origin != b.origin
                or a.right is GONE
                or b.right != a.right
                or b.left != a.char(a.length - 1)
            ):
                i += 1
                continue
            self._absorb(a, b)
            if db[1] > da[1]:
                a.deleted_by = db
            del items[i]
            hi -= 1
            cur = self._cur
            if cur is not None and cur[0] == ci and cur[1] >= i:
                self._cur = (ci, cur[1] - 1, cur[2])

    def _absorb(self, a: _Item[C], b: _Item[C]) -> None:
        """Append deleted item ``b``'s ids to deleted item ``a`` (b follows a as a run would)."""
        index = self._index[a.origin]
        base = a.length
        j0 = 0
        if b.seqs[0] == a.seqs[-1]:  # the same op continues: one segment
            j0 = 1
            e = index[b.seqs[0]]
            assert isinstance(e, list)
            e.remove(b)
            if len(e) == 1:
                index[b.seqs[0]] = e[0]
        for j in range(j0, len(b.seqs)):
            s = b.seqs[j]
            a.seqs.append(s)
            a.offs.append(b.offs[j])
            a.starts.append(base + b.starts[j])
            e = index[s]
            if e is b:
                index[s] = a
            else:
                assert isinstance(e, list)
                e[e.index(b)] = a
        a.length += b.length
        b.chunk = None

    # ---- remote edits -----------------------------------------------------------

    def _key(self, char: Char | None, default: tuple[int, int, int]) -> tuple[int, int, int]:
        if char is None or char is GONE or char == GONE:
            return default
        it, k = self.find(char)
        ci, ii = self._where(it)
        return (ci, ii, k)

    def integrate(self, origin: str, seq: int, left: Char | None, right: Char | None, content: C) -> int:
        """Place a remote op's run between its origins (FugueMax); return its visible position.

        The caller checked that both origins are known here.
        """
        self._cur = None
        n = len(content)
        lit: _Item[C] | None = None
        if left is not None:
            lit, k = self.find(left)
            if k + 1 < lit.length:
                ci, ii = self._where(lit)
                self._split(lit, k + 1, ci, ii)
        rit: _Item[C] | None = None
        if right is not None:
            rit, k = self.find(right)
            if k > 0:
                ci, ii = self._where(rit)
                rit = self._split(rit, k, ci, ii)
        if left is None:
            lkey = _NO_KEY
            ci, ii = 0, 0
        else:
            assert lit is not None
            ci, ii = self._where(lit)
            lkey = (ci, ii, lit.length - 1)
            ii += 1
        rkey = _END_KEY
        if rit is not None:
            rci, rii = self._where(rit)
            rkey = (rci, rii, 0)
        chunks = self._chunks
        dest = (ci, ii)
        scanning = False
        while True:
            if not scanning:
                dest = (ci, ii)
            if ci == len(chunks):
                break
            items = chunks[ci].items
            if ii == len(items):
                ci += 1
                ii = 0
                continue
            other = items[ii]
            if other is rit:
                break
            oleft = self._key(other.left, _NO_KEY)
            if oleft < lkey:
                break
            if oleft == lkey:
                oright = self._key(other.right, _END_KEY)
                if oright == rkey and origin < other.origin:
                    break
                scanning = oright < rkey
            ii += 1
        ci, ii = dest
        if ci == len(chunks):
            ci = len(chunks) - 1
            ii = len(chunks[ci].items)
        # the item just before dest, for merging a continued run
        pci, pii = ci, ii - 1
        while pii < 0 and pci > 0:
            pci -= 1
            pii = len(chunks[pci].items) - 1
        prev = chunks[pci].items[pii] if pii >= 0 else None
        pos = self._pos_at(ci, ii)
        if (
            prev is not None
            and prev.origin == origin
            and prev.deleted_by is None
            and prev.right == right
            and seq > prev.seqs[-1]
            and left is not None
            and prev.char(prev.length - 1) == left
        ):
            self._extend(prev, pci, seq, content)
        else:
            new = _Item(origin, [seq], [0], [0], content, n, left, right, None)
            self._register(origin, seq, new)
            self._put(ci, ii, new)
        self.length += n
        return pos

    def delete_targets(self, targets: list[Target], by: Dot) -> list[tuple[int, int]]:
        """Delete the elements ``targets`` name (known here); return (position, count) removed, ascending."""
        self._cur = None
        pieces: list[_Item[C]] = []
        for o, s, off0, n0 in targets:
            off, n = off0, n0
            while n > 0:
                it, k = self.find((o, s, off))
                if k > 0:
                    ci, ii = self._where(it)
                    it = self._split(it, k, ci, ii)
                i = bisect_left(it.seqs, s)
                take = min(n, it.seg_len(i))
                if take < it.length:
                    ci, ii = self._where(it)
                    self._split(it, take, ci, ii)
                if it.vis:
                    pieces.append(it)
                n -= take
                off += take
        found: list[tuple[int, int]] = []
        dead: list[tuple[_Item[C], int]] = []
        seen: set[int] = set()
        for it in pieces:
            if id(it) in seen:
                continue  # named twice in one op
            seen.add(id(it))
            ci, ii = self._where(it)
            found.append((self._pos_at(ci, ii), it.length))
            dead.append((it, ci))
        for it, ci in dead:
            self.length -= it.length
            self._kill(it, ci, by)
        for it, _ in dead:
            if it.chunk is not None:  # not absorbed by a neighbour already
                ci, ii = self._where(it)
                self._coalesce(ci, ii, ii + 1)
        found.sort()
        return _merge_ranges(found)

    def hide(self, char: Char, by: Dot) -> int | None:
        """Delete one element; return its visible position, or None if already deleted."""
        got = self.delete_targets([(char[0], char[1], char[2], 1)], by)
        return got[0][0] if got else None

    # ---- reading --------------------------------------------------------------

    def items(self) -> Iterator[_Item[C]]:
        for chunk in self._chunks:
            yield from chunk.items

    def live(self) -> Iterator[C]:
        for chunk in self._chunks:
            for it in chunk.items:
                if it.vis:
                    yield it.content

    def origins_at(self, pos: int) -> tuple[Char | None, Char | None]:
        """The origins an element inserted at visible ``pos`` would get (nothing changes)."""
        if pos == 0:
            first = self._next(0, -1)
            return None, (first.char(0) if first is not None else None)
        ci, ii, start = self._seek(pos - 1)
        self._cur = (ci, ii, start)
        it = self._chunks[ci].items[ii]
        k = pos - 1 - start
        if k + 1 < it.length:
            return it.char(k), it.char(k + 1)
        nxt = self._next(ci, ii)
        return it.char(k), (nxt.char(0) if nxt is not None else None)

    def element_at(self, pos: int) -> tuple[Char, C]:
        """The id and the one-element content of the visible element at ``pos``."""
        ci, ii, start = self._seek(pos)
        self._cur = (ci, ii, start)
        it = self._chunks[ci].items[ii]
        k = pos - start
        return it.char(k), it.content[k : k + 1]

    def char_at(self, pos: int) -> Char:
        """The id of the visible element at ``pos`` (the caller checked the range)."""
        ci, ii, start = self._seek(pos)
        self._cur = (ci, ii, start)
        return self._chunks[ci].items[ii].char(pos - start)

    # ---- compaction and snapshots -------------------------------------------------

    def compact(self, stable: Mapping[str, int]) -> int:
        """Drop the origins of elements ``stable`` covers; return how many items it touched.

        ``stable`` must be causally stable: every op still to arrive here is in
        the causal future of every dot it covers. Such an element is never
        again between the origins of an arriving op, so its origins are never
        read. A stable tombstone keeps its id (not its content): an op issued
        before its author compacted may name it as an origin. The snapshot
        then stores adjacent stable items of one author as one run.
        """
        touched = 0
        for it in self.items():
            if it.right is GONE:
                continue
            if it.deleted_by is not None:
                d = it.deleted_by
                ok = stable.get(d[0], 0) >= d[1]
            else:
                ok = stable.get(it.origin, 0) >= it.seqs[-1]
            if ok:
                it.left = GONE
                it.right = GONE
                touched += 1
        return touched

    def runs(self) -> Iterator[tuple[_Item[C], list[_Item[C]]]]:
        """Items grouped as a snapshot stores them: adjacent stable items of one author, one state."""
        group: list[_Item[C]] = []
        for it in self.items():
            if group:
                last = group[-1]
                if (
                    it.right is GONE
                    and last.right is GONE
                    and it.origin == last.origin
                    and (it.deleted_by is None) == (last.deleted_by is None)
                    and (
                        it.seqs[0] > last.seqs[-1]
                        or (
                            it.seqs[0] == last.seqs[-1]
                            and it.offs[0] == last.offs[-1] + last.seg_len(len(last.seqs) - 1)
                        )
                    )
                ):
                    group.append(it)
                    continue
                yield group[0], group
            group = [it]
        if group:
            yield group[0], group

    def load_item(  # noqa: PLR0917
        self,
        origin: str,
        segs: list[tuple[int, int, int]],
        content: C,
        left: Char | None,
        right: Char | None,
        deleted_by: Dot | None,
    ) -> None:
        """Append one item at the end (snapshot loading); ``segs`` are (seq, off, n)."""
        seqs = [s for s, _, _ in segs]
        offs = [o for _, o, _ in segs]
        starts: list[int] = []
        total = 0
        for _, _, n in segs:
            starts.append(total)
            total += n
        it = _Item(origin, seqs, offs, starts, content, total, left, right, deleted_by)
        index = self._index.setdefault(origin, {})
        for s, _, _ in segs:
            e = index.get(s)
            if e is None:
                index[s] = it
            elif isinstance(e, list):
                e.append(it)  # pieces of one op come in offset order
            else:
                index[s] = [e, it]
        ci = len(self._chunks) - 1
        self._put(ci, len(self._chunks[ci].items), it)
        self.length += it.vis


def _merge_ranges(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for p, n in ranges:
        if out and out[-1][0] + out[-1][1] == p:
            out[-1] = (out[-1][0], out[-1][1] + n)
        else:
            out.append((p, n))
    return out


def deletion_delta(ranges: list[tuple[int, int]]) -> list[dict[str, object]]:
    """A Yjs-style delta for ``ranges`` of (position before the op, count), ascending."""
    delta: list[dict[str, object]] = []
    at = 0
    for p, n in _merge_ranges(ranges):
        if p > at:
            delta.append({"retain": p - at})
        delta.append({"delete": n})
        at = p + n
    return delta
