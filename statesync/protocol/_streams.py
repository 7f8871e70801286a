"""Streams of the client protocol: watch events and subtrees in leaf chunks.

A stream port carries one opening request (``watch`` or ``snapshot``) from
the client, then messages from the node, each a dict with a ``kind``:

- ``leaves``: ``{"kind": "leaves", "leaves": [[segments, value], ...]}``, a
  chunk of a large subtree (paths relative to the prefix);
- ``ready`` (watch) / ``end`` (snapshot) / ``lagged`` (watch): a subtree
  closing message, ``{"kind", "found", "value"}`` (plus ``path`` for
  ``lagged``). A small subtree travels inline in ``value``; a large one as
  ``leaves`` chunks first and then ``"value": None, "chunked": True`` with
  ``omitted`` (up to 100 leaf paths too large for any message) and
  ``omitted_count``;
- ``put`` / ``delete``: one change, ``{"kind", "path", "origin", "seq"}``
  and ``value`` / ``old`` when there is one (a key is left out where there is
  nothing: ``delete`` has no ``value``, the first ``put`` of a key no
  ``old``). One too large for a message loses ``old`` then ``value``, marked
  ``"old_omitted": True`` / ``"value_omitted": True`` (then null);
- ``closed``: the node is stopping (``reason``);
- ``error``: the stream was refused, ``{"kind": "error", "code", "error"}``.

Sizes are estimated (four bytes per character, the UTF-8 bound) and checked
exactly with the wire's encoder only when the estimate is large.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any, Final, Generic, Literal, TypeAlias, TypeVar

import attrs

from statesync import wire
from statesync.core import (
    ABSENT,
    AbsentType,
    Path,
    Value,
    as_path,
    format_path,
    iter_leaves,
    validate_value,
)
from statesync.errors import ProtocolError, TooLarge
from statesync.protocol._codes import error_from_reply

MESSAGE_BYTES_MAX: Final = 1_000_000
"""Largest message sent to a client: under the wire's 1 MiB limit on one payload
(``bin_bytes_max``), which the ports layer applies when it builds a frame."""
INLINE_BYTES_MAX: Final = 256 << 10
"""A subtree larger than this (estimated) travels as leaf chunks; ``get`` answers ``too_large``."""
CHUNK_BYTES: Final = 128 << 10
"""Estimated bytes of one ``leaves`` chunk."""
CHUNK_LEAVES_MAX: Final = 4096
"""Leaves in one ``leaves`` chunk."""
EXACT_ABOVE: Final = 64 << 10
"""Messages estimated above this are encoded once to learn their exact size."""
OMITTED_SHOWN_MAX: Final = 100
"""Paths of omitted leaves listed in a closing message (``omitted_count`` counts them all)."""


def estimate(value: Value) -> int:
    """A bound on the encoded size of a value: four bytes per character (UTF-8)."""
    return 4 * validate_value(value) + 16


def _path_cost(path: Path) -> int:
    return sum(4 * len(s) + 2 for s in path)


def tree_size(value: Value, limit: int) -> int:
    """The estimated encoded size of a subtree, counting up to just past ``limit``."""
    total = 0
    for path, leaf in iter_leaves(value):
        total += _path_cost(path) + estimate(leaf)
        if total > limit:
            break
    return total


def fits(msg: Mapping[str, Any], estimated: int) -> bool:
    """Whether ``msg`` encodes within MESSAGE_BYTES_MAX (checked exactly when the estimate is large)."""
    if estimated <= EXACT_ABOVE:
        return True
    try:
        return len(wire.encode_payload(dict(msg))) <= MESSAGE_BYTES_MAX
    except wire.DataCloneError:
        return False


def inline(value: Value) -> bool:
    """Whether ``value`` travels inline in one message (else as leaf chunks)."""
    if isinstance(value, dict):
        return tree_size(value, INLINE_BYTES_MAX) <= INLINE_BYTES_MAX
    return fits({"value": value}, estimate(value))


def tree_messages(value: Value | AbsentType, tail: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """The messages that carry ``value`` and then close with ``tail`` (``{"kind": ...}``)."""
    if value is ABSENT:
        yield {**tail, "found": False, "value": None}
        return
    if inline(value):
        yield {**tail, "found": True, "value": value}
        return
    chunk: list[Any] = []
    size = 0
    omitted: list[list[str]] = []
    for path, leaf in iter_leaves(value):
        cost = _path_cost(path) + estimate(leaf)
        if cost > CHUNK_BYTES and not fits({"leaves": [[list(path), leaf]]}, cost):
            omitted.append(list(path))  # one leaf over the message limit: cannot travel
            continue
        if chunk and (size + cost > CHUNK_BYTES or len(chunk) >= CHUNK_LEAVES_MAX):
            yield {"kind": "leaves", "leaves": chunk}
            chunk, size = [], 0
        chunk.append([list(path), leaf])
        size += cost
    if chunk:
        yield {"kind": "leaves", "leaves": chunk}
    yield {
        **tail,
        "found": True,
        "value": None,
        "chunked": True,
        "omitted": omitted[:OMITTED_SHOWN_MAX],
        "omitted_count": len(omitted),
    }


def change_message(
    kind: str,
    path: Path,
    value: Value | AbsentType,
    old: Value | AbsentType,
    *,
    origin: str,
    seq: int,
    resume: str = "",
    delta: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The message for one change, shrunk to fit: without ``old``, then without ``value``, if need be.

    ``resume``: the change's resume token, sent when not empty. A typed path's
    change carries its ``delta`` too (kept when ``old`` or ``value`` is dropped).
    """
    msg: dict[str, Any] = {"kind": kind, "path": format_path(path)}
    if resume:
        msg["resume"] = resume
    size = 0
    if delta is not None:
        msg["delta"] = delta
        size += estimate(delta)  # type: ignore[arg-type]
    if value is not ABSENT:
        msg["value"] = value
        size += estimate(value)
    if old is not ABSENT:
        msg["old"] = old
        size += estimate(old)
    msg["origin"] = origin
    msg["seq"] = seq
    if fits(msg, size):
        return msg
    if old is not ABSENT:
        msg["old"] = None
        msg["old_omitted"] = True
        if fits(msg, size - estimate(old)):
            return msg
    msg["value"] = None
    msg["value_omitted"] = True
    return msg


