"""The dialer's one backoff: delays double from reconnect_min_s to reconnect_max_s,
jittered, reset once a link got up; an endpoint that is this node itself is left alone."""

from __future__ import annotations

from typing import Any, cast

import trio

from statesync.core import RefuseReason, Replica, Replicator
from statesync.node import NodeConfig
from statesync.node._dialer import Dialer
from statesync.node._link import Link
from statesync.node._security import NodeSecurity

ENDPOINT = "tcp://127.0.0.1:1"


class ScriptedRuntime:
    """``connect`` fails or succeeds as scripted, and notes when it was called."""

    def __init__(self, script: list[str]) -> None:
        self.script = script
        self.calls: list[float] = []

    async def connect(self, endpoint: str, options: object) -> object:
        self.calls.append(trio.current_time())
        step = self.script.pop(0) if self.script else "fail"
        if step == "fail":
            raise OSError("connection refused")
        return step


class InstantLinks:
    """Every link opened gets up and closes at once, for the reason the port names."""

    def open(self, port: Any, *, active: bool, endpoint: str | None) -> Link:
        link = Link(1, port, active, endpoint)
        link.was_up = port == "up"
        link.close_reason = RefuseReason.SAME_ID if port == "self" else ""
        link.closed.set()
        return link


async def dial(script: list[str], run_s: float) -> list[float]:
    """The delays between successive attempts on one endpoint during ``run_s``."""
    config = NodeConfig(node_id="a", reconnect_min_s=0.1, reconnect_max_s=0.8)
    runtime = ScriptedRuntime(script)
    dialer = Dialer(
        config,
        NodeSecurity.load(config),
        cast(Any, runtime),
        cast(Any, InstantLinks()),
        Replicator(Replica("a"), rand=lambda: 0.5),
        known={},
        save_peers=lambda peers: None,
    )
    async with trio.open_nursery() as nursery:
        dialer.start(nursery, ())
        dialer.dial(ENDPOINT)
        dialer.dial(ENDPOINT)  # one task per endpoint
        await trio.sleep(run_s)
        dialer.stop()
        nursery.cancel_scope.cancel()
    return [b - a for a, b in zip(runtime.calls, runtime.calls[1:], strict=False)]


def within(delay: float, nominal: float) -> bool:
    return 0.5 * nominal <= delay < 1.5 * nominal + 1e-9


async def test_delays_double_up_to_the_bound_with_jitter(autojump_clock: trio.abc.Clock) -> None:
    delays = await dial([], run_s=8.0)
    nominal = [0.1, 0.2, 0.4, 0.8, 0.8, 0.8, 0.8]
    assert len(delays) >= len(nominal)
    assert all(within(d, n) for d, n in zip(delays, nominal, strict=False)), delays
    assert len(set(delays[3:])) > 1  # jittered: not in lockstep


async def test_a_link_that_got_up_resets_the_backoff(autojump_clock: trio.abc.Clock) -> None:
    delays = await dial(["fail", "fail", "fail", "up"], run_s=2.0)
    # three failures grow the delay (0.1, 0.2, 0.4); after the link was up it starts over at 0.1
    assert [within(d, n) for d, n in zip(delays[:4], [0.1, 0.2, 0.4, 0.1], strict=True)] == [True] * 4, delays


async def test_an_endpoint_that_is_this_node_is_not_dialed_again(autojump_clock: trio.abc.Clock) -> None:
    delays = await dial(["fail", "self"], run_s=5.0)
    assert len(delays) == 1 and within(delays[0], 0.1), delays  # one retry, then never again
