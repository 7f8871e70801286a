"""Leases and presence for the asyncio :class:`~statesync.aio.Client`: the blocking client's, awaitable.

``async with await client.lease(ttl_s=5) as lease`` (or ``lease = await
client.lease(...)`` and ``await lease.revoke()``); an asyncio task sends a
keepalive every ``ttl_s / 3`` until the lease is revoked, ends, or the client
closes. ``await client.presence(prefix, state)`` joins a room the same way.
The rules are the blocking client's (:mod:`statesync.client._lease`,
``docs/leases.md``).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from typing import TYPE_CHECKING, Any

from statesync import protocol
from statesync.client._lease import (
    CLOSE_REVOKE_TIMEOUT_S,
    KEEPALIVES_PER_TTL,
    LeaseBase,
    check_ttl,
    client_id,
)
from statesync.core import Path, PathLike, as_path
from statesync.errors import LeaseError, LeaseExpired, StatesyncError

if TYPE_CHECKING:
    from statesync.aio._client import Client
    from statesync.node._results import Receipt


class Lease(LeaseBase):
    """A lease held by an asyncio client: ``async with await client.lease(ttl_s=5) as lease``."""

    def __init__(self, client: Client, reply: protocol.LeaseReply) -> None:
        super().__init__(client, reply)
        self._client: Client = client
        self._task: asyncio.Task[None] | None = None

    async def keepalive(self) -> float:
        """Keep the lease alive now (the client also does it by itself); its ttl."""
        reply: protocol.LeaseReply = await self._client._do(self._client._calls.plain(protocol.LeaseKeepalive(self.check()), protocol.LeaseReply))
        return reply.ttl_s

    async def revoke(self, timeout_s: float | None = None) -> None:
        """End the lease now: its keys are deleted on every replica. Does nothing once it has ended."""
        if self.ended:
            return
        self._revoked = True
        if self._task is not None:
            self._task.cancel()
        self._client._leases.discard(self)
        with contextlib.suppress(LeaseError):
            await self._client._do(self._client._calls.plain(protocol.LeaseRevoke(self.ref), protocol.Empty, timeout_s))

    async def _keepalive(self) -> None:
        interval = self.ttl_s / KEEPALIVES_PER_TTL
        while not self.ended:
            await asyncio.sleep(interval)
            try:
                await self._client._do(self._client._calls.plain(protocol.LeaseKeepalive(self.ref), protocol.LeaseReply, interval))
            except LeaseError as exc:
                self.error = exc
                return
            except StatesyncError:
                continue  # the node is restarting or slow: the next one may get through

    async def __aenter__(self) -> Lease:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.revoke()


async def grant(client: Client, ttl_s: float) -> Lease:
    ttl = check_ttl(ttl_s)
    reply: protocol.LeaseReply = await client._do(client._calls.plain(protocol.LeaseGrant(ttl, client_id(client)), protocol.LeaseReply))
    lease = Lease(client, reply)
    lease._task = asyncio.get_running_loop().create_task(lease._keepalive())
    client._leases.add(lease)
    return lease


async def close_leases(leases: set[Lease]) -> None:
    """The client is closing: revoke its leases (best effort: a dead node lets them expire)."""
    for lease in list(leases):
        with contextlib.suppress(StatesyncError):
            await lease.revoke(CLOSE_REVOKE_TIMEOUT_S)


class Presence:
    """One participant under a prefix on a lease of its own: ``async with await client.presence(room, state)``."""

    def __init__(self, client: Client, prefix: PathLike, participant: str | None) -> None:
        self._client = client
        self.prefix: Path = as_path(prefix)
        self.participant = participant or secrets.token_hex(6)
        self.path: Path = (*self.prefix, self.participant)
        self.lease: Lease | None = None
        self.rejoins = 0
        """Times :meth:`update` found the lease ended and joined again."""

    async def join(self, state: Any, ttl_s: float) -> Presence:
        self.lease = await grant(self._client, ttl_s)
        await self.update(state)
        return self

    async def update(self, state: Any) -> Receipt:
        """Replace this participant's state; rejoins (a new lease) if its lease ended meanwhile."""
        assert self.lease is not None, "join() first"
        try:
            return await self._client.set(self.path, state, lease=self.lease)
        except LeaseExpired:
            self.lease = await grant(self._client, self.lease.ttl_s)
            self.rejoins += 1
            return await self._client.set(self.path, state, lease=self.lease)

    async def members(self) -> dict[str, Any]:
        """Every participant present under the prefix, by id, with its state."""
        value = await self._client.get(self.prefix, {})
        return value if isinstance(value, dict) else {}

    async def leave(self) -> None:
        if self.lease is not None:
            await self.lease.revoke()

    async def __aenter__(self) -> Presence:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.leave()
