"""The idempotency keys of client writes a node remembers, so that a retried write is
answered with the original reply instead of being applied twice.

A client gives every write a key ``[client_id, seq]`` (:class:`statesync.protocol.IdemKey`)
and sends the same request again when its connection died before the answer.
:meth:`ClientKeys.once` carries a write out once per key: a retry that comes
while the first is still running waits for it; one that comes later gets the
reply the first got. A key is bound to

- the request it came with (a fingerprint of everything but the key): the same
  key with another write is refused with ``bad_request``;
- the client's CURVE public key, when the node has keys: another client using
  it is refused with ``access_denied``. Without keys, the client id (128 random
  bits) is what no other client can guess.

On a durable node the key travels to the store with the write's ops, in the same
transaction (:meth:`statesync.storage.SqliteStore.stage_client_key`): after a
crash a key is remembered exactly when its write is in the log. The reply
remembered there is the write's receipt without ``acked_by`` (which peers
acknowledged is not durable); on an in-memory node keys live as long as the
process. At most ``keys_max`` keys are kept, the oldest dropped first.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, Final

import attrs
import trio

from statesync import protocol
from statesync.errors import AccessDenied, BadRequest

KEYS_MAX: Final = 10_000
"""Keys a node remembers by default (``ClientService.keys_max``)."""

Row = tuple[str, int, "str | None", bytes, str]
"""(client, seq, owner, fingerprint, reply as JSON), as the store keeps them."""


def fingerprint(data: Mapping[str, Any]) -> bytes:
    """A digest of a write request without its key: the same write retried has the same one."""
    body = {k: v for k, v in data.items() if k != "key"}
    # repr of the decoded payload (plain types, in wire order) is stable across processes
    return hashlib.blake2b(repr(body).encode("utf-8", "backslashreplace"), digest_size=16).digest()


def row(key: protocol.IdemKey, owner: str | None, digest: bytes, reply: Mapping[str, Any]) -> Row:
    return (key.client, key.seq, owner, digest, json.dumps(reply, separators=(",", ":")))


@attrs.define
class _Entry:
    owner: str | None
    fingerprint: bytes
    reply: dict[str, Any] | None
    """None while the first request with the key is being carried out."""
    done: trio.Event | None = None


class ClientKeys:
    """The keys of recent client writes and their replies (bounded by ``keys_max``)."""

    def __init__(self, keys_max: int = KEYS_MAX, rows: Iterable[Row] = ()) -> None:
        self.keys_max = keys_max
        self._entries: OrderedDict[tuple[str, int], _Entry] = OrderedDict()
        self._running = 0
        for client, seq, owner, digest, reply in rows:
            self._entries[(client, seq)] = _Entry(owner, digest, json.loads(reply))
        self._evict()

    def __len__(self) -> int:
        return len(self._entries)

    def lookup(self, key: protocol.IdemKey, owner: str | None, digest: bytes) -> dict[str, Any] | Awaitable[dict[str, Any] | None] | None:
        """What is known of ``key``: its reply; an awaitable of it while its first request runs
        (None there if that one failed); None when unknown. Refuses a forged or reused key."""
        entry = self._entries.get((key.client, key.seq))
        if entry is None:
            return None
        if entry.owner != owner:
            raise AccessDenied(
                f"the idempotency key [{key.client[:8]}…, {key.seq}] belongs to another client; "
                "a client makes its own keys (statesync.Client does)"
            )
        if entry.fingerprint != digest:
            raise BadRequest(
                f"the idempotency key [{key.client[:8]}…, {key.seq}] was used for another write; "
                "give each write its own key (a new sequence number)"
            )
        if entry.reply is not None:
            return entry.reply
        return self._after(entry)

    @staticmethod
    async def _after(entry: _Entry) -> dict[str, Any] | None:
        assert entry.done is not None
        await entry.done.wait()
        return entry.reply

    def claim(self, key: protocol.IdemKey, owner: str | None, digest: bytes) -> _Entry:
        """Mark ``key`` as running (after :meth:`lookup` found nothing); then :meth:`finish` or :meth:`fail`."""
        if self._running >= self.keys_max:
            raise BadRequest(
                f"{self._running} writes with idempotency keys are in flight on this node, its maximum; "
                "wait for their answers before sending more"
            )
        entry = self._entries[(key.client, key.seq)] = _Entry(owner, digest, None, trio.Event())
        self._running += 1
        return entry

    def finish(self, key: protocol.IdemKey, entry: _Entry, reply: dict[str, Any] | None) -> None:
        """The write with ``key`` is answered with ``reply`` (None: it failed and is forgotten)."""
        self._running -= 1
        entry.reply = reply
        if reply is None and self._entries.get((key.client, key.seq)) is entry:
            del self._entries[(key.client, key.seq)]
        assert entry.done is not None
        entry.done.set()
        self._evict()

    async def once(
        self,
        key: protocol.IdemKey,
        owner: str | None,
        digest: bytes,
        run: Callable[[], Awaitable[dict[str, Any]]],
    ) -> dict[str, Any]:
        """The reply of the write with ``key``: ``run()``'s, the first time; the same reply after."""
        while (known := self.lookup(key, owner, digest)) is not None:
            if isinstance(known, dict):
                return known
            if (done := await known) is not None:
                return done
        # unknown, or its first request failed before it was carried out: this one runs
        entry = self.claim(key, owner, digest)
        reply = None
        try:
            reply = await run()
            return reply
        finally:
            self.finish(key, entry, reply)

    def _evict(self) -> None:
        entries = self._entries
        while len(entries) > self.keys_max and len(entries) > self._running:
            oldest = next(iter(entries))
            if entries[oldest].reply is None:
                entries.move_to_end(oldest)  # still running: drop the next oldest instead
            else:
                del entries[oldest]
