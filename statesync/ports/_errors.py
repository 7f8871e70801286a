"""Errors of the ports layer. All derive from :class:`PortsError`."""

from __future__ import annotations

from statesync.core import StatesyncError


class PortsError(StatesyncError):
    """Base class of every error the ports layer raises on purpose."""


class SocketClosed(PortsError):
    """A ZeroMQ socket was closed while a task used it or waited on it."""


class PortClosedError(PortsError):
    """The port is closed (by ``close()``, by its partner, or because its link died)."""


class PortTransferredError(PortsError):
    """The port object was transferred in a ``post_message``; the receiver now owns it."""


class PortQueueFull(PortsError):
    """A bounded queue on the way to the receiver is full; ``await port.wait_writable()``
    (or use ``await port.send(...)``) to wait for room."""


class MessageTooLarge(PortsError, ValueError):
    """An encoded payload exceeds ``PortOptions.payload_bytes_max``."""


class ConnectError(PortsError):
    """A connection could not be established (no handshake answer, refused, or closed)."""


class HandshakeFailed(ConnectError):
    """The listener turned the connection away at the handshake: with CURVE, it does not
    admit this side's key, the key given for it is wrong, or one side uses CURVE and
    the other does not; or it refused the ports handshake (protocol version, too many
    connections). The message says which and what to check. Retrying does not help."""


class InvalidKey(PortsError, ValueError):
    """A CURVE key (or an endpoint's ``?key=``) is not 40 Z85 characters of a valid key."""


class RequestTimeout(PortsError, TimeoutError):
    """No response arrived within the request's timeout; a late answer is dropped."""


class RequestFailed(PortsError):
    """The remote request handler raised or there was no handler; ``remote_error`` says what."""

    def __init__(self, message: str, *, remote_error: str) -> None:
        super().__init__(message)
        self.remote_error = remote_error


class PoolQueueFull(PortsError):
    """A :class:`PortPool`'s bounded wait queue is full; retry later or raise ``queue_max``."""


class PoolClosed(PortsError):
    """Every port of a :class:`PortPool` is closed, or the pool itself was closed."""


class RuntimeMismatch(PortsError):
    """A port was used with a port runtime (or trio run) other than the one that owns it."""


class PeerUnreachable(PortsError):
    """A transport cannot reach the other side of a connection any more (internal: the
    runtime turns it into the connection's end and ``close`` events on its ports)."""
