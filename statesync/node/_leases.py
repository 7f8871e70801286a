"""Leases on a node: granting them, hearing their holders, and ending them on time.

The rule of who ends a lease and when is pure (:mod:`statesync.core._leases`);
this module carries it out on a running node:

- :meth:`LeaseManager.grant` writes the lease record (an ordinary replicated
  write under ``_statesync.leases``) and returns a :class:`Lease`;
- :meth:`LeaseManager.set` writes a key and ties it to the lease in one
  transaction (the key's put and the tie entry commit together);
- keepalives from the holder reach the owner (this node) in memory only: no
  write per keepalive;
- one task scans the lease records when the tree changed (cheap when it did
  not), tells the index which peers are up, and ends the leases the index says
  are due: it deletes every key still tied to the lease (one ordinary
  observed-remove delete each), then the record. A key overwritten since by a
  write that did not tie it is left alone.

Bounds: ``leases_max`` leases on a node, ``leases_per_client_max`` per client
(by the client id its grant names), ``lease_keys_max`` keys per lease; the
ids of leases ended here are remembered (the last ``ENDED_MAX``) so that their
holder gets :class:`LeaseExpired` rather than :class:`LeaseNotFound`.
"""

from __future__ import annotations

import collections
import logging
import random
import secrets
import time
from collections.abc import Generator
from typing import TYPE_CHECKING, Any, Final

import trio

from statesync.core import ABSENT, PathLike, Value, as_path, format_path
from statesync.core._leases import (
    LEASE_PREFIX,
    ExpiryIndex,
    LeaseRecord,
    TiedKey,
    grant_items,
    holder_digest,
    is_reserved,
    key_slot,
    make_lease_id,
    parse_leases,
    record_path,
    still_tied,
    tie_item,
)
from statesync.errors import (
    BadRequest,
    InvalidPath,
    LeaseExpired,
    LeaseNotFound,
    LeaseNotHeld,
    NodeClosedError,
    StatesyncError,
    TooManyLeases,
)

if TYPE_CHECKING:
    from statesync.core import AckSpec
    from statesync.node._node import Node
    from statesync.node._results import Receipt

log = logging.getLogger("statesync.node.leases")

TTL_MIN_S: Final = 0.1  # a lease lives between these many seconds
TTL_MAX_S: Final = 86_400.0
SCAN_INTERVAL_S: Final = 0.1  # how often the lease task looks at the tree (parsing only when it changed)
PARSE_COST_FACTOR: Final = 20.0  # the records are parsed again at most after this many times the last parse took
ENDED_MAX: Final = 10_000  # ended lease ids remembered, so that their holder hears LeaseExpired


def check_ttl(ttl_s: object) -> float:
    """A lease's ttl in seconds, or BadRequest naming the range."""
    if type(ttl_s) in (int, float) and TTL_MIN_S <= ttl_s <= TTL_MAX_S:  # type: ignore[operator]
        return float(ttl_s)  # type: ignore[arg-type]
    raise BadRequest(f"ttl_s = {ttl_s!r}: a lease lives between {TTL_MIN_S} and {TTL_MAX_S:g} seconds")


class Lease:
    """A lease: keys written with it (``node.set(path, v, lease=lease)``) are deleted
    on every replica when it ends.

    ``async with await node.lease(ttl_s=5) as lease`` or ``async with
    node.lease(ttl_s=5) as lease``: held while the block runs (a lease the node
    holds itself needs no keepalive), revoked when it ends. ``id`` is public
    (it is in the tree); ``token`` proves holding it and stays with the holder.
    """

    def __init__(self, manager: LeaseManager, lease_id: str, token: str, ttl_s: float) -> None:
        self._manager = manager
        self.id = lease_id
        self.token = token
        self.ttl_s = ttl_s

    def __repr__(self) -> str:
        return f"<Lease {self.id} ttl {self.ttl_s:g} s{' ended' if self.ended else ''}>"

    @property
    def ended(self) -> bool:
        """Whether the lease has ended (revoked, expired, or ended by another node)."""
        return self._manager.ended_reason(self.id) is not None

    def keepalive(self) -> float:
        """Tell the owner the holder is alive; the seconds left. LeaseExpired once it ended."""
        return self._manager.keepalive(self.id, self.token)

    async def revoke(self) -> None:
        """End the lease now: its keys are deleted everywhere. Revoking an ended lease does nothing."""
        if not self.ended:
            await self._manager.revoke(self.id, self.token)

    async def __aenter__(self) -> Lease:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.revoke()


