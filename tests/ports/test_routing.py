"""Routing of the pure ports protocol across runtimes: transfer cycles, relays a trip or
a dead connection leaves, and close news that has to go round.

Each test replays, by hand and in a few steps, a fault the ports simulator found
(``python -m statesync.sim ports --seed N``); each fails without its fix.
"""

from __future__ import annotations

import itertools

from statesync.ports import _codec
from statesync.ports._envelope import CLOSE_NOW, KIND_MESSAGE, Close, Marker, Msg, Ping, PortRef
from statesync.ports._outbox import Conn
from statesync.ports._protocol import GEN_ALL, PortsProtocol
from statesync.ports._sequencing import PortEnd, Relay


class Net:
    """Runtimes of the pure protocol joined by in-order links the test drives by hand."""

    def __init__(self, *names: str) -> None:
        ids = itertools.count(1)
        self.rt = {n: PortsProtocol(n, lambda: next(ids)) for n in names}
        self.conns: dict[tuple[str, str], Conn] = {}

    def link(self, a: str, b: str) -> None:
        for x, y in ((a, b), (b, a)):
            conn = Conn(queue_max=1000, queue_bytes_max=1 << 20, window=8, accepts=True)
            conn.remote_id = y
            self.conns[x, y] = conn
        for x, y in ((a, b), (b, a)):
            self.rt[x].link_up(self.conns[x, y], 0.0)

    def deliver(self, a: str, b: str) -> int:
        """Carry what ``a`` queued toward ``b`` (encoded and decoded) into ``b``."""
        src, dst = self.conns[a, b], self.conns[b, a]
        n = 0
        while (taken := src.take_frame(256, 1 << 20)) is not None:
            envs, prio = taken
            for m in _codec.decode_envelopes(_codec.encode_envelopes(envs, priority=prio)):
                if type(m) is not Ping:
                    assert self.rt[b].receive(dst, m, 0.0)
                    n += 1
        return n

    def settle(self, rounds: int = 30) -> None:
        for _ in range(rounds):
            if not sum(self.deliver(a, b) for a, b in list(self.conns)):
                return
        raise AssertionError(f"still forwarding after {rounds} rounds: a routing loop")

    def down(self, a: str, b: str) -> None:
        """The link between ``a`` and ``b`` dies: what is queued on it is lost."""
        for x, y in ((a, b), (b, a)):
            self.rt[x].link_down(self.conns[x, y], "the connection was lost")

    def connect(self, a: str, b: str) -> tuple[PortEnd, PortEnd]:
        """A new pair: one end in ``a``, its partner in ``b``."""
        end = self.rt[a].connect(self.conns[a, b], 8, 0.0)
        self.deliver(a, b)
        (incoming,) = self.rt[b].out.incoming
        self.rt[b].out.incoming.clear()
        return end, incoming.port

    def move(self, where: str, carrier: PortEnd, port: PortEnd) -> None:
        """Post ``port`` in a message on ``carrier`` (it moves to the carrier's partner)."""
        self.rt[where].post(carrier, KIND_MESSAGE, 0, b"carrier", (port,), False, 0.0)

    def end(self, where: str, pid: int) -> PortEnd:
        e = self.rt[where].entries[pid]
        assert isinstance(e, PortEnd)
        return e

    def close_all(self) -> None:
        for proto in self.rt.values():
            proto.close_all("done")
        self.settle()

    def finish(self) -> None:
        """Close every end left; then no runtime may hold anything (end or relay)."""
        self.close_all()
        left = {name: list(proto.entries) for name, proto in self.rt.items() if proto.entries}
        assert not left, f"state left after every port closed: {left}"


def chain(*names: str) -> Net:
    """Runtimes linked one to the next."""
    net = Net(*names)
    for a, b in itertools.pairwise(names):
        net.link(a, b)
    return net


def test_ends_sent_into_each_other_close_instead_of_bouncing_forever() -> None:
    # seed 196: a rides in a message to c while c rides in a message to a; each
    # runtime's relay points at the other, and both carriers went round forever
    net = chain("x", "y")
    a, b = net.connect("x", "y")
    c, d = net.connect("y", "x")
    net.move("x", d, a)
    net.move("y", b, c)
    net.settle()
    # nobody can ever take a or c: they close, and their partners hear it
    assert b.partner_gone and d.partner_gone
    assert a.id not in net.rt["x"].entries and c.id not in net.rt["y"].entries
    net.finish()


def test_an_end_closed_where_its_partner_has_no_route_releases_its_trail() -> None:
    # seed 245: q arrives at z knowing its partner closed (two messages still on their
    # way), so z makes no route to the partner; when q closes there, the relay its
    # trip left at w has to go as well
    net = chain("x", "w", "z")
    q, p = net.connect("w", "x")
    k, _ = net.connect("w", "z")
    net.rt["w"].receive(net.conns["w", "x"], Close(q.id, 3, 1, "closed"), 0.0)
    net.move("w", k, q)
    net.deliver("w", "z")
    net.rt["z"].close(net.end("z", q.id), "done")
    net.settle()
    assert q.id not in net.rt["w"].entries and p.id not in net.rt["w"].entries


