"""Leases and presence for the blocking :class:`~statesync.client.Client`.

``client.lease(ttl_s=5)`` grants a lease on the client's node and keeps it
alive from the client's background thread (a keepalive every ``ttl_s / 3``,
a trio task: no thread per lease) until :meth:`Lease.revoke`, the ``with``
block's end, or the client's close. Keys written with ``set(..., lease=lease)``
are deleted on every replica when it ends. If the node tells a keepalive the
lease is gone (it expired while this process was stopped or cut off, or the
other side of a partition ended it), the lease is marked ended and every use
raises :class:`~statesync.errors.LeaseExpired`: keys never come back by
themselves, write them again with a new lease.

``client.presence("room.lobby", {"name": "Ada"})`` is one participant's key
under a prefix, tied to a lease of its own: ``update(state)`` rewrites it,
``members()`` (or ``client.get(prefix)``) lists everyone present, and it
vanishes when the participant leaves or dies. See ``docs/leases.md``.
"""

from __future__ import annotations

import contextlib
import secrets
import weakref
from typing import TYPE_CHECKING, Any, Final

import trio

from statesync import protocol
from statesync.core import Path, PathLike, as_path
from statesync.errors import BadRequest, InvalidArgument, LeaseError, LeaseExpired, StatesyncError
from statesync.node._leases import check_ttl as node_check

if TYPE_CHECKING:
    from statesync.client._client import Client
    from statesync.node._results import Receipt

KEEPALIVES_PER_TTL: Final = 3
"""Keepalives sent per ttl: two may be lost before the lease expires."""
PRESENCE_TTL_S: Final = 10.0
"""A presence's default lease."""
CLOSE_REVOKE_TIMEOUT_S: Final = 1.0
"""Closing a client waits this long per lease for its revoke (a node that does not answer lets it expire)."""

_client_ids: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()
_open: weakref.WeakKeyDictionary[Any, set[Lease]] = weakref.WeakKeyDictionary()


def client_id(client: object) -> str:
    """A random id per client object: the node bounds the leases per client by it."""
    cid = _client_ids.get(client)
    if cid is None:
        cid = _client_ids[client] = secrets.token_hex(8)
    return cid


def check_ttl(ttl_s: object) -> float:
    """``ttl_s`` by the node's rule (0.1 to 86400 s), or InvalidArgument before anything is sent."""
    try:
        return node_check(ttl_s)
    except BadRequest as exc:
        raise InvalidArgument(str(exc)) from exc


class LeaseBase:
    """What the blocking and the asyncio clients' leases share: the reference and whether it ended."""

    def __init__(self, client: Any, reply: protocol.LeaseReply) -> None:
        self._client = client
        self.id = reply.id
        self.ttl_s = reply.ttl_s
        self.ref = protocol.LeaseRef(reply.id, reply.token)
        self.error: LeaseError | None = None
        """Why the lease ended, once it has (None while held)."""
        self._revoked = False

    def __repr__(self) -> str:
        return f"<{type(self).__module__.split('.')[1]} Lease {self.id} ttl {self.ttl_s:g} s{' ended' if self.ended else ''}>"

    @property
    def ended(self) -> bool:
        return self._revoked or self.error is not None

    def check(self) -> protocol.LeaseRef:
        """The lease's reference for a write; LeaseExpired if it is known to have ended."""
        if self.error is not None:
            raise LeaseExpired(str(self.error))
        if self._revoked:
            raise LeaseExpired(f"lease {self.id} was revoked; its keys were deleted: grant a new lease")
        return self.ref


