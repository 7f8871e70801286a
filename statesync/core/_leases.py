"""Leases as replicated state, and the pure decision of when a lease ends and who ends it.

A lease is an ordinary subtree of the replicated tree, under the reserved
prefix :data:`LEASE_PREFIX` (``_statesync.leases``)::

    _statesync.leases.<id>.owner        the node that granted it (and hears its holder)
    _statesync.leases.<id>.ttl_ms       its time to live, in milliseconds
    _statesync.leases.<id>.holder       a digest of the holder's secret token
    _statesync.leases.<id>.keys.<slot>  [path, origin, seq]: a key tied to the lease and the
                                        write that tied it (a later write by anyone else unties it)

A lease id is ``<owner>~<hex>``, so the owner is known even when only key
entries are left. It ends, on every replica the same way, by ordinary
observed-remove deletes (first the keys still tied, then the record), made by
exactly one node at a time in the normal case and converging to one absence
when two nodes (one on each side of a partition) both make them:

- the **owner** ends it ``ttl_s`` after it last heard the holder (or at once
  when revoked);
- when the owner has been unreachable for ``ttl_s + grace_s`` (grace: the
  peers' heartbeat timeout), the **successor** ends it: the smallest node id
  among the nodes this node reaches, itself included, the owner excluded;
- a lease whose record is gone but whose key entries are left (written on the
  owner's side of a partition while the other side ended it) has ended: its
  owner (or successor) deletes those keys at once.

:class:`ExpiryIndex` holds that rule over a :class:`sortedcontainers.SortedList`
ordered by deadline. It is pure: the node passes the tree's lease records, its
live peers and the time in, and asks which leases it must end now.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from typing import Final

import attrs
from sortedcontainers import SortedList

from statesync.core._op import AbsentType
from statesync.core._path import Path, format_path, parse_path
from statesync.core._value import Value
from statesync.errors import StatesyncError

LEASE_PREFIX: Final[Path] = ("_statesync", "leases")
"""Where lease records live. Clients may not write under ``_statesync``."""
RESERVED_ROOT: Final = "_statesync"
ID_SEPARATOR: Final = "~"
NEVER: Final = float("inf")


@attrs.frozen
class TiedKey:
    """A key tied to a lease: its path, and the write (origin, seq) that tied it."""

    slot: str
    path: Path
    origin: str
    seq: int


@attrs.frozen
class LeaseRecord:
    """One lease as the tree holds it. ``live`` False: the record is gone, key entries are left."""

    lease_id: str
    owner: str
    ttl_s: float
    holder: str
    keys: tuple[TiedKey, ...] = ()
    live: bool = True


def owner_of(lease_id: str) -> str | None:
    """The node that granted ``lease_id`` (the part before ``~``), or None if it is not a lease id."""
    owner, sep, rest = lease_id.partition(ID_SEPARATOR)
    return owner if sep and owner and rest else None


def make_lease_id(owner: str, nonce: int) -> str:
    """The id of a lease ``owner`` grants; ``nonce`` (random, from the caller) makes it unique."""
    return f"{owner}{ID_SEPARATOR}{nonce & (2**64 - 1):016x}"


def holder_digest(token: str) -> str:
    """What the record keeps of a holder's secret token (the token itself never travels)."""
    return hashlib.sha256(token.encode()).hexdigest()


def key_slot(path: Path) -> str:
    """The segment a tied key's entry sits at: a digest of its path (any path fits one segment)."""
    return hashlib.blake2b(format_path(path).encode(), digest_size=12).hexdigest()


def record_path(lease_id: str) -> Path:
    return (*LEASE_PREFIX, lease_id)


def grant_items(lease_id: str, owner: str, ttl_s: float, holder: str) -> list[tuple[Path, Value]]:
    """The puts that create a lease record."""
    base = record_path(lease_id)
    return [((*base, "owner"), owner), ((*base, "ttl_ms"), round(ttl_s * 1000)), ((*base, "holder"), holder)]


def tie_item(lease_id: str, path: Path, origin: str, seq: int) -> tuple[Path, Value]:
    """The put that ties ``path`` (written by the op ``origin``/``seq``) to a lease."""
    return ((*record_path(lease_id), "keys", key_slot(path)), [format_path(path), origin, seq])


def is_reserved(path: Path) -> bool:
    """Whether ``path`` lies in (or contains) statesync's own records."""
    return not path or path[0] == RESERVED_ROOT


