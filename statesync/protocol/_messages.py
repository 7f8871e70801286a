"""The client protocol's messages: one request class and one reply class per op.

A request travels as a dict, ``{"op": <OP>, <field>: ..., ...}``; a reply as
``{"ok": True, <field>: ...}`` or an error reply (see :mod:`._codes`). Paths
travel in text form (``a.b\\.c``); a request may also give one as a list of
segments. :mod:`._codec` turns the dicts into these classes and back.
"""

from __future__ import annotations

import reprlib
from typing import Any, ClassVar, Final, TypeAlias

import attrs

from statesync.core import AckSpec, Path, Value
from statesync.errors import BadRequest

PROTOCOL: Final = 1
"""The version of the client protocol; ``hello`` checks it. The one definition."""

Ack: TypeAlias = AckSpec
"""A write concern: ``"local"``, ``"all"`` or a number of peers (0 or more); the core's ``AckSpec``."""


def check_ack(ack: object) -> Ack:
    """``ack`` as a write concern, or BadRequest naming the field. The one ack validation."""
    if ack == "local":
        return "local"
    if ack == "all":
        return "all"
    if type(ack) is int and ack >= 0:
        return ack
    raise BadRequest(f"ack = {reprlib.repr(ack)}; use 'local', 'all' or a number of peers")


def check_timeout(timeout_s: object, field: str = "timeout_s") -> float | None:
    """A positive number of seconds (or None), or BadRequest naming the field."""
    if timeout_s is None:
        return None
    if type(timeout_s) in (int, float) and timeout_s > 0:  # type: ignore[operator]
        return float(timeout_s)  # type: ignore[arg-type]
    raise BadRequest(f"{field} = {reprlib.repr(timeout_s)} must be a positive number of seconds")


# ----------------------------------------------------------------- requests


CLIENT_ID_CHARS: Final = frozenset("0123456789abcdef")
CLIENT_ID_LEN_MIN: Final = 16
CLIENT_ID_LEN_MAX: Final = 64
KEY_SEQ_MAX: Final = (1 << 63) - 1


@attrs.frozen
class IdemKey:
    """A write's idempotency key: the client's id (16-64 lowercase hex digits, random) and
    its sequence number (1 or more). On the wire ``[client, seq]``.

    A node that already carried out a write with this key answers a retry with
    the original receipt instead of applying it again.
    """

    client: str
    seq: int


def check_key(raw: object) -> IdemKey:
    """``raw`` (``[client, seq]``) as an idempotency key, or BadRequest naming what is wrong."""
    if not isinstance(raw, list | tuple) or len(raw) != 2:
        raise BadRequest(f"key = {reprlib.repr(raw)}: an idempotency key is [client_id, seq]")
    client, seq = raw
    if (
        not isinstance(client, str)
        or not CLIENT_ID_LEN_MIN <= len(client) <= CLIENT_ID_LEN_MAX
        or not CLIENT_ID_CHARS.issuperset(client)
    ):
        raise BadRequest(
            f"key: the client id {reprlib.repr(client)} must be {CLIENT_ID_LEN_MIN}-{CLIENT_ID_LEN_MAX} lowercase hex digits"
        )
    if type(seq) is not int or not 1 <= seq <= KEY_SEQ_MAX:
        raise BadRequest(f"key: the sequence number {reprlib.repr(seq)} must be an integer from 1 to 2**63-1")
    return IdemKey(client, seq)


@attrs.frozen
class _Write:
    """The write concern every write carries (keyword-only, after the write's own fields),
    and its idempotency key (None: the node does not deduplicate it).

    Checked where a request enters: by :func:`decode_request` on the node, by
    :func:`check_ack` / :func:`check_timeout` in a client before it builds one.
    """

    ack: Ack = attrs.field(default="local", kw_only=True)
    timeout_s: float | None = attrs.field(default=None, kw_only=True)
    key: IdemKey | None = attrs.field(default=None, kw_only=True)


@attrs.frozen
class Hello:
    """Open a session: the client's protocol version. Answered with :class:`HelloReply`."""

    OP: ClassVar[str] = "hello"
    protocol: int


