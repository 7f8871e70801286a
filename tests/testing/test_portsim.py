"""The ports protocol under the seeded simulator, and broken protocols it catches."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from statesync import sim
from statesync.errors import PortClosedError, PortsError
from statesync.ports._envelope import Marker
from statesync.ports._outbox import Conn
from statesync.ports._protocol import PortsProtocol
from statesync.ports._sequencing import Item, PortEnd, Relay
from statesync.testing._portsim import (
    PortSimResult,
    config_for_seed,
    replay_command,
    run,
)

SEEDS = range(250)


def failures(result: PortSimResult) -> str:
    return f"{replay_command(result.config)}\n" + "\n".join(result.violations[:10])


def test_the_ports_protocol_keeps_its_invariants_under_faults() -> None:
    totals = {"messages": 0, "transfers": 0, "closes": 0, "drops": 0, "exits": 0, "crashes": 0}
    bad = []
    for seed in SEEDS:
        result = run(config_for_seed(seed))
        for k in totals:
            totals[k] += getattr(result, k)
        if not result.ok:
            bad.append(failures(result))
    assert not bad, "\n\n".join(bad)
    # the runs did exercise what the invariants are about
    assert totals["transfers"] > 1000 and totals["messages"] > 10_000
    assert totals["closes"] > 1000 and totals["drops"] > 50
    assert totals["exits"] > 20 and totals["crashes"] > 20


def test_a_seed_replays_exactly() -> None:
    a = run(config_for_seed(11, trace=True))
    b = run(config_for_seed(11, trace=True))
    assert a.trace == b.trace and a.trace
    assert (a.messages, a.transfers, a.violations) == (b.messages, b.transfers, b.violations)


def test_the_replay_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert sim.main(["ports", "--seed", "3", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "python -m statesync.sim ports --seed 3" in out and "all invariants hold" in out


def caught(protocol: Callable[[str, Callable[[], int]], PortsProtocol], what: str) -> list[str]:
    """The violations naming ``what`` with a broken protocol, over seeds where the
    real one keeps every invariant."""
    found = []
    for seed in range(150):
        result = run(config_for_seed(seed), protocol)
        found += [f"{replay_command(result.config)}: {v}" for v in result.violations if what in v]
    return found


class NeverReleasesRelays(PortsProtocol):
    """Markers go on along the relays, but no relay is released by one."""

    def _on_marker(self, m: Marker, conn: Conn, now: float) -> None:
        e = self.entries.get(m.dst)
        if isinstance(e, Relay):
            e.hop.put(m)
            self.out.kicks[e.hop] = None


class DropsEarlyArrivals(PortsProtocol):
    """A reorder buffer that drops what comes early instead of holding it."""

    def _accept(self, st: PortEnd, prio: bool, seq: int, item: bytes | Item) -> None:
        if seq != (st.pseq_in if prio else st.seq_in):
            return
        super()._accept(st, prio, seq, item)


class ForgetsToTellThePartner(PortsProtocol):
    """close() retires the end here and sends nothing."""

    def close(
        self, st: PortEnd, reason: str, *, notify_self: bool = False, local: str | None = None
    ) -> None:
        if st.partner_gone or notify_self:
            super().close(st, reason, notify_self=notify_self, local=local)
            return
        self.entries.pop(st.id, None)
        self._retire(st, self._closed_error(reason))

    @staticmethod
    def _closed_error(reason: str) -> PortsError:
        return PortClosedError(reason)


def test_a_relay_never_released_is_caught() -> None:
    assert caught(NeverReleasesRelays, "relays after every port closed")


def test_a_lost_message_is_caught() -> None:
    assert caught(DropsEarlyArrivals, "messages its partner")


def test_a_reorder_buffer_that_drops_is_caught() -> None:
    # what it dropped never comes: the receiver waits for it, and so does the
    # close behind it; the relays of the pair stay
    assert caught(DropsEarlyArrivals, "")


def test_a_close_that_never_reaches_the_partner_is_caught() -> None:
    assert caught(ForgetsToTellThePartner, "close came")