class LeaseOpening:
    """What ``node.lease(...)`` returns: await it for the lease, or use it in ``async with``."""

    def __init__(self, manager: LeaseManager, ttl_s: float) -> None:
        self._manager = manager
        self._ttl_s = ttl_s
        self._lease: Lease | None = None

    def __await__(self) -> Generator[Any, None, Lease]:
        return self._manager.grant(self._ttl_s, pinned=True).__await__()

    async def __aenter__(self) -> Lease:
        self._lease = await self._manager.grant(self._ttl_s, pinned=True)
        return self._lease

    async def __aexit__(self, *exc: object) -> None:
        if self._lease is not None:
            await self._lease.revoke()


class LeaseManager:
    """A node's leases: the records, the expiry index, the task that ends them."""

    def __init__(self, node: Node) -> None:
        config = node.config
        self.node = node
        self.me = node.node_id
        self.leases_max: int = config.leases_max
        self.per_client_max: int = config.leases_per_client_max
        self.keys_max: int = config.lease_keys_max
        self.index = ExpiryIndex(self.me, grace_s=config.heartbeat_timeout_s)
        self.silent_s: float = config.heartbeat_timeout_s + 2 * config.sync_interval_s
        """A peer that sent nothing for this long is unreachable (its link may look up: a cut)."""
        self._client_of: dict[str, str] = {}
        self._per_client: collections.Counter[str] = collections.Counter()
        self._ended: collections.OrderedDict[str, str] = collections.OrderedDict()
        self._pinned: set[str] = set()
        self._wake = trio.Event()
        self._seen_total = -1
        self._parse_at = 0.0
        self._granting = 0
        self._sweeps: list[LeaseRecord] = []
        self.counters = {"granted": 0, "revoked": 0, "expired": 0, "ended_elsewhere": 0, "keys_deleted": 0}

    # ----------------------------------------------------------------- API

    async def grant(self, ttl_s: float, *, client: str = "", pinned: bool = False) -> Lease:
        """A new lease owned by this node; ``pinned``: held by the node itself (no keepalive)."""
        ttl = check_ttl(ttl_s)
        self._refresh()
        held = self.index.owned() + self._granting
        if held >= self.leases_max:
            raise TooManyLeases(f"node {self.me} holds {held} leases, its leases_max; revoke some or raise leases_max")
        if client and self._per_client[client] >= self.per_client_max:
            raise TooManyLeases(
                f"this client holds {self._per_client[client]} leases on node {self.me}, the "
                "leases_per_client_max; revoke some or raise leases_per_client_max"
            )
        token = secrets.token_hex(16)
        lease_id = make_lease_id(self.me, random.getrandbits(64))
        digest = holder_digest(token)
        if client:  # counted before the write's wait, so concurrent grants cannot pass the bounds
            self._client_of[lease_id] = client
            self._per_client[client] += 1
        self._granting += 1
        try:
            await self.node.set_many(grant_items(lease_id, self.me, ttl, digest))
        except BaseException:
            self._remember(lease_id, "its grant failed")
            raise
        finally:
            self._granting -= 1
        self.index.add(LeaseRecord(lease_id, self.me, ttl, digest), trio.current_time(), pinned=pinned)
        if pinned:
            self._pinned.add(lease_id)
        self.counters["granted"] += 1
        self._kick()
        return Lease(self, lease_id, token, ttl)

    def handle(self, lease_id: str, token: str) -> Lease:
        """The Lease a client names in a request (checked when used)."""
        self._refresh()
        rec = self.index.records.get(lease_id)
        return Lease(self, lease_id, token, rec.ttl_s if rec is not None else 0.0)

    def check(self, lease_id: str, token: str) -> LeaseRecord:
        """The record of a lease the caller holds; LeaseNotFound, LeaseExpired or LeaseNotHeld if not."""
        self._refresh()
        rec = self.index.records.get(lease_id)
        if rec is None or not rec.live or self.index.is_ending(lease_id):
            why = self._ended.get(lease_id)
            if why is not None or (rec is not None and not rec.live):
                raise LeaseExpired(
                    f"lease {lease_id} ended ({why or 'ended by another node'}); its keys were deleted: "
                    "grant a new lease and write them again"
                )
            raise LeaseNotFound(
                f"node {self.me} has no lease {lease_id!r}: it never existed, or ended before this node started; "
                "grant a new lease"
            )
        if not secrets.compare_digest(holder_digest(token), rec.holder):
            raise LeaseNotHeld(f"lease {lease_id} belongs to another holder; use a lease this client was granted")
        if rec.owner != self.me:
            raise LeaseNotHeld(
                f"lease {lease_id} was granted by node {rec.owner}, not {self.me}; keep it alive and write with it there"
            )
        return rec

    def keepalive(self, lease_id: str, token: str) -> float:
        rec = self.check(lease_id, token)
        self.index.heard(lease_id, trio.current_time())
        self._kick()
        return rec.ttl_s

    async def revoke(self, lease_id: str, token: str) -> None:
        self.check(lease_id, token)
        self.index.end(lease_id)
        self.counters["revoked"] += 1
        await self._end(lease_id, "revoked")

    async def set(
        self, path: PathLike, value: Value, lease_id: str, token: str, *, ack: AckSpec, timeout_s: float | None
    ) -> Receipt:
        """Write ``value`` at ``path`` and tie the key to the lease, in one transaction."""
        self.check(lease_id, token)
        p = as_path(path)
        if is_reserved(p):
            raise InvalidPath(f"{format_path(p) or '(the root)'} cannot be tied to a lease; write under a path of your own")
        keys_path = (*record_path(lease_id), "keys")
        replica = self.node.replica
        if replica.get((*keys_path, key_slot(p))) is ABSENT:  # a new key for this lease: count them
            tied = replica.get(keys_path)
            count = len(tied) if isinstance(tied, dict) else 0
            if count >= self.keys_max:
                raise TooManyLeases(
                    f"lease {lease_id} has {count} keys, the lease_keys_max; use another lease or raise lease_keys_max"
                )
        seq = self.node.replica.seq + 1  # the key's op comes first in the transaction
        receipts = await self.node.set_many([(p, value), tie_item(lease_id, p, self.me, seq)], ack=ack, timeout_s=timeout_s)
        if receipts[0].seq != seq:  # pragma: no cover  (set_many assigns seqs before it awaits)
            seq = receipts[0].seq
            await self.node.set_many([tie_item(lease_id, p, self.me, seq)])
        self.index.tie(lease_id, TiedKey(key_slot(p), p, self.me, seq))
        self.index.heard(lease_id, trio.current_time())
        return receipts[0]

    def ended_reason(self, lease_id: str) -> str | None:
        """Why a lease ended (None: it has not, as far as this node knows)."""
        why = self._ended.get(lease_id)
        if why is not None:
            return why
        rec = self.index.records.get(lease_id)
        return "ended by another node" if rec is None or not rec.live else None

    def status(self) -> dict[str, Any]:
        return {"held": len(self.index), "next_deadline_s": self.index.next_deadline_s(), **self.counters}

    # ------------------------------------------------------------ the task

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            now = trio.current_time()
            self._refresh()
            for lease_id in self.index.due(now):
                rec = self.index.records.get(lease_id)
                if rec is not None and rec.owner == self.me and rec.live:
                    why = f"expired: nothing heard from its holder for {rec.ttl_s:g} s"
                    self.counters["expired"] += 1
                elif rec is not None and rec.live:
                    why = f"ended by {self.me}: its owner {rec.owner} was unreachable past its ttl"
                    self.counters["expired"] += 1
                else:
                    why = "ended elsewhere; keys written with it since were deleted"
                try:
                    await self._end(lease_id, why)
                except NodeClosedError:
                    return
            while self._sweeps:
                await self._sweep(self._sweeps.pop())
            deadline = self.index.next_deadline_s()
            wait = SCAN_INTERVAL_S if deadline is None else min(SCAN_INTERVAL_S, deadline - trio.current_time())
            with trio.move_on_after(max(0.0, wait)):
                await self._wake.wait()
            if self._wake.is_set():
                self._wake = trio.Event()

    async def close(self) -> None:
        """The node is stopping: the leases it holds itself end (their holder closes)."""
        for lease_id in sorted(self._pinned):
            if self.ended_reason(lease_id) is None:
                self.index.end(lease_id)
                await self._end(lease_id, "its node closed")

    # ------------------------------------------------------------- private

    def _kick(self) -> None:
        self._wake.set()

    def _refresh(self) -> None:
        """Tell the index the peers up now, and the records if the tree changed.

        Parsing the records costs time in proportion to all leases and their
        keys, so it runs at most every ``PARSE_COST_FACTOR`` times its last
        cost (and every SCAN_INTERVAL_S): under steady writes the lease task
        stays a small share of the node's time. The leases this node grants
        are in the index at once; what others change is seen at the next parse.
        """
        now = trio.current_time()
        peers = self.node._rep.peers
        silent_s = self.silent_s
        live = [p for p, st in peers.items() if st.link is not None and now - st.last_seen_s <= silent_s]
        self.index.set_live(live, now, {p: st.last_seen_s for p, st in peers.items()})
        replica = self.node.replica
        total = sum(replica.vv.values())
        if total == self._seen_total or now < self._parse_at:
            return
        self._seen_total = total
        started = time.perf_counter()
        records = parse_leases(replica.get(LEASE_PREFIX))
        self._parse_at = now + PARSE_COST_FACTOR * (time.perf_counter() - started)
        before = self.index.records
        known = {lid: before[lid] for lid in before.keys() - records.keys() if before[lid].live}
        for lease_id in self.index.adopt(records, now):
            if lease_id not in self._ended:
                self.counters["ended_elsewhere"] += 1
                self._remember(lease_id, "ended by another node")
                old = known.get(lease_id)
                # its record went without its keys (deleted by hand, say): whoever decides its end sweeps them
                if old is not None and old.keys and self.index.expirer_for(old.owner) == self.me:
                    self._sweeps.append(old)
                    self._kick()

    def _remember(self, lease_id: str, why: str) -> None:
        self._ended[lease_id] = why
        while len(self._ended) > ENDED_MAX:
            self._ended.popitem(last=False)
        self._pinned.discard(lease_id)
        client = self._client_of.pop(lease_id, None)
        if client is not None:
            self._per_client[client] -= 1
            if self._per_client[client] <= 0:
                del self._per_client[client]

    async def _sweep(self, rec: LeaseRecord) -> None:
        """Delete the keys an ended lease's last known record tied, where they still hold its write."""
        try:
            deleted = await self._delete_tied(rec)
        except NodeClosedError:
            return
        self.counters["keys_deleted"] += deleted
        log.info("%s: lease %s ended elsewhere without its keys; %d keys deleted", self.me, rec.lease_id, deleted)

    async def _delete_tied(self, rec: LeaseRecord) -> int:
        tree = self.node.replica.tree
        deleted = 0
        for tied in rec.keys:
            registers = ((path, [(v.origin, v.seq) for v in versions]) for path, versions in tree.iter_registers(tied.path))
            if still_tied(tied, registers):
                await self.node.delete(tied.path)
                deleted += 1
        return deleted

    async def _end(self, lease_id: str, why: str) -> None:
        """Delete the keys still tied to the lease, then its record (each an ordinary delete)."""
        # the record as the tree holds it now (the index's copy may miss the latest tied keys)
        body = self.node.replica.get(record_path(lease_id))
        fresh = parse_leases({lease_id: body}).get(lease_id) if body is not ABSENT else None
        rec = fresh or self.index.records.get(lease_id)
        self._remember(lease_id, why)
        node = self.node
        deleted = 0 if rec is None else await self._delete_tied(rec)
        self.counters["keys_deleted"] += deleted
        try:
            await node.delete(record_path(lease_id))
        except StatesyncError:
            if not node._closing:
                raise
        log.info("%s: lease %s %s; %d keys deleted", self.me, lease_id, why, deleted)