@attrs.frozen
class Get:
    """Read the value (a dict for a subtree) at ``path``: :class:`GetReply`, or ``too_large``."""

    OP: ClassVar[str] = "get"
    path: Path = ()


@attrs.frozen
class Set(_Write):
    """Write ``value`` at ``path`` (a dict writes a subtree): :class:`WriteReply`."""

    OP: ClassVar[str] = "set"
    path: Path
    value: Value
    lease: LeaseRef | None = attrs.field(default=None, kw_only=True)
    def touched(self) -> list[tuple[Path, bool]]:
        """The paths written, each with whether it is a put (for access checks)."""
        return [(self.path, True)]


@attrs.frozen
class SetMany(_Write):
    """Several writes in one transaction, one round of acks: :class:`SetManyReply`."""

    OP: ClassVar[str] = "set_many"
    items: tuple[tuple[Path, Value], ...]
    def touched(self) -> list[tuple[Path, bool]]:
        return [(path, True) for path, _ in self.items]


@attrs.frozen
class Delete(_Write):
    """Remove ``path`` and everything beneath it: :class:`WriteReply`."""

    OP: ClassVar[str] = "delete"
    path: Path
    def touched(self) -> list[tuple[Path, bool]]:
        return [(self.path, False)]


@attrs.frozen
class Conflicts:
    """The concurrent versions of the leaf at ``path``: :class:`ConflictsReply`."""

    OP: ClassVar[str] = "conflicts"
    path: Path = ()


@attrs.frozen
class Status:
    """The node's status and configuration: :class:`StatusReply`."""

    OP: ClassVar[str] = "status"


@attrs.frozen
class Sync:
    """Run an anti-entropy round now, waiting up to ``timeout_s`` (default 10): :class:`SyncReply`."""

    OP: ClassVar[str] = "sync"
    timeout_s: float | None = None


class _FaultInjection:
    """An admin op: fault injection for demos and tests (:data:`ADMIN_OPS`)."""


@attrs.frozen
class Cut(_FaultInjection):
    """Fault injection: drop all traffic with ``peer`` until healed: :class:`Empty`."""

    OP: ClassVar[str] = "cut"
    peer: str


@attrs.frozen
class Heal(_FaultInjection):
    """Undo ``cut`` for ``peer`` (None: every peer): :class:`Empty`."""

    OP: ClassVar[str] = "heal"
    peer: str | None = None


@attrs.frozen
class Watch:
    """Stream opening: changes under ``prefix``, after its value when ``initial``."""

    OP: ClassVar[str] = "watch"
    prefix: Path = ()
    initial: bool = True
    resume: str | None = None
    """A resume token of an event (or ``ready``/``lagged``) this watch delivered before:
    the node sends ``ready`` with ``resumed`` and then exactly the changes after it."""


@attrs.frozen
class Snapshot:
    """Stream opening: the subtree at ``prefix``, in leaf chunks when large."""

    OP: ClassVar[str] = "snapshot"
    prefix: Path = ()


# ------------------------------------------------------------ typed edits


@attrs.frozen
class _TypedEdit(_Write):
    """An edit of the typed value at ``path`` (see ``docs/types.md``): :class:`WriteReply`.

    ``edit()`` names it for the node: (type, action, the fields named by ``ARGS``).
    """

    TYPE: ClassVar[str]
    ACTION: ClassVar[str]
    ARGS: ClassVar[tuple[str, ...]]
    path: Path

    def touched(self) -> list[tuple[Path, bool]]:
        return [(self.path, True)]

    def edit(self) -> tuple[str, str, tuple[Any, ...]]:
        return self.TYPE, self.ACTION, tuple(getattr(self, name) for name in self.ARGS)


@attrs.frozen
class TextInsert(_TypedEdit):
    """Insert ``text`` at code point ``pos`` of the text at ``path`` (None: at its end, as the node sees it)."""

    OP: ClassVar[str] = "text_insert"
    TYPE, ACTION, ARGS = "text", "insert", ("pos", "text")
    pos: int | None
    text: str


