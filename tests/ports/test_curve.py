"""CURVE on ports: the trio ZAP handler, keys in endpoints, refusals that say why."""

from __future__ import annotations

import logging
from contextlib import suppress

import attrs
import pytest
import trio
import zmq

from statesync.ports import (
    AuthRequest,
    ConnectError,
    CurveKeys,
    HandshakeFailed,
    InvalidKey,
    PortOptions,
    open_runtime,
    split_key,
    with_key,
)

FAST = PortOptions(
    heartbeat_interval_s=0.05, heartbeat_timeout_s=0.5, connect_timeout_s=3.0, linger_s=0.1
)
SERVER = CurveKeys.generate()
CLIENT = CurveKeys.generate()
OTHER = CurveKeys.generate()


class Policy:
    """Admits the keys in ``allowed`` on the domain ``peer``; records every question."""

    def __init__(self, *allowed: str) -> None:
        self.allowed = set(allowed)
        self.asked: list[AuthRequest] = []

    def __call__(self, request: AuthRequest) -> str | None:
        self.asked.append(request)
        if request.domain == "peer" and request.public_key in self.allowed:
            return None
        return "not on the list"


def opts(keys: CurveKeys | None, domain: str = "peer") -> PortOptions:
    return attrs.evolve(FAST, curve=keys, zap_domain=domain)


def test_keys_in_endpoints() -> None:
    ep = with_key("tcp://10.0.0.2:7001", SERVER.public)
    assert ep == f"tcp://10.0.0.2:7001?key={SERVER.public}"
    assert split_key(ep) == ("tcp://10.0.0.2:7001", SERVER.public)
    assert split_key("ipc:///tmp/x.sock") == ("ipc:///tmp/x.sock", None)
    assert with_key(ep, OTHER.public) == f"tcp://10.0.0.2:7001?key={OTHER.public}"
    with pytest.raises(InvalidKey, match="not a CURVE key"):
        split_key("tcp://10.0.0.2:7001?key=short")
    assert "secret=<hidden>" in repr(SERVER) and SERVER.secret not in repr(SERVER)
    assert SERVER.secret not in repr(opts(SERVER))
    with pytest.raises(InvalidKey):
        CurveKeys(SERVER.public, CLIENT.secret)


async def test_an_admitted_key_connects_and_both_sides_see_the_others_key() -> None:
    policy = Policy(CLIENT.public)
    async with (
        open_runtime(opts(SERVER), authorizer=policy) as b,
        open_runtime(opts(CLIENT)) as a,
    ):
        listener = b.listen("tcp://127.0.0.1:*")
        (endpoint,) = listener.endpoints
        assert split_key(endpoint)[1] == SERVER.public
        p = await a.connect(endpoint)
        with trio.fail_after(5):
            q = await listener.accept()
        p.post_message({"hello": "encrypted"})
        with trio.fail_after(5):
            async for event in q:
                assert event.data == {"hello": "encrypted"}
                break
        assert q.remote is not None and q.remote.public_key == CLIENT.public
        assert q.remote.address == "127.0.0.1"
        assert p.remote is not None and p.remote.public_key == SERVER.public
        assert [r.stage for r in policy.asked] == ["handshake", "hello"]
        assert {r.public_key for r in policy.asked} == {CLIENT.public}


async def test_many_concurrent_handshakes_all_complete() -> None:
    """The ZAP loop refreshes EVENTS after every zmq call: no handshake is lost."""
    clients = [CurveKeys.generate() for _ in range(24)]
    policy = Policy(*(c.public for c in clients))
    async with open_runtime(opts(SERVER), authorizer=policy) as b:
        listener = b.listen("tcp://127.0.0.1:*")
        done: list[str] = []

        async def one(keys: CurveKeys) -> None:
            async with open_runtime(opts(keys)) as a:
                port = await a.connect(listener.endpoints[0])
                assert await port.request("ping", timeout_s=10) == "pong"
                done.append(keys.public)

        async def serve() -> None:
            async for port in listener:
                port.set_request_handler(lambda data: "pong")

        with trio.fail_after(20):
            async with trio.open_nursery() as n:
                n.start_soon(serve)
                async with trio.open_nursery() as clients_nursery:
                    for keys in clients:
                        clients_nursery.start_soon(one, keys)
                n.cancel_scope.cancel()
        assert sorted(done) == sorted(c.public for c in clients)


async def test_an_unknown_key_is_refused_with_a_clear_error_and_nothing_arrives(
    caplog: pytest.LogCaptureFixture,
) -> None:
    policy = Policy(CLIENT.public)
    async with (
        open_runtime(opts(SERVER), authorizer=policy) as b,
        open_runtime(opts(OTHER)) as a,
    ):
        listener = b.listen("tcp://127.0.0.1:*")
        with pytest.raises(HandshakeFailed, match=r"refused this key .*not on its authorized list"):
            await a.connect(listener.endpoints[0])
        assert b.refused >= 1
        assert not listener.links
        with trio.move_on_after(0.2):
            await listener.accept()
            pytest.fail("a port from a refused key was accepted")
    assert [r.public_key for r in policy.asked] == [OTHER.public]