def _tied(slot: str, raw: object) -> TiedKey | None:
    if not isinstance(raw, list) or len(raw) != 3:
        return None
    text, origin, seq = raw
    if not isinstance(text, str) or not isinstance(origin, str) or type(seq) is not int:
        return None
    try:
        path = parse_path(text)
    except StatesyncError:
        return None
    return TiedKey(slot, path, origin, seq) if path else None


def parse_leases(tree: Value | AbsentType) -> dict[str, LeaseRecord]:
    """The lease records in the subtree at :data:`LEASE_PREFIX`; malformed ones are skipped.

    Anything may sit there (a peer can write anything), so nothing here
    raises: a record without a valid id, owner, ttl or holder is ignored,
    except that its well-formed key entries still make it an ended lease.
    """
    out: dict[str, LeaseRecord] = {}
    if not isinstance(tree, dict):
        return out
    for lease_id, body in tree.items():
        owner = owner_of(lease_id)
        if owner is None or not isinstance(body, dict):
            continue
        raw_keys = body.get("keys")
        keys: list[TiedKey] = []
        if isinstance(raw_keys, dict):
            for slot, raw in sorted(raw_keys.items()):
                tied = _tied(slot, raw)
                if tied is not None:
                    keys.append(tied)
        ttl_ms, holder = body.get("ttl_ms"), body.get("holder")
        live = body.get("owner") == owner and type(ttl_ms) is int and ttl_ms > 0 and isinstance(holder, str)
        if not live and not keys:
            continue
        ttl_s = ttl_ms / 1000 if live else 0.0  # type: ignore[operator]
        out[lease_id] = LeaseRecord(lease_id, owner, ttl_s, holder if live else "", tuple(keys), live)  # type: ignore[arg-type]
    return out


def successor(owner: str, reachable: Iterable[str]) -> str | None:
    """The node that ends ``owner``'s leases while ``owner`` is unreachable: the smallest id reachable."""
    return min((n for n in reachable if n != owner), default=None)


def still_tied(tied: TiedKey, registers: Iterable[tuple[Path, Iterable[tuple[str, int]]]]) -> bool:
    """Whether some leaf at or under the key still holds the write that tied it.

    ``registers`` are the (leaf path, dots of its versions) at and under
    ``tied.path``. A key overwritten since by someone else is untied: ending
    the lease leaves it alone.
    """
    dot = (tied.origin, tied.seq)
    return any(dot in dots for _, dots in registers)


