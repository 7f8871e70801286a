"""Heartbeat verdicts of the ports protocol (pure): what to do about one connection now.

Each side pings a connection on which it sent nothing for its ping interval
(its own ``heartbeat_interval_s``, or a quarter of the peer's announced
timeout if that is shorter), and declares it dead when nothing arrived for
``heartbeat_timeout_s``, or when the handshake took longer than
``connect_timeout_s``. One verdict may be put off once when input is waiting
to be read: then this process was busy, not the peer.
"""

from __future__ import annotations

import enum
from collections.abc import Callable

import attrs


class Verdict(enum.Enum):
    OK = "ok"
    PING = "ping"
    DEFER = "defer"
    """Silent too long, but input waits: give the receiver one turn first."""
    HANDSHAKE_TIMEOUT = "handshake-timeout"
    SILENT = "silent"
    """Nothing arrived for the heartbeat timeout: the connection is dead."""


@attrs.define
class Liveness:
    """The timing facts of one connection (times in the driver's clock, seconds)."""

    created: float
    last_recv: float
    last_send: float
    ping_interval_s: float
    deferred: bool = False

    def peer_timeout(self, timeout_ms: int, interval_s: float) -> None:
        """The peer declares us dead after ``timeout_ms`` of silence: ping often enough."""
        if timeout_ms > 0:
            self.ping_interval_s = min(interval_s, timeout_ms / 4000)

    def verdict(
        self, now: float, up: bool, timeout_s: float, connect_timeout_s: float, input_waiting: Callable[[], bool]
    ) -> Verdict:
        if not up:
            return Verdict.HANDSHAKE_TIMEOUT if now - self.created > connect_timeout_s else Verdict.OK
        if now - self.last_recv > timeout_s:
            if not self.deferred and input_waiting():
                # Only once: a listener's socket may always have input from other peers.
                self.deferred = True
                return Verdict.DEFER
            return Verdict.SILENT
        self.deferred = False
        if now - self.last_send >= self.ping_interval_s:
            return Verdict.PING
        return Verdict.OK
