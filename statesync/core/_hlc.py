"""Hybrid logical clock, packed in one int.

A timestamp is ``(wall_ms << 16) | counter``: the high bits follow physical
time in milliseconds, the low 16 bits count events within one millisecond (a
counter overflow carries into the millisecond, which keeps timestamps unique
and monotonic). With the packing the classic HLC rules collapse to maxima:

- send (a local event):     ``last = max(last + 1, pt << 16)``
- receive (remote stamp r): ``last = max(last + 1, r + 1, pt << 16)``

so a timestamp is greater than every timestamp its event causally follows. The
physical time comes in as an argument: the core never reads a clock.

Skew: a remote stamp more than ``max_drift_ms`` ahead of our physical time is
*reported* (the protocol refuses or drops that peer) but never rejected: an op
is applied whatever its timestamp, since dropping it would split replicas.
"""

from __future__ import annotations

from statesync.errors import ClockSkewError

COUNTER_BITS = 16
COUNTER_MASK = (1 << COUNTER_BITS) - 1


def hlc_wall_ms(stamp: int) -> int:
    """The physical part of a timestamp, in ms since the epoch."""
    return stamp >> COUNTER_BITS


def hlc_counter(stamp: int) -> int:
    return stamp & COUNTER_MASK


def hlc_pack(wall_ms: int, counter: int = 0) -> int:
    return (wall_ms << COUNTER_BITS) | counter


class HybridClock:
    """One node's hybrid logical clock."""

    __slots__ = ("last", "max_drift_ms")

    def __init__(self, *, max_drift_ms: int = 60_000, last: int = 0) -> None:
        self.max_drift_ms = max_drift_ms
        self.last = last

    def send(self, wall_ms: int) -> int:
        """A fresh timestamp for a local event at physical time ``wall_ms``."""
        stamp = max(self.last + 1, wall_ms << COUNTER_BITS)
        self.last = stamp
        return stamp

    def receive(self, remote: int, wall_ms: int) -> int:
        """Advance past a remote timestamp; return the new local time.

        Never refuses: use :meth:`skew_ms` or :meth:`check` to detect a peer
        whose clock runs ahead.
        """
        stamp = max(self.last + 1, remote + 1, wall_ms << COUNTER_BITS)
        self.last = stamp
        return stamp

    def observe(self, remote: int) -> None:
        """Advance to at least ``remote`` without taking a new timestamp."""
        self.last = max(self.last, remote)

    def skew_ms(self, remote_wall_ms: int, wall_ms: int) -> int:
        """How far (ms) a remote physical time is from ours; positive is ahead."""
        return remote_wall_ms - wall_ms

    def check(self, remote_wall_ms: int, wall_ms: int, *, peer: str = "peer") -> None:
        """Raise ClockSkewError if the remote physical clock is off by more than the bound."""
        skew = remote_wall_ms - wall_ms
        if abs(skew) > self.max_drift_ms:
            side = "ahead of" if skew > 0 else "behind"
            raise ClockSkewError(
                f"{peer}'s clock is {abs(skew) / 1000:.3f} s {side} ours; the limit is "
                f"max_drift_s = {self.max_drift_ms / 1000:g}; synchronize clocks (NTP) on both hosts",
                skew_s=skew / 1000,
            )
