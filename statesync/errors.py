"""Every error statesync raises on purpose, defined here and nowhere else.

All derive from :class:`StatesyncError`, so ``except StatesyncError`` catches
them all. They are grouped by what went wrong:

- :class:`DataError`: a path or a value breaks the data model's rules;
- :class:`ReplicationError`: write concerns, clocks, conflict resolvers;
- :class:`ConfigError`: a configuration value is missing or wrong;
- :class:`SecurityError`: key files, and requests a key may not make;
- :class:`WireError`: bytes that do not decode, values that cannot be encoded;
- :class:`PortsError`: MessagePorts, connections and pools;
- :class:`StorageError`: the data dir, the op log and snapshots;
- :class:`NodeClosedError`: the node stopped;
- :class:`ProtocolError`: the client protocol (bad requests, refusals the node
  sends in an error reply; each has a stable code, see ``docs/protocol.md``);
- :class:`ClientError`: a :class:`statesync.client.Client` on its own behalf
  (no node answered, the connection died, the client was closed...);
- :class:`CliError`: the ``statesync`` command line.

Every layer imports its errors from here (there are no per-layer error
modules), and each package re-exports the ones its users meet. This module
imports nothing but the standard library's typing, so importing it loads no
transport (no zmq, no trio).
"""

from __future__ import annotations

__all__ = [
    "AccessDenied",
    "BadPath",
    "BadRequest",
    "BadResumeToken",
    "BatchTooLong",
    "BytesTooLong",
    "CliError",
    "ClientClosed",
    "ClientError",
    "ClockSkewError",
    "CompressionError",
    "ConfigError",
    "ConnectError",
    "ConnectionLost",
    "ContainerTooLong",
    "DataCloneError",
    "DataDirInUse",
    "DataDirMismatch",
    "DataError",
    "DecodeError",
    "DecompressedTooLarge",
    "EncodeError",
    "FrameTooLarge",
    "HandshakeFailed",
    "InvalidArgument",
    "InvalidKey",
    "InvalidOperation",
    "InvalidPath",
    "InvalidValue",
    "KeyFileError",
    "LeaseError",
    "LeaseExpired",
    "LeaseNotFound",
    "LeaseNotHeld",
    "MalformedFrame",
    "MessageTooLarge",
    "NestingTooDeep",
    "NodeClosedError",
    "NodeError",
    "NodeRefused",
    "NodeUnavailable",
    "NotFound",
    "OutOfRange",
    "PathTooDeep",
    "PoolClosed",
    "PoolQueueFull",
    "PortClosedError",
    "PortQueueFull",
    "PortTransferredError",
    "PortsError",
    "ProtocolError",
    "ProtocolMismatch",
    "RegistrationError",
    "ReplicationArgumentError",
    "ReplicationError",
    "RequestFailed",
    "RequestTimeout",
    "ResolverCheckFailed",
    "ResolverError",
    "RuntimeMismatch",
    "SecurityError",
    "SegmentTooLong",
    "SocketClosed",
    "StatesyncError",
    "StorageArgumentError",
    "StorageError",
    "StorageFull",
    "StorageLimitError",
    "StoreClosed",
    "StoredRecordError",
    "StringTooLong",
    "TooLarge",
    "TooManyLeases",
    "TooManyStreams",
    "UnknownFlags",
    "UnknownMessageType",
    "UnknownVersion",
    "UsageError",
    "ValueRejected",
    "WireError",
    "WireSettingError",
    "WriteConcernError",
    "WrongType",
]


class StatesyncError(Exception):
    """Base class of every error statesync raises on purpose."""


# --------------------------------------------------------------------- data


class DataError(StatesyncError, ValueError):
    """A path or a value breaks the data model's rules; nothing was written."""


class InvalidPath(DataError):
    """A path is malformed or exceeds a limit (depth, segment length)."""


class InvalidValue(DataError):
    """A value has a type statesync cannot store, or exceeds a size limit.

    ``type_name`` names the offending type and ``where`` says where in the value
    it sits (``"$"`` is the value itself, ``"$['a'][2]"`` a nested element).
    """

    def __init__(self, message: str, *, type_name: str = "", where: str = "$") -> None:
        super().__init__(message)
        self.type_name = type_name
        self.where = where



