"""MessagePorts over ZeroMQ, driven by trio: the web's Channel Messaging API across processes.

- :class:`MessageChannel` gives two entangled :class:`MessagePort` objects.
- ``port.post_message(data, transfer=())`` copies ``data`` through the payload
  codec (DataCloneError at the call for what cannot be sent); ports in
  ``transfer`` move to the receiver, in this process or another one.
- Receiving: ``port.on_message = fn`` (starts the port),
  ``add_event_listener("message" | "messageerror" | "close", fn)`` (does not),
  ``start()``, or ``async for event in port``.
- ``close()`` disentangles; the partner gets ``close``, also when this
  process dies or stops answering (heartbeats).
- Across processes: ``listen(endpoint)`` yields incoming ports,
  ``await connect(endpoint)`` opens one; many ports share one connection per
  pair of processes.
- ``await port.request(data)`` with ``port.set_request_handler(fn)`` on the
  other end; :class:`PortPool` spreads requests over several ports.
- Security: ``PortOptions(curve=CurveKeys...)`` makes listeners CURVE servers
  (the runtime's ``authorizer`` admits keys per ``zap_domain``) and
  connections CURVE clients of ``tcp://host:port?key=<listener's key>``;
  ``port.remote.public_key`` is the other side's authenticated key.

See ``statesync/ports/_protocol.py`` for the protocol (flow control, ordering,
relocation, relays, close) and ``statesync/ports/_runtime.py`` for the socket
layout, security and liveness.
"""

from __future__ import annotations

from statesync.errors import (
    ConnectError,
    HandshakeFailed,
    InvalidKey,
    MessageTooLarge,
    PoolClosed,
    PoolQueueFull,
    PortClosedError,
    PortQueueFull,
    PortsError,
    PortTransferredError,
    RequestFailed,
    RequestTimeout,
    RuntimeMismatch,
    SocketClosed,
)
from statesync.ports._curve import (
    Authorizer,
    AuthRequest,
    CurveKeys,
    is_key_text,
    split_key,
    with_key,
)
from statesync.ports._default import (
    MessageChannel,
    connect,
    current_runtime,
    listen,
    open_runtime,
    shutdown,
)
from statesync.ports._link import Listener
from statesync.ports._options import DEFAULT_OPTIONS, InvalidOptions, PortOptions
from statesync.ports._outbox import RemoteInfo
from statesync.ports._pool import PortPool
from statesync.ports._port import MessageEvent, MessagePort
from statesync.ports._runtime import PortRuntime
from statesync.wire import DataCloneError

__all__ = [
    "DEFAULT_OPTIONS",
    "AuthRequest",
    "Authorizer",
    "ConnectError",
    "CurveKeys",
    "DataCloneError",
    "HandshakeFailed",
    "InvalidKey",
    "InvalidOptions",
    "Listener",
    "MessageChannel",
    "MessageEvent",
    "MessagePort",
    "MessageTooLarge",
    "PoolClosed",
    "PoolQueueFull",
    "PortClosedError",
    "PortOptions",
    "PortPool",
    "PortQueueFull",
    "PortRuntime",
    "PortTransferredError",
    "PortsError",
    "RemoteInfo",
    "RequestFailed",
    "RequestTimeout",
    "RuntimeMismatch",
    "SocketClosed",
    "connect",
    "current_runtime",
    "is_key_text",
    "listen",
    "open_runtime",
    "shutdown",
    "split_key",
    "with_key",
]