@attrs.frozen
class TextDelete(_TypedEdit):
    """Delete ``n`` code points from ``pos`` of the text at ``path``.

    ``n`` is 1 or more and the range must lie inside the text (else ``invalid_operation``).
    """

    OP: ClassVar[str] = "text_delete"
    TYPE, ACTION, ARGS = "text", "delete", ("pos", "n")
    pos: int
    n: int


@attrs.frozen
class ListInsert(_TypedEdit):
    """Insert the list ``values`` so the first lands at index ``pos`` (None: at the end, as the node sees it)."""

    OP: ClassVar[str] = "list_insert"
    TYPE, ACTION, ARGS = "list", "insert", ("pos", "values")
    pos: int | None
    values: Value

    def edit(self) -> tuple[str, str, tuple[Any, ...]]:
        if not isinstance(self.values, list):
            raise BadRequest(f"list_insert: values must be a list of JSON values, not {type(self.values).__name__}")
        return "list", "append" if self.pos is None else "insert", (self.pos, self.values)


@attrs.frozen
class ListDelete(_TypedEdit):
    """Delete ``n`` items from index ``pos`` of the list at ``path``.

    ``n`` (default 1) is 1 or more and the range must lie inside the list.
    """

    OP: ClassVar[str] = "list_delete"
    TYPE, ACTION, ARGS = "list", "delete", ("pos", "n")
    pos: int
    n: int = 1


@attrs.frozen
class ListMove(_TypedEdit):
    """Move the item at index ``src`` of the list at ``path`` so that it lands at index ``dst``.

    Two concurrent moves of one item leave it in one place, once.
    """

    OP: ClassVar[str] = "list_move"
    TYPE, ACTION, ARGS = "list", "move", ("src", "dst")
    src: int
    dst: int


@attrs.frozen
class CounterAdd(_TypedEdit):
    """Add ``amount`` (negative allowed) to the counter at ``path``."""

    OP: ClassVar[str] = "counter_add"
    TYPE, ACTION, ARGS = "counter", "add", ("amount",)
    amount: int


@attrs.frozen
class AwAdd(_TypedEdit):
    """Add the JSON scalar ``element`` to the add-wins set at ``path``.

    Adding an element already there is allowed (it stays once).
    """

    OP: ClassVar[str] = "aw_add"
    TYPE, ACTION, ARGS = "awset", "add", ("element",)
    element: Value


@attrs.frozen
class AwRemove(_TypedEdit):
    """Remove ``element`` from the add-wins set at ``path`` (a concurrent add keeps it)."""

    OP: ClassVar[str] = "aw_remove"
    TYPE, ACTION, ARGS = "awset", "remove", ("element",)
    element: Value


TypedEdit: TypeAlias = TextInsert | TextDelete | ListInsert | ListDelete | ListMove | CounterAdd | AwAdd | AwRemove
TYPED_EDITS: Final[tuple[type[TypedEdit], ...]] = (
    TextInsert, TextDelete, ListInsert, ListDelete, ListMove, CounterAdd, AwAdd, AwRemove
)
"""The typed edits: writes (``WRITE_OPS``) answered with :class:`WriteReply`, keyed like ``set``."""


Request: TypeAlias = (
    "Hello | Get | Set | SetMany | Delete | Conflicts | Status | Sync | Cut | Heal | Watch | Snapshot | TypedEdit"
    " | LeaseGrant | LeaseKeepalive | LeaseRevoke"
)

REQUESTS: Final[dict[str, type[Request]]] = {
    cls.OP: cls for cls in (Hello, Get, Set, SetMany, Delete, Conflicts, Status, Sync, Cut, Heal, Watch, Snapshot, *TYPED_EDITS)
}
"""Every op, by name."""

