"""A priority message posted right after connect must not overtake its port's creation."""

from __future__ import annotations

import pytest
import trio

from statesync import ports


async def test_priority_message_posted_at_once_after_connect_arrives() -> None:
    async with ports.open_runtime() as server, ports.open_runtime() as client:
        listener = server.listen("tcp://127.0.0.1:*")
        for i in range(20):
            port = await client.connect(listener.endpoints[0])
            port.post_message(f"first {i}", priority=True)
            port.post_message(f"second {i}", priority=False)
            with trio.fail_after(5):
                incoming = await listener.accept()
                got = []
                async for event in incoming:
                    got.append(event.data)
                    if len(got) == 2:
                        break
            assert got == [f"first {i}", f"second {i}"]
            port.close()


def test_options_refuse_payloads_the_wire_would_refuse() -> None:
    with pytest.raises(ports.InvalidOptions, match="bytes field"):
        ports.PortOptions(payload_bytes_max=8 << 20)
    assert ports.PortOptions(payload_bytes_max=1 << 20).payload_bytes_max == 1 << 20