async def test_a_wrong_server_key_fails_fast_and_says_to_check_the_key() -> None:
    async with (
        open_runtime(opts(SERVER), authorizer=Policy(CLIENT.public)) as b,
        open_runtime(opts(CLIENT)) as a,
    ):
        listener = b.listen("tcp://127.0.0.1:*")
        wrong = with_key(listener.endpoints[0], OTHER.public)
        start = trio.current_time()
        with pytest.raises(HandshakeFailed, match="check that the server key given for it"):
            await a.connect(wrong)
        assert trio.current_time() - start < FAST.connect_timeout_s


async def test_a_plaintext_side_and_a_curve_side_do_not_connect(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, "statesync.ports")
    async with (
        open_runtime(opts(SERVER), authorizer=Policy(CLIENT.public)) as b,
        open_runtime(FAST) as plain,
    ):
        listener = b.listen("tcp://127.0.0.1:*")
        address, _ = split_key(listener.endpoints[0])
        with pytest.raises(HandshakeFailed, match="requires CURVE keys and this side has none"):
            await plain.connect(address)
        with pytest.raises(ConnectError, match="has no key pair"):
            await plain.connect(listener.endpoints[0])
        with trio.fail_after(5):  # the listener's monitor logs it (rate-limited)
            while not any("no keys configured" in r.getMessage() for r in caplog.records):
                await trio.sleep(0.01)
    async with open_runtime(opts(CLIENT)) as a, open_runtime(FAST) as plain:
        plain_listener = plain.listen("tcp://127.0.0.1:*")
        with pytest.raises(ConnectError, match="needs the listener's public key"):
            await a.connect(plain_listener.endpoints[0])
        with pytest.raises(HandshakeFailed, match=r"(does not|node) uses? CURVE keys"):
            await a.connect(with_key(plain_listener.endpoints[0], SERVER.public))


async def test_recheck_closes_the_connections_of_a_withdrawn_key() -> None:
    policy = Policy(CLIENT.public)
    async with (
        open_runtime(opts(SERVER), authorizer=policy) as b,
        open_runtime(opts(CLIENT)) as a,
    ):
        listener = b.listen("tcp://127.0.0.1:*")
        p = await a.connect(listener.endpoints[0])
        with trio.fail_after(5):
            q = await listener.accept()
        assert b.recheck_links() == []
        policy.allowed.clear()
        closed = b.recheck_links()
        assert [(info.public_key, reason) for info, reason in closed] == [
            (CLIENT.public, "not on the list")
        ]
        with trio.fail_after(5):
            async for _ in p:
                pass  # ends once the connection's close reaches this side
        assert p.closed and q.closed
        # a new connection with that key is refused at the handshake
        with pytest.raises(HandshakeFailed, match="refused this key"):
            await a.connect(listener.endpoints[0])


async def test_a_curve_listener_needs_an_authorizer_and_one_per_context() -> None:
    async with open_runtime(opts(SERVER)) as b:
        with pytest.raises(ConnectError, match="needs an authorizer"):
            b.listen("tcp://127.0.0.1:*")
        with pytest.raises(InvalidKey, match="uses its own key pair"):
            b.listen(with_key("tcp://127.0.0.1:0", SERVER.public))
    ctx: zmq.Context[object] = zmq.Context()
    try:
        async with (
            open_runtime(opts(SERVER), context=ctx, authorizer=Policy()) as one,
            open_runtime(opts(SERVER), context=ctx, authorizer=Policy()) as two,
        ):
            one.listen("tcp://127.0.0.1:*")
            with pytest.raises(ConnectError, match="its own context"):
                two.listen("tcp://127.0.0.1:*")
    finally:
        ctx.term()


async def forwarder(target_port: int, seen: bytearray, task_status: trio.TaskStatus[int]) -> None:
    """A TCP relay to 127.0.0.1:target_port that keeps a copy of every byte, both ways."""

    async def pump(src: trio.SocketStream, dst: trio.SocketStream) -> None:
        with suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            async for chunk in src:
                seen.extend(chunk)
                await dst.send_all(chunk)
        with suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await dst.aclose()

    async def handle(client: trio.SocketStream) -> None:
        server = await trio.open_tcp_stream("127.0.0.1", target_port)
        async with trio.open_nursery() as n:
            n.start_soon(pump, client, server)
            n.start_soon(pump, server, client)

    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    task_status.started(listeners[0].socket.getsockname()[1])
    await trio.serve_listeners(handle, listeners)


@pytest.mark.parametrize("curve", [False, True])
async def test_what_crosses_the_wire_is_encrypted_with_curve(curve: bool) -> None:
    marker = "plain-text-marker-" * 4
    seen = bytearray()
    async with (
        open_runtime(opts(SERVER if curve else None), authorizer=Policy(CLIENT.public)) as b,
        open_runtime(opts(CLIENT if curve else None)) as a,
        trio.open_nursery() as n,
    ):
        listener = b.listen("tcp://127.0.0.1:*")
        address, key = split_key(listener.endpoints[0])
        relay_port = await n.start(forwarder, int(address.rsplit(":", 1)[1]), seen)
        p = await a.connect(with_key(f"tcp://127.0.0.1:{relay_port}", key))
        with trio.fail_after(5):
            q = await listener.accept()
        q.set_request_handler(lambda data: {"echo": data})
        assert await p.request(marker, timeout_s=5) == {"echo": marker}
        n.cancel_scope.cancel()
    assert len(seen) > 200
    assert (marker.encode() in bytes(seen)) is not curve  # the control run shows the marker