STREAM_OPS: Final = frozenset({Watch.OP, Snapshot.OP})
"""Ops that open a stream port (the first message posted on a new port), not a request."""
READ_OPS: Final = frozenset({Hello.OP, Get.OP, Conflicts.OP, Status.OP, *STREAM_OPS})
"""Ops a ``read`` key may make."""
WRITE_OPS: Final = frozenset(
    {Set.OP, SetMany.OP, Delete.OP, *(cls.OP for cls in TYPED_EDITS), "lease_grant", "lease_keepalive", "lease_revoke"}
)
"""Ops that change the tree (a ``write`` key, within its prefixes)."""
ADMIN_OPS: Final = frozenset(cls.OP for cls in REQUESTS.values() if issubclass(cls, _FaultInjection))
"""Fault injection: a peer key or a write key without prefixes. (``sync`` needs a key that may write.)"""
RETRY_SAFE: Final = frozenset({Hello.OP, Get.OP, Conflicts.OP, Status.OP, Sync.OP, Cut.OP, Heal.OP})
"""Requests a client may send again when the connection died before the answer:
doing them twice is the same as doing them once. A write is not among them
(it may have been applied) unless it carries an idempotency ``key``: then the
node answers the retry with the original receipt (see :class:`IdemKey`)."""


# ------------------------------------------------------------------- replies


@attrs.frozen
class HelloReply:
    node_id: str
    protocol: int
    endpoints: list[str] = attrs.Factory(list)
    client_endpoints: list[str] = attrs.Factory(list)


@attrs.frozen
class GetReply:
    """``found`` False: nothing at the path (``value`` None)."""

    found: bool
    value: Value = None


@attrs.frozen
class ReceiptData:
    """A write's receipt on the wire: the path (text), its dot, timestamp and acknowledgers."""

    path: str
    origin: str
    seq: int
    hlc: int
    acked_by: list[str] = attrs.Factory(list)


@attrs.frozen
class WriteReply:
    receipt: ReceiptData


@attrs.frozen
class SetManyReply:
    receipts: tuple[ReceiptData, ...]


@attrs.frozen
class VersionData:
    """One concurrent version; ``omitted`` when its value was too large to include (then None)."""

    value: Value
    origin: str
    seq: int
    hlc: int
    omitted: bool = False


@attrs.frozen
class ConflictsReply:
    """``value`` is what a read returns (None for a subtree or when too large)."""

    versions: tuple[VersionData, ...]
    found: bool = False
    value: Value = None


@attrs.frozen
class StatusReply:
    status: dict[str, Any]


@attrs.frozen
class SyncReply:
    answered: bool


@attrs.frozen
class Empty:
    """The reply of ``cut`` and ``heal``: nothing but ``ok``."""


Reply: TypeAlias = (
    "HelloReply | GetReply | WriteReply | SetManyReply | ConflictsReply | StatusReply | SyncReply | Empty"
    " | LeaseReply"
)


# -------------------------------------------------------------------- leases


@attrs.frozen
class LeaseRef:
    """A lease as a request names it: its ``id`` (public: it is in the tree) and the
    ``token`` that proves its holder (secret: only the holder and a digest in the record)."""

    id: str
    token: str


@attrs.frozen
class LeaseGrant:
    """Grant a lease of ``ttl_s`` seconds owned by this node: :class:`LeaseReply`.

    ``client`` names the client (any stable string, e.g. a random id per client
    object); the node bounds the leases per client by it.
    """

    OP: ClassVar[str] = "lease_grant"
    ttl_s: float
    client: str = ""


@attrs.frozen
class _OnLease:
    """A request about one lease, naming it by :class:`LeaseRef`."""

    lease: LeaseRef


class LeaseKeepalive(_OnLease):
    """The holder is alive: the owner restarts the lease's ttl. :class:`LeaseReply` (token empty)."""

    OP: ClassVar[str] = "lease_keepalive"


class LeaseRevoke(_OnLease):
    """End the lease now; its keys are deleted on every replica: :class:`Empty`."""

    OP: ClassVar[str] = "lease_revoke"


@attrs.frozen
class LeaseReply:
    """A granted (or kept-alive) lease: its id, its holder's token (grant only) and its ttl."""

    id: str
    token: str
    ttl_s: float


LEASE_OPS: Final = frozenset({LeaseGrant.OP, LeaseKeepalive.OP, LeaseRevoke.OP})
"""The lease requests (write ops: a read key may not hold leases)."""
REQUESTS.update({cls.OP: cls for cls in (LeaseGrant, LeaseKeepalive, LeaseRevoke)})