ChangeKind: TypeAlias = Literal["put", "delete"]


def decode_change(msg: Mapping[str, Any]) -> tuple[ChangeKind, Path, Value | AbsentType, Value | AbsentType, str, int]:
    """(kind, path, value, old, origin, seq) of a ``put``/``delete`` message; ProtocolError if malformed."""
    try:
        kind = msg["kind"]
        path = as_path(msg["path"])
        origin = msg.get("origin", "")
        seq = msg.get("seq", 0)
    except Exception as exc:
        raise ProtocolError(f"the node sent a change this client does not understand: {exc}") from exc
    if kind not in ("put", "delete") or not isinstance(origin, str) or type(seq) is not int:
        raise ProtocolError(f"the node sent a change this client does not understand: {dict(msg)!r:.200}")
    return ("put" if kind == "put" else "delete"), path, msg.get("value", ABSENT), msg.get("old", ABSENT), origin, seq


def decode_delta(msg: Mapping[str, Any]) -> list[dict[str, Any]] | None:
    """The ``delta`` of a change message (a typed path's), or None; ProtocolError if malformed."""
    delta = msg.get("delta")
    if delta is None:
        return None
    if not isinstance(delta, list) or not all(isinstance(op, dict) and len(op) == 1 for op in delta):
        raise ProtocolError(f"the node sent a change delta this client does not understand: {delta!r:.200}")
    return delta


def _assemble(leaves: list[tuple[Path, Value]]) -> Value:
    """Rebuild a subtree from its leaves (relative paths)."""
    root: dict[str, Value] = {}
    for path, value in leaves:
        if not path:
            return value
        node = root
        for seg in path[:-1]:
            child = node.setdefault(seg, {})
            if not isinstance(child, dict):
                raise ProtocolError(f"the node sent leaves beneath the leaf {format_path(path)!r}")
            node = child
        node[path[-1]] = value
    return root