def test_a_relay_whose_feed_died_closes_the_pair_on_both_sides() -> None:
    # seed 22: y relays to a (at x); b moved on to z and a switched to a direct route,
    # so y's relay toward a waits for z's marker; the link y-z dies before it comes:
    # what z sent a that way may be lost, and nothing would ever release the relay
    net = Net("x", "y", "z")
    for u, v in (("x", "y"), ("y", "z"), ("x", "z")):
        net.link(u, v)
    a, b = net.rt["y"].new_channel(8)
    k, _ = net.connect("y", "x")
    m, _ = net.connect("y", "z")
    net.move("y", k, a)
    net.settle()
    net.move("y", m, b)
    net.deliver("y", "z")  # b arrives at z and says where it is
    net.deliver("z", "y")
    net.deliver("y", "x")  # a learns: direct route to z, a marker to y
    net.deliver("x", "y")  # the marker releases y's route to b
    net.deliver("x", "z")
    assert isinstance(net.rt["y"].entries.get(a.id), Relay)
    a_x, b_z = net.end("x", a.id), net.end("z", b.id)
    net.down("y", "z")  # z's marker for y's relay to a is lost
    net.settle()
    assert a.id not in net.rt["y"].entries
    assert a_x.partner_gone and b_z.partner_gone
    net.finish()


def test_an_end_leaving_toward_its_partner_drops_its_route_to_it() -> None:
    # seed 245: r's route to s leads through y (s lives beyond it); r moves to y too:
    # from there it never comes back through x, and x's route to s serves nobody
    net = chain("x", "y", "w")
    r, s = net.connect("x", "y")
    k, _ = net.connect("y", "w")
    net.move("y", k, s)  # s moves on to w; x still reaches it through y
    net.settle()
    assert isinstance(net.rt["x"].entries.get(s.id), Relay)
    m, _ = net.connect("x", "y")
    net.move("x", m, r)
    assert s.id not in net.rt["x"].entries
    net.settle()
    net.finish()


def test_a_trip_cut_by_a_dead_link_releases_the_relays_behind_it() -> None:
    # seed 108: m rides from x through y toward z, where its partner lives; the link
    # y-z dies with the carrier on it: y's relay for m goes, and so must x's
    net = chain("x", "y", "z")
    k, l_y = net.connect("x", "y")
    m, n_y = net.connect("x", "y")
    c, _ = net.connect("y", "z")
    net.move("y", c, l_y)
    net.move("y", c, n_y)
    net.settle()  # k reaches l, and m reaches n, through y
    net.move("x", k, m)
    net.deliver("x", "y")  # the carrier of m is queued on y-z
    net.down("y", "z")
    net.settle()
    assert m.id not in net.rt["x"].entries
    net.finish()


def test_a_close_now_from_the_path_is_passed_to_the_partner() -> None:
    # the end that hears from a relay that the path died tells its partner on its own
    # route, so the partner does not wait for a close that never comes
    net = chain("x", "y")
    a, b = net.connect("x", "y")
    net.rt["x"].receive(net.conns["x", "y"], Close(a.id, CLOSE_NOW, CLOSE_NOW, "path died"), 0.0)
    net.settle()
    assert a.partner_gone and b.partner_gone


def test_an_end_whose_route_died_on_the_far_side_hears_of_its_partner() -> None:
    # seeds 115, 141: h (at z) reaches k (at x) directly, k reaches h through y; the
    # direct link dies: h hears it, k does not, and k's messages to h come to z, where
    # nobody is. z answers with a Close for h, which goes back along k's route to k.
    net = chain("x", "y", "z")
    k, h = net.connect("x", "y")
    c, _ = net.connect("y", "z")
    net.move("y", c, h)
    # z accepts a connection from x whose handshake x has not finished
    for u, v in (("x", "z"), ("z", "x")):
        conn = Conn(queue_max=1000, queue_bytes_max=1 << 20, window=8, accepts=True)
        conn.remote_id = v
        net.conns[u, v] = conn
    net.rt["z"].link_up(net.conns["z", "x"], 0.0)
    net.settle()
    h_z = net.end("z", h.id)
    assert net.rt["z"].entries[k.id].hop is net.conns["z", "x"]  # type: ignore[union-attr]
    assert net.rt["x"].entries[h.id].hop is net.conns["x", "y"]  # type: ignore[union-attr]
    net.down("x", "z")
    assert h_z.partner_gone and not k.partner_gone
    net.rt["x"].post(k, KIND_MESSAGE, 0, b"hello?", (), False, 0.0)
    net.settle()
    assert k.partner_gone
    net.finish()