class Lease(LeaseBase):
    """A lease held by a blocking client: ``with client.lease(ttl_s=5) as lease``."""

    def __init__(self, client: Client, reply: protocol.LeaseReply) -> None:
        super().__init__(client, reply)
        self._client: Client = client
        self._scope: trio.CancelScope | None = None

    def keepalive(self) -> float:
        """Keep the lease alive now (the client also does it by itself); its ttl. LeaseExpired once it ended."""
        reply: protocol.LeaseReply = self._client._do(self._client._calls.plain(protocol.LeaseKeepalive(self.check()), protocol.LeaseReply))
        return reply.ttl_s

    def revoke(self, timeout_s: float | None = None) -> None:
        """End the lease now: its keys are deleted on every replica. Does nothing once it has ended."""
        if self.ended:
            return
        self._revoked = True
        self._stop_keepalive()
        _open.get(self._client, set()).discard(self)
        with contextlib.suppress(LeaseError):
            self._client._do(self._client._calls.plain(protocol.LeaseRevoke(self.ref), protocol.Empty, timeout_s))

    def _stop_keepalive(self) -> None:
        scope = self._scope
        loop = self._client._loop_obj
        if scope is not None and loop is not None and loop.token is not None:
            with contextlib.suppress(trio.RunFinishedError):
                loop.token.run_sync_soon(scope.cancel)

    async def _keepalive(self) -> None:
        """In the client's trio thread: a keepalive every ttl/3 until revoked or ended."""
        loop = self._client._loop_obj
        assert loop is not None
        interval = self.ttl_s / KEEPALIVES_PER_TTL
        with trio.CancelScope() as self._scope:
            while not self.ended:
                await trio.sleep(interval)
                try:
                    await loop.request(protocol.LeaseKeepalive(self.ref), protocol.LeaseReply, interval)
                except LeaseError as exc:
                    self.error = exc
                    return
                except StatesyncError:
                    continue  # the node is restarting or slow: the next one may get through

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, *exc: object) -> None:
        self.revoke()


def grant(client: Client, ttl_s: float) -> Lease:
    """A new lease on the client's node, kept alive from the client's thread."""
    ttl = check_ttl(ttl_s)
    reply: protocol.LeaseReply = client._do(client._calls.plain(protocol.LeaseGrant(ttl, client_id(client)), protocol.LeaseReply))
    lease = Lease(client, reply)
    loop = client._loop()
    loop.run(_start, loop, lease)
    _open.setdefault(client, set()).add(lease)
    return lease


async def _start(loop: Any, lease: Lease) -> None:
    loop._nursery.start_soon(lease._keepalive)


def close_leases(client: object) -> None:
    """The client is closing: its leases are revoked (best effort: a dead node lets them expire)."""
    for lease in list(_open.pop(client, ())):
        with contextlib.suppress(StatesyncError):
            lease.revoke(CLOSE_REVOKE_TIMEOUT_S)


class Presence:
    """One participant under a prefix, tied to its own lease: ``with client.presence(room, state) as me``."""

    def __init__(self, client: Client, prefix: PathLike, state: Any, *, participant: str | None, ttl_s: float) -> None:
        self._client = client
        self.prefix: Path = as_path(prefix)
        self.participant = participant or secrets.token_hex(6)
        self.path: Path = (*self.prefix, self.participant)
        self.lease = grant(client, ttl_s)
        self.rejoins = 0
        """Times :meth:`update` found the lease ended and joined again."""
        self.update(state)

    def update(self, state: Any) -> Receipt:
        """Replace this participant's state (a cursor, a status...).

        If its lease ended meanwhile (this process was stopped or cut off for
        longer than its ttl), it rejoins: a new lease, and the key written again.
        """
        try:
            return self._client.set(self.path, state, lease=self.lease)
        except LeaseExpired:
            self.lease = grant(self._client, self.lease.ttl_s)
            self.rejoins += 1
            return self._client.set(self.path, state, lease=self.lease)

    def members(self) -> dict[str, Any]:
        """Every participant present under the prefix, by id, with its state."""
        value = self._client.get(self.prefix, {})
        return value if isinstance(value, dict) else {}

    def leave(self) -> None:
        """Leave: the participant's key is deleted on every replica."""
        self.lease.revoke()

    def __enter__(self) -> Presence:
        return self

    def __exit__(self, *exc: object) -> None:
        self.leave()
