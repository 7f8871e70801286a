"""Gap-free watch resume: the node's change journal and the resume tokens that point into it.

Every change the node publishes to watches is also kept in a bounded journal,
in the order the node applied it. A change is named by the op that caused it
and its index among that op's changes: ``(origin, seq, index)`` (a subtree
write changes many leaves with one op). A resume token is that name plus the
node's identity::

    "r1." + base64url(json([data_id, node_id, origin, seq, index]))

``data_id`` is random per data folder (kept in the store's meta, so it
survives restarts; an in-memory node draws a new one each start), so a token
from another cluster, another node or a data folder made afresh is refused
(:class:`~statesync.errors.BadResumeToken`) instead of being read against a
log it does not belong to.

Why a position in the op log and not a version vector: one name per change is
small (tens of bytes an event), answers "what came after it" with one dict
look-up, and stays valid across a restart, because a durable node rebuilds the
journal on start by replaying the ops its store logged after the last
checkpoint over that checkpoint, in the order they were logged (the order they
were applied), so the same ops make the same changes with the same names.

A token is covered while the journal still holds its change. It is not when
the journal dropped it: past ``watch_resume_events_max`` changes, or, after a
restart, when it was before the last checkpoint (``checkpoint_ops``). Then the
watch begins with one ``lagged`` event carrying the current subtree. The
token of a state with no change yet (``origin`` empty) is covered while the
journal has dropped nothing since the empty tree.
"""

from __future__ import annotations

import base64
import binascii
import collections
import itertools
import json
import secrets
from collections.abc import Mapping
from typing import Final

from statesync.core import ABSENT, Change, Path, validate_value
from statesync.errors import BadResumeToken
from statesync.node._watch import EventKind, WatchEvent

TOKEN_PREFIX: Final = "r1."
TOKEN_CHARS_MAX: Final = 4096
"""A longer token is refused unread."""
DATA_ID_META: Final = "watch_data_id"
"""The store meta key holding the data folder's random identity."""

Key = tuple[str, int, int]
"""A change's name: the op's origin and seq, and the change's index among the op's changes."""


def new_data_id() -> str:
    return secrets.token_hex(8)


def encode_token(data_id: str, node_id: str, key: Key) -> str:
    raw = json.dumps([data_id, node_id, *key], separators=(",", ":")).encode()
    return TOKEN_PREFIX + base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def decode_token(token: object) -> tuple[str, str, Key]:
    """``(data_id, node_id, key)`` of a token; BadResumeToken when it is not one."""
    garbled = BadResumeToken(
        "the resume token is garbled (not one this version of statesync made); "
        "pass the `resume` of an event exactly as it was delivered, or watch without it"
    )
    if not isinstance(token, str) or not token.startswith(TOKEN_PREFIX) or len(token) > TOKEN_CHARS_MAX:
        raise garbled
    body = token[len(TOKEN_PREFIX) :]
    try:
        fields = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError) as exc:
        raise garbled from exc
    if (
        not isinstance(fields, list)
        or len(fields) != 5
        or not all(isinstance(f, str) for f in fields[:3])
        or not all(type(f) is int and f >= 0 for f in fields[3:])
    ):
        raise garbled
    data_id, node_id, origin, seq, index = fields
    return data_id, node_id, (origin, seq, index)