class InvalidOperation(DataError):
    """A typed operation (text, list, counter, set) cannot apply where it was aimed.

    A position past the end, a negative count, a move of a missing item, a
    malformed op record: nothing of the op is applied. ``where`` names the
    place (``"pos 12"``, ``"item ('a', 3, 0)"``), ``type_name`` the type.
    """

    def __init__(self, message: str, *, type_name: str = "", where: str = "") -> None:
        super().__init__(message)
        self.type_name = type_name
        self.where = where


# -------------------------------------------------------------- replication


class ReplicationError(StatesyncError):
    """Replication could not do what was asked: a write concern, a clock, a resolver."""


class _Details(Exception):
    """An error with keyword details kept as attributes (the subclass annotates them):
    ``ClockSkewError(message, skew_s=...)``."""

    def __init__(self, message: str, **details: object) -> None:
        super().__init__(message)
        self.__dict__.update(details)


class ClockSkewError(_Details, ReplicationError):
    """A peer's physical clock differs from ours by more than ``max_drift_s``."""

    skew_s: float


class ResolverError(ReplicationError):
    """A custom conflict resolver failed or returned something it may not."""


class ResolverCheckFailed(_Details, ReplicationError):
    """``check_resolver`` found a counterexample; the message describes it."""

    counterexample: object


class WriteConcernError(ReplicationError):
    """A write was durable locally but not acknowledged as its concern asked.

    The write itself stays: it is in the local log and spreads later.
    ``missing`` names the peers that did not acknowledge in time; ``dot``
    names the write (origin, seq).
    """

    def __init__(self, message: str, *, missing: tuple[str, ...], dot: tuple[str, int]) -> None:
        super().__init__(message)
        self.missing = missing
        self.dot = dot


class ReplicationArgumentError(ReplicationError, ValueError):
    """A replica or replicator call got an argument it does not take (an unknown
    write concern, an empty batch, an empty node id); the message names it."""


# ------------------------------------------------------------ configuration


class ConfigError(StatesyncError, ValueError):
    """A configuration value is missing or wrong; the message says how to fix it."""


# ----------------------------------------------------------------- security


class SecurityError(StatesyncError):
    """Keys and rights: a key file that cannot be used, a request a key may not make."""


class KeyFileError(SecurityError, ValueError):
    """A key file or an authorized-keys file is missing, unreadable, malformed or too open.

    The message names the file (and the line) and what to do; it never quotes a key.
    """


class AccessDenied(SecurityError):
    """A client's key may not do what it asked (a read-only key writing, a write key
    outside its prefixes); nothing was changed. The message says what it may do."""


# --------------------------------------------------------------------- wire


class WireError(StatesyncError):
    """The wire layer: bytes that do not decode, values or frames that cannot be encoded."""


class DecodeError(WireError, ValueError):
    """Bytes from the network that do not decode: the frame must be dropped.

    ``limit`` names the violated limit (a ``DecodeLimits`` field such as
    ``"frame_bytes_max"``) or rule (such as ``"format"``); ``bound`` is the
    limit's value (or what was expected); ``value`` is what was seen; ``where``
    is the position in the message (``"$"`` is the message itself,
    ``"$.ops[3].path"`` a nested field), ``"$"`` where unknown.

    ``limit == "unexpected"`` marks input the decoder met no explicit check
    for (its safety net caught a Python error): the input is refused all the
    same, but the case deserves a precise check; please report it.
    """

    def __init__(
        self,
        message: str,
        *,
        limit: str = "format",
        bound: object = None,
        value: object = None,
        where: str = "$",
    ) -> None:
        super().__init__(message)
        self.message = message
        self.limit = limit
        self.bound = bound
        self.value = value
        self.where = where

    def at(self, prefix: str) -> DecodeError:
        """Prefix ``where`` with the position of the enclosing field; return self."""
        self.where = "$" + prefix + self.where[1:]
        return self

    def __str__(self) -> str:
        if self.where == "$":
            return self.message
        return f"{self.message} (at {self.where})"


