"""Broadcast channels: the web's BroadcastChannel across nodes.

``node.broadcast_channel(name)`` gives a :class:`BroadcastChannel`; what one
posts reaches every other channel of that name, on this node and on every
node linked now. Messages travel in :class:`Broadcast` frames beside the
replication messages and are neither stored nor replicated later: a node
that is not connected, or not listening, when one is posted never sees it.
Each channel keeps a bounded buffer (``buffer_max``); a listener that falls
behind loses the oldest messages (counted in ``dropped``).

:class:`Channels` is the node's registry of open channels: it delivers
locally, hands the frame to the links (a ``send`` callable) and receives
what peers broadcast.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import attrs

from statesync import ports, wire
from statesync.core import Value
from statesync.errors import BadRequest, NodeClosedError
from statesync.node._inbox import Inbox


@attrs.frozen
class Broadcast:
    """A BroadcastChannel message between nodes: not stored, not replicated later."""

    TAG: ClassVar[int] = 64
    channel: str
    data: bytes
    origin: str


wire.register_message(Broadcast)


class BroadcastChannel(Inbox[tuple[Value, str]]):
    """The web's BroadcastChannel across nodes: messages to every node listening on ``name``.

    Messages are not stored and not replicated later: a node that is not
    connected, or not listening, when one is posted never sees it.
    """

    def __init__(self, channels: Channels, name: str, buffer_max: int) -> None:
        super().__init__(buffer_max)
        self.name = name
        self._channels = channels
        self.dropped = 0

    def post_message(self, data: object) -> None:
        """Send ``data`` (a JSON-like value) to every other listener on this channel."""
        if self._closed:
            raise NodeClosedError(f"broadcast channel {self.name!r} is closed; open a new one")
        payload = wire.encode_payload(data)
        limit = self._channels.payload_bytes_max
        if len(payload) > limit:
            raise ports.MessageTooLarge(
                f"a broadcast message of {len(payload)} bytes exceeds {limit}; send less, or store it and broadcast its path"
            )
        self._channels.post(self, payload)

    def _deliver(self, value: Value, origin: str) -> None:
        if self._closed:
            return
        if len(self._buffer) >= self._buffer_max:
            self._buffer.popleft()
            self.dropped += 1
        self._buffer.append((value, origin))
        self._wakeup.set()

    def _forget(self) -> None:
        self._channels.forget(self)


class Channels:
    """A node's open broadcast channels, by name."""

    def __init__(self, node_id: str, frame_bytes_max: int, send: Callable[[Broadcast], None]) -> None:
        self._node_id = node_id
        self._send = send
        self._limits = wire.DecodeLimits(frame_bytes_max=frame_bytes_max)
        self.payload_bytes_max = frame_bytes_max // 2
        self._by_name: dict[str, set[BroadcastChannel]] = {}

    def open(self, name: str, buffer_max: int) -> BroadcastChannel:
        if not name or len(name) > 256:
            raise BadRequest(f"broadcast channel name {name!r}: a name is 1 to 256 characters")
        channel = BroadcastChannel(self, name, buffer_max)
        self._by_name.setdefault(name, set()).add(channel)
        return channel

    def forget(self, channel: BroadcastChannel) -> None:
        self._by_name.get(channel.name, set()).discard(channel)

    def post(self, channel: BroadcastChannel, payload: bytes) -> None:
        """Deliver to this node's other listeners, and send to every linked peer."""
        value = wire.decode_payload(payload)
        for other in self._by_name.get(channel.name, ()):
            if other is not channel:
                other._deliver(value, self._node_id)
        self._send(Broadcast(channel.name, payload, self._node_id))

    def receive(self, msg: Broadcast) -> bool:
        """A peer's broadcast; False when its payload does not decode (a bad frame)."""
        channels = self._by_name.get(msg.channel)
        if not channels:
            return True
        try:
            value = wire.decode_payload(msg.data, self._limits)
        except wire.DecodeError:
            return False
        for channel in list(channels):
            channel._deliver(value, msg.origin)
        return True

    def close_all(self) -> None:
        for channels in list(self._by_name.values()):
            for channel in list(channels):
                channel.close()
