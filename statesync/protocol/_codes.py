"""Error codes of the client protocol: stable strings, one error class each.

An error reply is ``{"ok": False, "code": <ErrorCode>, "error": <one line>}``
plus the fields its code documents. The code, never a Python class name, is
the contract: a client maps it to the error class it raises with
:func:`error_from_reply`, the node maps an exception to it with
:func:`error_reply`.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any, Final

from statesync.errors import (
    AccessDenied,
    BadRequest,
    BadResumeToken,
    InvalidOperation,
    InvalidPath,
    InvalidValue,
    LeaseExpired,
    LeaseNotFound,
    LeaseNotHeld,
    NodeClosedError,
    NodeError,
    ProtocolMismatch,
    StatesyncError,
    StorageError,
    TooLarge,
    TooManyLeases,
    TooManyStreams,
    WriteConcernError,
)


class ErrorCode(enum.StrEnum):
    """Why the node refused or failed a request. Stable: new codes may be added, none renamed."""

    BAD_REQUEST = "bad_request"
    """The request does not follow the protocol (not a dict, unknown op, a field missing or of
    the wrong type or out of range); the message names the field. Fix the client."""
    PROTOCOL_MISMATCH = "protocol_mismatch"
    """``hello`` asked for a protocol version the node does not speak; ``protocol`` is the node's."""
    INVALID_PATH = "invalid_path"
    """A path is malformed or over a limit."""
    INVALID_VALUE = "invalid_value"
    """A value cannot be stored (its type, its size)."""
    TOO_LARGE = "too_large"
    """The answer does not fit in one message: read it with a ``snapshot`` stream."""
    WRITE_CONCERN = "write_concern"
    """The write is durable on the node but not acknowledged as asked in time; ``missing``
    lists the peers that did not answer, ``dot`` ``[origin, seq]`` names the write."""
    ACCESS_DENIED = "access_denied"
    """The client's key may not do this; nothing was changed."""
    TOO_MANY_STREAMS = "too_many_streams"
    """The node serves its maximum of watch and snapshot streams; close some."""
    NODE_CLOSED = "node_closed"
    """The node is stopping; connect again once it is back."""
    STORAGE = "storage"
    """The node's storage failed the request (disk full, read-only, I/O error)."""
    NODE_ERROR = "node_error"
    """Any other failure on the node; the message says what."""
    LEASE_NOT_FOUND = "lease_not_found"
    """No lease with this id on the node (never existed, or ended before the node started)."""
    LEASE_EXPIRED = "lease_expired"
    """The lease ended (revoked, expired, or ended by another node); its keys were deleted."""
    LEASE_NOT_HELD = "lease_not_held"
    """The lease is another holder's (the token does not match), or was granted by another node."""
    TOO_MANY_LEASES = "too_many_leases"
    """A lease bound is reached (``leases_max``, ``leases_per_client_max``, ``lease_keys_max``)."""
    BAD_RESUME = "bad_resume"
    """A watch's ``resume`` token is garbled or from another cluster, node or data folder;
    watch again without it."""
    INVALID_OPERATION = "invalid_operation"
    """A typed edit cannot apply where it was aimed (a position past the end, a map path...)."""


ERROR_CLASSES: Final[Mapping[ErrorCode, type[StatesyncError]]] = {
    ErrorCode.BAD_REQUEST: BadRequest,
    ErrorCode.PROTOCOL_MISMATCH: ProtocolMismatch,
    ErrorCode.INVALID_PATH: InvalidPath,
    ErrorCode.INVALID_VALUE: InvalidValue,
    ErrorCode.TOO_LARGE: TooLarge,
    ErrorCode.WRITE_CONCERN: WriteConcernError,
    ErrorCode.ACCESS_DENIED: AccessDenied,
    ErrorCode.TOO_MANY_STREAMS: TooManyStreams,
    ErrorCode.NODE_CLOSED: NodeClosedError,
    ErrorCode.STORAGE: StorageError,
    ErrorCode.NODE_ERROR: NodeError,
    ErrorCode.LEASE_NOT_FOUND: LeaseNotFound,
    ErrorCode.LEASE_EXPIRED: LeaseExpired,
    ErrorCode.LEASE_NOT_HELD: LeaseNotHeld,
    ErrorCode.TOO_MANY_LEASES: TooManyLeases,
    ErrorCode.BAD_RESUME: BadResumeToken,
    ErrorCode.INVALID_OPERATION: InvalidOperation,
}
"""The one mapping from a code to the error class a client raises for it."""

_BY_CLASS: Final = {cls: code for code, cls in ERROR_CLASSES.items()}

ERROR_CHARS_MAX: Final = 1000
"""An error reply's message is cut to this many characters (it may quote the request)."""


def _one_line(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= ERROR_CHARS_MAX else text[: ERROR_CHARS_MAX - 1] + "…"


def code_of(exc: BaseException) -> ErrorCode:
    """The code an exception travels as: its class's, or its nearest base's, else ``node_error``."""
    for cls in type(exc).__mro__:
        code = _BY_CLASS.get(cls)
        if code is not None:
            return code
    return ErrorCode.NODE_ERROR


def error_reply(exc: StatesyncError, **extra: Any) -> dict[str, Any]:
    """The error reply for ``exc``: one line of at most ERROR_CHARS_MAX characters (a write
    concern's ``missing`` and ``dot`` included)."""
    code = code_of(exc)
    reply: dict[str, Any] = {"ok": False, "code": code.value, "error": _one_line(str(exc)), **extra}
    if isinstance(exc, WriteConcernError):
        reply["missing"] = list(exc.missing)
        reply["dot"] = [exc.dot[0], exc.dot[1]]
    return reply


def _dot(raw: object) -> tuple[str, int]:
    if isinstance(raw, list) and len(raw) == 2 and isinstance(raw[0], str) and type(raw[1]) is int:
        return (raw[0], raw[1])
    return ("", 0)


def error_from_reply(reply: Mapping[str, Any], *, prefix: str = "") -> StatesyncError:
    """The error a client raises for an error reply (``prefix`` goes before the node's message).

    An unknown code (a newer node) becomes :class:`~statesync.errors.NodeError`.
    """
    text = prefix + str(reply.get("error", "the node failed the request and gave no reason"))
    try:
        code = ErrorCode(str(reply.get("code")))
    except ValueError:
        return NodeError(text)
    if code is ErrorCode.WRITE_CONCERN:
        missing = reply.get("missing")
        names = tuple(str(m) for m in missing) if isinstance(missing, list) else ()
        return WriteConcernError(text, missing=names, dot=_dot(reply.get("dot")))
    return ERROR_CLASSES[code](text)