class Journal:
    """The last ``events_max`` changes a node published, by name; see the module doc.

    ``low``: per origin, the seq through which the ops are not in the journal
    (the checkpoint it was rebuilt from).
    """

    def __init__(
        self, data_id: str, node_id: str, events_max: int, low: Mapping[str, int], bytes_max: int = 64 << 20
    ) -> None:
        self.data_id = data_id
        self.node_id = node_id
        self.events_max = events_max
        self.bytes_max = bytes_max
        """Bound on the values the journal keeps (each change's new and old value, estimated):
        a typed text's change holds the whole text, so a count bound alone is no bound."""
        self.bytes = 0
        self._entries: collections.deque[tuple[Change, int, int]] = collections.deque()
        self._first = 0
        """Absolute position of ``_entries[0]``."""
        self._pos: dict[Key, int] = {}
        self.low: dict[str, int] = {o: n for o, n in low.items() if n > 0}
        self._last: Key = ("", 0, 0)

    def __len__(self) -> int:
        return len(self._entries)

    def token(self, origin: str, seq: int, index: int) -> str:
        return encode_token(self.data_id, self.node_id, (origin, seq, index))

    def position(self) -> str:
        """The token of the current state: the last change recorded."""
        return encode_token(self.data_id, self.node_id, self._last)

    def record(self, changes: list[Change]) -> list[int]:
        """Keep ``changes`` (in order); each one's index within its op, for its token.

        An op's changes come together, so the index is one more than the last
        change's when it has the same op, else 0 (a name already taken, as a
        snapshot install's changes may repeat an op, takes the next free index).
        """
        if not changes:
            return []
        entries, pos = self._entries, self._pos
        indexes: list[int] = []
        at = self._first + len(entries)
        origin, seq, index = self._last
        for change in changes:
            if change.seq == seq and change.origin == origin:
                index += 1
            else:
                origin, seq, index = change.origin, change.seq, 0
            key = (origin, seq, index)
            while key in pos:
                index += 1
                key = (origin, seq, index)
            pos[key] = at
            size = _change_bytes(change)
            self.bytes += size
            entries.append((change, index, size))
            indexes.append(index)
            at += 1
        self._last = (origin, seq, index)
        for _ in range(len(entries) - self.events_max):
            self._evict()
        while self.bytes > self.bytes_max and entries:
            self._evict()
        return indexes

    def _evict(self) -> None:
        change, index, size = self._entries.popleft()
        self.bytes -= size
        key = (change.origin, change.seq, index)
        if self._pos.get(key) == self._first:
            del self._pos[key]
        self._first += 1
        if change.seq > self.low.get(change.origin, 0):
            self.low[change.origin] = change.seq

    def after(self, token: object, prefix: Path, applied: Mapping[str, int]) -> list[WatchEvent] | None:
        """The changes under ``prefix`` after ``token``'s, as events; None when the journal no
        longer holds them (lagged). BadResumeToken for a token of another node or data folder,
        or one naming a write this node never applied."""
        data_id, node_id, key = decode_token(token)
        if node_id != self.node_id:
            raise BadResumeToken(
                f"the resume token is from node {node_id[:100]!r}, this is node {self.node_id!r}; "
                "resume on the node that gave it, or watch without it"
            )
        origin, seq, _ = key
        if data_id != self.data_id or (origin and seq > applied.get(origin, 0)):
            raise BadResumeToken(
                f"the resume token is from another cluster or an earlier data folder of node {self.node_id!r} "
                "(it names a state this node never had); watch without it"
            )
        if not origin:
            if self.low or self._first:
                return None
            start = 0
        else:
            at = self._pos.get(key)
            if at is None:
                return None
            start = at - self._first + 1
        depth = len(prefix)
        out: list[WatchEvent] = []
        for change, index, _ in itertools.islice(self._entries, start, None):
            path = change.path
            if path[:depth] != prefix:
                continue
            kind: EventKind = "delete" if change.new is ABSENT else "put"
            resume = self.token(change.origin, change.seq, index)
            out.append(WatchEvent(kind, path, change.new, change.old, change.origin, change.seq, resume))
        return out


_ENTRY_BYTES: Final = 64
"""What a journal entry costs besides its values (the change, the index, the position)."""


def _change_bytes(change: Change) -> int:
    return _ENTRY_BYTES + _value_bytes(change.new) + _value_bytes(change.old)


def _value_bytes(value: object) -> int:
    if value is ABSENT or value is None:
        return 0
    if isinstance(value, str | bytes):
        return len(value)
    return validate_value(value)