class MalformedFrame(DecodeError):
    """The bytes are not a well-formed frame or message (truncated, garbage, extra data)."""


class UnknownVersion(DecodeError):
    """The frame's version byte is not one this build speaks."""


class UnknownFlags(DecodeError):
    """The frame's flags byte has bits this build does not know."""


class UnknownMessageType(DecodeError):
    """A message tag that no registered message class carries."""


class WrongType(DecodeError):
    """A field holds a value of the wrong type (``bound`` is the expected type name)."""


class OutOfRange(DecodeError):
    """A number lies outside the range its field allows (a seq below 1, a kind not 0 or 1)."""


class FrameTooLarge(DecodeError):
    """The frame (or payload) has more bytes than ``frame_bytes_max``."""


class DecompressedTooLarge(DecodeError):
    """A compressed frame claims, or expands to, more than ``decompressed_bytes_max``."""


class CompressionError(DecodeError):
    """The compressed body is corrupt or does not expand to the size its frame states."""


class NestingTooDeep(DecodeError):
    """Containers nest deeper than ``depth_max``."""


class StringTooLong(DecodeError):
    """A str is longer than ``str_bytes_max`` (UTF-8 bytes) or a node id than ``node_id_chars_max``."""


class BytesTooLong(DecodeError):
    """A bytes value is longer than ``bin_bytes_max``."""


class ContainerTooLong(DecodeError):
    """A list, tuple or dict has more items than ``container_len_max``."""


class BatchTooLong(DecodeError):
    """A frame holds more messages than ``batch_len_max``, or a message more ops than ``ops_len_max``."""


class PathTooDeep(DecodeError):
    """A path has more segments than ``path_depth_max``."""


class SegmentTooLong(DecodeError):
    """A path segment has more characters than ``segment_chars_max``."""


class BadPath(DecodeError):
    """A path is not a tuple of non-empty str segments."""


class ValueRejected(DecodeError):
    """A value breaks the core value rules (``statesync.core.validate_value``)."""


class DataCloneError(_Details, WireError, TypeError):
    """Something given to the encoder cannot be encoded, like the web's structured clone.

    ``type_name`` names the offending type and ``where`` says where it sits
    (``"$"`` is the value itself, ``"$['a'][2]"`` a nested element,
    ``"$.ops[3].value"`` a field of a message). ``limit`` names the wire limit
    the value would break, or is ``None`` when its type is the problem.
    """

    type_name: str
    where: str = "$"
    limit: str | None = None


class EncodeError(_Details, WireError, ValueError):
    """A frame cannot be built, or would break a limit its receiver enforces.

    ``limit`` names the ``DecodeLimits`` field, ``bound`` its value and
    ``value`` what the frame would have had.
    """

    limit: str = ""
    bound: object = None
    value: object = None


class WireSettingError(WireError, ValueError):
    """A wire setting is invalid (a DecodeLimits bound, a Compression or Batcher parameter)."""


class RegistrationError(WireError, TypeError):
    """A message class cannot join the tagged union (bad or duplicate TAG, unsupported field)."""


# -------------------------------------------------------------------- ports


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


class RequestFailed(_Details, PortsError):
    """The remote request handler raised or there was no handler; ``remote_error`` says what."""

    remote_error: str


class PoolQueueFull(PortsError):
    """A :class:`PortPool`'s bounded wait queue is full; retry later or raise ``queue_max``."""


class PoolClosed(PortsError):
    """Every port of a :class:`PortPool` is closed, or the pool itself was closed."""


class RuntimeMismatch(PortsError):
    """A port was used with a port runtime (or trio run) other than the one that owns it."""


# ------------------------------------------------------------------ storage


class StorageError(StatesyncError):
    """Base class of every error the storage layer raises on purpose.

    Raised as such when the disk refuses a write (full, read-only, I/O error)
    or a stored record cannot be read back; the message names the file and
    what to do. A failed ``append`` or ``save_snapshot`` wrote nothing.
    """