class TreeReader:
    """Collects the ``leaves`` chunks of a subtree and reads its closing message."""

    def __init__(self) -> None:
        self.leaves: list[tuple[Path, Value]] = []

    def feed(self, msg: Mapping[str, Any]) -> bool:
        """Take ``msg`` if it is a ``leaves`` chunk (True); False for any other message."""
        if msg.get("kind") != "leaves":
            return False
        leaves = msg.get("leaves")
        if not isinstance(leaves, list):
            raise ProtocolError("the node sent a leaves chunk without a list of leaves")
        for item in leaves:
            if not isinstance(item, list) or len(item) != 2 or not isinstance(item[0], list):
                raise ProtocolError("the node sent a leaf this client does not understand")
            self.leaves.append((tuple(item[0]), item[1]))
        return True

    def value(self, msg: Mapping[str, Any]) -> Value | AbsentType:
        """The subtree a closing message completes (ABSENT: nothing there); TooLarge if leaves were omitted."""
        leaves, self.leaves = self.leaves, []
        count = msg.get("omitted_count")
        if count:
            shown = msg.get("omitted")
            paths = ", ".join(format_path(tuple(p)) for p in shown[:5]) if isinstance(shown, list) else ""
            raise TooLarge(
                f"{count} values under this path are over the client protocol's {MESSAGE_BYTES_MAX:,}-byte "
                f"message limit (for example {paths}); read them on the node itself"
            )
        if not msg.get("found"):
            return ABSENT
        if msg.get("chunked"):
            return _assemble(leaves)
        value: Value = msg.get("value")
        return value


@attrs.frozen
class Subtree:
    """A stream's closing message, read: ``kind`` is ``ready``, ``lagged`` or ``end``; ``value`` ABSENT for nothing."""

    kind: str
    value: Value | AbsentType
    resume: str = ""
    """The resume token of the state it carries (empty: the node sent none)."""
    resumed: bool = False
    """A ``ready`` that resumed a watch from a token (it carries no subtree)."""


@attrs.frozen
class Closed:
    """The node ended the stream (it is stopping); ``reason`` says why."""

    reason: str


E = TypeVar("E")


class StreamReader(Generic[E]):
    """Reads a stream port's messages, sans-IO: ``feed(msg)`` returns what a message completes.

    ``leaves`` chunks are collected and return None; a closing message returns
    the :class:`Subtree`; a change ``event(kind, path, value, old, origin,
    seq)`` (the caller's watch event type, ``value``/``old`` ABSENT where there
    is none, then, when it has them, the change's resume token and its typed ``delta``); ``closed`` a :class:`Closed`. An ``error`` message raises the
    error its code maps to (``prefix`` before the node's message); a kind this
    reader does not know (a newer node's) returns None.
    """

    def __init__(self, event: Callable[..., E], *, prefix: str = "") -> None:
        self._event = event
        self._tree = TreeReader()
        self._prefix = prefix

    def feed(self, msg: object) -> Subtree | Closed | E | None:
        if not isinstance(msg, Mapping):
            raise ProtocolError("the node sent a stream message that is not a dict")
        if self._tree.feed(msg):
            return None
        kind = msg.get("kind")
        if kind in ("put", "delete"):
            change = decode_change(msg)
            resume = msg.get("resume")
            change_token = resume if isinstance(resume, str) else ""
            delta = decode_delta(msg)
            if delta is not None:
                return self._event(*change, change_token, delta)
            return self._event(*change, change_token) if change_token else self._event(*change)
        if kind in ("ready", "lagged", "end"):
            token = msg.get("resume")
            value = ABSENT if msg.get("resumed") else self._tree.value(msg)
            return Subtree(str(kind), value, token if isinstance(token, str) else "", bool(msg.get("resumed")))
        if kind == "closed":
            return Closed(str(msg.get("reason", "")))
        if kind == "error":
            raise error_from_reply(msg, prefix=self._prefix)
        return None