def test_a_pair_done_at_a_relay_releases_the_trip_behind_it() -> None:
    # seed 320: e rides from x through y (where its partner f lives) on to z; the relays
    # its trip left behind y are released by e's trail marker, which follows the relay
    # at y. When f hears e closed, that relay goes: a marker goes on behind it itself
    proto = PortsProtocol("y", iter(range(1, 100)).__next__)
    to_x = Conn(queue_max=100, queue_bytes_max=1 << 20, window=8, accepts=True)
    to_z = Conn(queue_max=100, queue_bytes_max=1 << 20, window=8, accepts=True)
    to_x.remote_id, to_z.remote_id = "x", "z"
    proto.link_up(to_x, 0.0)
    proto.link_up(to_z, 0.0)
    p = proto.connect(to_z, 8, 0.0)
    f = proto.connect(to_x, 8, 0.0)
    e = f.partner
    ref = PortRef(e, f.id, 1, 0, 8, 1, 1, 1, 1, 0, 0, 0, 0)
    proto.receive(to_x, Msg(p.partner, 1, False, KIND_MESSAGE, 0, b"", (ref,)), 0.0)
    route = proto.entries[e]
    assert isinstance(route, Relay) and route.hop is to_z and route.back is to_x
    to_x.clear()
    proto.receive(to_z, Close(f.id, 1, 1, "bye"), 0.0)
    assert f.partner_gone and e not in proto.entries
    assert Marker(e, GEN_ALL) in to_x.normal


def test_a_marker_from_afar_leaves_the_route_of_an_end_living_here() -> None:
    # seed 243: the route of v (living here) to u is v's own; a marker of every
    # generation coming back from elsewhere for u (the relays of u's old trip) must
    # not release it
    proto = PortsProtocol("y", iter(range(1, 100)).__next__)
    to_x = Conn(queue_max=100, queue_bytes_max=1 << 20, window=8)
    to_z = Conn(queue_max=100, queue_bytes_max=1 << 20, window=8)
    to_x.remote_id, to_z.remote_id = "x", "z"
    proto.link_up(to_x, 0.0)
    proto.link_up(to_z, 0.0)
    v = proto.connect(to_x, 8, 0.0)
    proto.receive(to_z, Marker(v.partner, GEN_ALL), 0.0)
    route = proto.entries.get(v.partner)
    assert isinstance(route, Relay) and route.hop is to_x


def test_a_carrier_that_bounces_leaves_no_route_for_the_partner_of_its_port() -> None:
    # seed 53: x sends z (partner w, at w) in a message to d while d is on its way
    # from y to x; y sends the message back: z will be beyond x, so a route from y
    # to w would serve nobody, and nothing would ever release it
    net = Net("x", "y", "w")
    net.link("x", "y")
    net.link("x", "w")
    a, d = net.connect("x", "y")
    z, _ = net.connect("x", "w")
    k, _ = net.connect("y", "x")
    net.move("y", k, d)  # d leaves y for x
    net.move("x", a, z)  # z goes to d, which is no longer at y
    net.deliver("x", "y")
    assert z.partner not in net.rt["y"].entries
    net.settle()
    net.finish()


def test_a_trip_lost_with_a_dead_runtime_is_told_to_the_partner_whose_messages_came() -> None:
    # seeds 732, 953: q leaves y toward z, the way y's route to its partner p went, so
    # y keeps no route to p; z dies with q's carrier on its way. p's messages to q came
    # to y from x: a Close for q goes back that way, and p hears it
    net = chain("x", "y", "z")
    net.link("x", "z")
    p, q = net.connect("x", "z")
    k, _ = net.connect("z", "y")
    net.move("z", k, q)
    net.deliver("z", "y")  # q arrives at y; y reaches p back through z
    net.deliver("y", "z")
    net.deliver("z", "x")  # p learns where q is and goes direct (its reply waits on x-z)
    m, _ = net.connect("y", "z")
    net.move("y", m, net.end("y", q.id))
    net.rt["x"].post(p, KIND_MESSAGE, 0, b"to q", (), False, 0.0)
    net.deliver("x", "y")  # y forwards it after q
    for a, b in (("y", "z"), ("x", "z")):  # z crashes: x and y find out; z does nothing
        net.rt[a].link_down(net.conns[a, b], "heartbeat timeout")
    del net.rt["z"]
    net.conns = {ab: c for ab, c in net.conns.items() if "z" not in ab}
    net.settle()
    assert p.partner_gone
    net.finish()


def test_an_end_home_again_whose_old_route_dies_tells_its_partner() -> None:
    # seed 811: b comes back to x, where a lives, and waits for the marker behind a's
    # messages on the old route (through y); a moves on to z; the link x-y dies before
    # the marker came: what a sent that way is lost, b closes, and a must hear it too
    net = chain("z", "x", "y")
    (a, b), (k, _), (m, _) = (net.connect(u, v) for u, v in (("x", "y"), ("y", "x"), ("x", "z")))
    net.move("y", k, b)
    net.deliver("y", "x")  # b is home; its marker waits on x-y
    net.move("x", m, a)
    net.deliver("x", "z")
    a_z = net.end("z", a.id)
    net.down("x", "y")
    net.settle()
    assert a_z.partner_gone
    net.finish()