class DataDirInUse(StorageError):
    """Another live process (or another open store in this one) holds the data dir's lock."""


class DataDirMismatch(StorageError):
    """The data dir belongs to another node id, is not a statesync store, or has
    a storage format this version cannot read."""


class StoreClosed(StorageError):
    """The store was closed; open a new one."""


class StorageLimitError(StorageError, ValueError):
    """An argument exceeds a storage bound (peer count, endpoint or meta size)."""


class StoredRecordError(StorageError, ValueError):
    """A stored record does not decode to what was written (corruption)."""


class StorageArgumentError(StorageError, ValueError):
    """A store was given a setting or a name it does not take (durability, snapshot
    chunk size, node id, meta key); the message says what it takes."""


class StorageFull(_Details, StorageError):
    """The disk under the data dir is full (or the store reached its size bound).

    A node raises it at once for every local write while its disk-full alarm is
    on; it keeps serving reads, watches and status, and resumes by itself once
    space returns. ``folder`` is the data dir, ``free_bytes`` what was free there.
    """

    folder: str
    free_bytes: int


# --------------------------------------------------------------------- node


class NodeClosedError(StatesyncError):
    """The node is closing or closed; open a new one to keep working."""


# ---------------------------------------------------------- client protocol


class ProtocolError(StatesyncError):
    """The client protocol: a request or reply that does not follow it, or a refusal
    the node sent in an error reply (each subclass has a stable code; see
    ``statesync.protocol.ErrorCode``)."""


class BadRequest(ProtocolError, ValueError):
    """A request the node cannot make sense of; the message names the field."""


class ProtocolMismatch(ProtocolError):
    """The client and the node speak different versions of the client protocol."""


class TooLarge(ProtocolError):
    """An answer is too large for one message; read it as a stream (``snapshot``)."""


class TooManyStreams(ProtocolError):
    """The node serves its maximum of watches and snapshots at once; close some."""


class NodeError(ProtocolError):
    """The node failed a request for a reason of its own; the message says what."""


class LeaseError(ProtocolError):
    """A lease cannot be used: it does not exist, it ended, it is another holder's, or
    the node's lease table is full (see ``docs/leases.md``)."""


class LeaseNotFound(LeaseError):
    """No lease has this id on the node (it never existed, or it ended before the node started)."""


class LeaseExpired(LeaseError):
    """The lease ended (revoked, its holder went silent past its ttl, or the other side of a
    partition ended it); its keys were deleted. Grant a new lease and write them again."""


class LeaseNotHeld(LeaseError):
    """The lease exists but belongs to another holder (the token does not match)."""


class TooManyLeases(LeaseError):
    """The node (``leases_max``), the client (``leases_per_client_max``) or the lease
    (``lease_keys_max``) is at its bound; the message names the setting."""


class BadResumeToken(BadRequest):
    """A watch's resume token is garbled, or from another cluster, node or data folder:
    the watch is refused; start it without ``resume`` (it then begins with the current subtree)."""


# ------------------------------------------------------------------- client


class ClientError(StatesyncError):
    """Base of the errors a :class:`~statesync.client.Client` raises on its own behalf."""


class NodeUnavailable(ClientError):
    """No node answered at the endpoint in time; the message says what to check."""


class NodeRefused(ClientError):
    """The node turned this client away at the handshake: it does not admit this key, the
    server key is wrong, or one side uses keys and the other does not. Retrying does not
    help; the message says what to check."""


class ConnectionLost(ClientError):
    """The connection died during a write: it may or may not have been applied."""


class ClientClosed(ClientError):
    """The client was closed; make a new one."""


class InvalidArgument(ClientError, ValueError):
    """An argument of a Client method is out of range; the message says which."""


# ---------------------------------------------------------------------- CLI


class CliError(StatesyncError):
    """The ``statesync`` command line could not do what it was asked."""


class UsageError(CliError):
    """A mistake in the command line or a configuration file; exit code 2."""


class NotFound(CliError):
    """Nothing at the path asked for; exit code 4."""