class ExpiryIndex:
    """Which leases this node must end, and when: deadlines in a sorted index.

    Feed it the tree's records (:meth:`adopt`), keepalives it hears as owner
    (:meth:`heard`), and the peers it reaches (:meth:`set_live`); ask
    :meth:`due` at a time for the leases to end and :meth:`next_deadline_s`
    for when to ask again. Times are seconds on one monotonic clock.
    """

    def __init__(self, me: str, *, grace_s: float) -> None:
        self.me = me
        self.grace_s = grace_s
        self.records: dict[str, LeaseRecord] = {}
        self._heard: dict[str, float] = {}
        self._pinned: set[str] = set()
        self._live: frozenset[str] = frozenset()
        self._down_since: dict[str, float] = {}
        self._seen_at: dict[str, float] = {}
        self._ending: set[str] = set()
        self._index: SortedList = SortedList()
        self._entry: dict[str, tuple[float, str]] = {}

    # ---------------------------------------------------------------- inputs

    def adopt(self, records: Mapping[str, LeaseRecord], now_s: float) -> list[str]:
        """Take the tree's current records; return the live leases that were there and are gone.

        A lease seen for the first time counts as heard now (its owner gives
        its holder a full ttl after a restart).
        """
        gone = [lid for lid, old in self.records.items() if old.live and (lid not in records or not records[lid].live)]
        for lid in list(self.records):
            if lid not in records:
                self._forget(lid)
        for lid, rec in records.items():
            if lid not in self.records:
                self._seen_at[lid] = now_s
                if rec.owner == self.me and rec.live:
                    self._heard[lid] = now_s
                if rec.owner != self.me and rec.owner not in self._live:
                    self._down_since.setdefault(rec.owner, now_s)
            self.records[lid] = rec
            if not rec.live:
                self._ending.discard(lid)  # ended elsewhere, or key entries left: sweep them
            self._reindex(lid)
        return gone

    def add(self, record: LeaseRecord, now_s: float, *, pinned: bool = False) -> None:
        """A lease this node just granted (before the tree is scanned again)."""
        lid = record.lease_id
        self.records[lid] = record
        self._seen_at[lid] = now_s
        self._heard[lid] = now_s
        if pinned:
            self._pinned.add(lid)
        self._reindex(lid)

    def tie(self, lease_id: str, tied: TiedKey) -> None:
        """This node just tied a key to the lease (before the tree is scanned again)."""
        rec = self.records.get(lease_id)
        if rec is not None:
            keys = (*(k for k in rec.keys if k.slot != tied.slot), tied)
            self.records[lease_id] = attrs.evolve(rec, keys=keys)

    def heard(self, lease_id: str, now_s: float) -> None:
        """The holder of a lease this node owns kept it alive at ``now_s``."""
        if lease_id in self.records and self.records[lease_id].owner == self.me:
            self._heard[lease_id] = max(now_s, self._heard.get(lease_id, now_s))
            self._reindex(lease_id)

    def unpin(self, lease_id: str, now_s: float) -> None:
        """A pinned lease (held by this node itself) now runs on its ttl from ``now_s``."""
        if lease_id in self._pinned:
            self._pinned.discard(lease_id)
            self.heard(lease_id, now_s)

    def set_live(self, live: Iterable[str], now_s: float, last_seen_s: Mapping[str, float] | None = None) -> None:
        """The peers this node reaches now (itself excluded); ``last_seen_s``: when each was last
        heard from (a peer that left counts as unreachable since then; default ``now_s``)."""
        new = frozenset(live) - {self.me}
        if new == self._live:
            return
        seen = last_seen_s or {}
        for node in self._live - new:
            self._down_since[node] = min(now_s, seen.get(node, now_s))
        for node in new:
            self._down_since.pop(node, None)
        self._live = new
        for lid in self.records:
            self._reindex(lid)

    def end(self, lease_id: str) -> None:
        """This node is ending the lease now (revoke, or :meth:`due` returned it)."""
        self._ending.add(lease_id)
        self._reindex(lease_id)

    # --------------------------------------------------------------- queries

    def expirer(self, lease_id: str) -> str | None:
        """The node that decides this lease's end now, as this node sees the cluster."""
        rec = self.records.get(lease_id)
        return None if rec is None else self.expirer_for(rec.owner)

    def expirer_for(self, owner: str) -> str | None:
        """The node that decides the end of ``owner``'s leases now: the owner while reachable, else its successor."""
        if owner == self.me or owner in self._live:
            return owner
        return successor(owner, self._live | {self.me})

    def deadline_s(self, lease_id: str) -> float | None:
        """When this node ends the lease (None: not this node, or not now decidable)."""
        rec = self.records.get(lease_id)
        if rec is None or lease_id in self._ending or self.expirer(lease_id) != self.me:
            return None
        if not rec.live:
            return self._seen_at.get(lease_id, 0.0)
        if rec.owner == self.me:
            if lease_id in self._pinned:
                return None
            return self._heard.get(lease_id, self._seen_at.get(lease_id, 0.0)) + rec.ttl_s
        down = self._down_since.get(rec.owner, self._seen_at.get(lease_id, 0.0))
        return down + rec.ttl_s + self.grace_s

    def due(self, now_s: float) -> list[str]:
        """The leases this node must end now, earliest deadline first; each is marked ending."""
        out: list[str] = []
        index = self._index
        while index and index[0][0] <= now_s:
            _, lid = index[0]
            out.append(lid)
            self.end(lid)
        return out

    def is_ending(self, lease_id: str) -> bool:
        """Whether this node is ending the lease (:meth:`end` or :meth:`due` said so)."""
        return lease_id in self._ending

    def next_deadline_s(self) -> float | None:
        return self._index[0][0] if self._index else None

    def remaining_s(self, lease_id: str, now_s: float) -> float | None:
        """Seconds until this node ends a lease it owns (None: pinned, or not its to end)."""
        deadline = self.deadline_s(lease_id)
        return None if deadline is None else max(0.0, deadline - now_s)

    def __len__(self) -> int:
        return sum(1 for r in self.records.values() if r.live)

    def owned(self) -> int:
        """The live leases this node granted."""
        me = self.me
        return sum(1 for r in self.records.values() if r.live and r.owner == me)

    # --------------------------------------------------------------- private

    def _reindex(self, lid: str) -> None:
        old = self._entry.pop(lid, None)
        if old is not None:
            self._index.remove(old)
        deadline = self.deadline_s(lid)
        if deadline is not None:
            entry = (deadline, lid)
            self._entry[lid] = entry
            self._index.add(entry)

    def _forget(self, lid: str) -> None:
        old = self._entry.pop(lid, None)
        if old is not None:
            self._index.remove(old)
        self.records.pop(lid, None)
        self._heard.pop(lid, None)
        self._pinned.discard(lid)
        self._seen_at.pop(lid, None)
        self._ending.discard(lid)