class Presence:
    """One participant under a prefix on a lease the node holds: ``async with node.presence(room, state) as me``."""

    def __init__(self, manager: LeaseManager, prefix: PathLike, state: Value, participant: str | None, ttl_s: float) -> None:
        self._manager = manager
        self.prefix = as_path(prefix)
        self.participant = participant or secrets.token_hex(6)
        self.path = (*self.prefix, self.participant)
        self._state = state
        self._ttl_s = ttl_s
        self.lease: Lease | None = None
        self.rejoins = 0
        """Times :meth:`update` found the lease ended (the other side of a partition ended it) and joined again."""

    async def __aenter__(self) -> Presence:
        self.lease = await self._manager.grant(self._ttl_s, pinned=True)
        await self.update(self._state)
        return self

    async def update(self, state: Value) -> Receipt:
        """Replace this participant's state; rejoins (a new lease) if its lease ended meanwhile."""
        if self.lease is None:
            raise LeaseNotFound("this presence has not joined yet: use it in 'async with'")
        node = self._manager.node
        try:
            return await node.set(self.path, state, lease=self.lease)
        except LeaseExpired:
            self.lease = await self._manager.grant(self._ttl_s, pinned=True)
            self.rejoins += 1
            return await node.set(self.path, state, lease=self.lease)

    def members(self) -> dict[str, Value]:
        """Every participant present under the prefix, by id, with its state."""
        value = self._manager.node.get(self.prefix, {})
        return value if isinstance(value, dict) else {}

    async def __aexit__(self, *exc: object) -> None:
        if self.lease is not None:
            await self.lease.revoke()
