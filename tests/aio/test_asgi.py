"""The asyncio client inside a real ASGI app: Starlette under uvicorn on a free loopback
port, its handlers sharing one ``aio.Client`` (opened in the app's lifespan), hit by
concurrent requests from httpx."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from statesync import aio
from tests.aio.support import run, until
from tests.client.nodes import NodeThread

UP_TIMEOUT_S = 10.0


@pytest.fixture(scope="module")
def pair() -> Iterator[NodeThread]:
    nodes = NodeThread([{"node_id": "a"}, {"node_id": "b"}])
    yield nodes
    nodes.stop()


def make_app(endpoint: str) -> Starlette:
    """A small app over one node: GET/PUT/DELETE /kv/{path}, GET /watch/{prefix}?count=N."""
    state: dict[str, aio.Client] = {}

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        async with aio.Client(endpoint) as client:
            state["client"] = client
            yield

    async def kv(request: Request) -> JSONResponse:
        client = state["client"]
        path = request.path_params["path"]
        if request.method == "PUT":
            receipt = await client.set(path, await request.json())
            return JSONResponse({"seq": receipt.seq, "origin": receipt.origin})
        if request.method == "DELETE":
            await client.delete(path)
            return JSONResponse({"deleted": path})
        value = await client.get(path, aio.ABSENT)
        if value is aio.ABSENT:
            return JSONResponse({"error": f"nothing at {path}"}, status_code=404)
        return JSONResponse({"value": value})

    async def watch(request: Request) -> JSONResponse:
        count = int(request.query_params["count"])
        events = []
        async with state["client"].watch(request.path_params["prefix"]) as w:
            started = request.query_params.get("started")
            if started:  # tell the test the subscription is live
                await state["client"].set(started, True)
            async for event in w:
                events.append([event.kind, event.key, event.value])
                if len(events) == count:
                    break
        return JSONResponse(events)

    routes = [Route("/kv/{path}", kv, methods=["GET", "PUT", "DELETE"]), Route("/watch/{prefix}", watch)]
    return Starlette(routes=routes, lifespan=lifespan)


@contextlib.asynccontextmanager
async def serving(endpoint: str) -> AsyncIterator[str]:
    """The app under uvicorn on a free loopback port (bounded wait until it is up); its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(make_app(endpoint), log_level="warning", lifespan="on"))
    task = asyncio.ensure_future(server.serve(sockets=[sock]))
    try:
        async def up() -> bool:
            assert not task.done(), "uvicorn stopped while starting"
            return server.started

        await until(up, UP_TIMEOUT_S, "uvicorn to start")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, UP_TIMEOUT_S)
        sock.close()


def test_an_asgi_app_serves_concurrent_requests_through_one_client(pair: NodeThread, request: pytest.FixtureRequest) -> None:
    base = request.node.name

    async def main() -> None:
        async with serving(pair.endpoints[0]) as url, httpx.AsyncClient(base_url=url, timeout=30) as http:
            puts = await asyncio.gather(*(http.put(f"/kv/{base}.k{i}", json={"i": i, "tags": ["x"]}) for i in range(200)))
            assert all(r.status_code == 200 for r in puts)
            assert len({r.json()["seq"] for r in puts}) == 200 and {r.json()["origin"] for r in puts} == {"a"}
            gets = await asyncio.gather(*(http.get(f"/kv/{base}.k{i}") for i in range(200)))
            assert [r.json()["value"] for r in gets] == [{"i": i, "tags": ["x"]} for i in range(200)]
            assert (await http.get(f"/kv/{base}.none")).status_code == 404
            assert (await http.delete(f"/kv/{base}.k0")).status_code == 200
            assert (await http.get(f"/kv/{base}.k0")).status_code == 404
            # a watch held open by one request while another client writes on the other node
            async with aio.Client(pair.endpoints[1]) as other:
                watching = asyncio.ensure_future(http.get(f"/watch/{base}.w?count=3&started={base}.started"))

                async def subscribed() -> bool:
                    return await other.get(f"{base}.started") is True

                await until(subscribed, what="the app's watch to start")
                for i in range(3):
                    await other.set(f"{base}.w.n", i)
                events = (await asyncio.wait_for(watching, 20)).json()
            assert events == [["put", f"{base}.w.n", i] for i in range(3)]

    run(main, timeout_s=120)
