"""Ports benchmark: statesync MessagePorts vs raw blocking pyzmq, two processes, tcp loopback.

Prints, for 100-byte payloads:

- one-way throughput (messages/s) with per-message ``post_message`` from a
  connecting process to a listening one, next to raw blocking pyzmq
  DEALER -> ROUTER (one zmq message per message) measured in the same run;
- round-trip latency p50/p99 (ping-pong: post, the peer's ``on_message``
  posts it back) next to raw blocking pyzmq ping-pong, and ``request()``.

Each figure is the median of ``--runs`` runs. Usage::

    .venv/bin/python bench/ports_bench.py [--messages 300000] [--pings 5000] [--runs 3]

Figures go to docs/benchmarks.md (section "Ports").
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import trio
import zmq

from statesync import ports
from statesync.ports import MessageEvent, PortOptions, PortQueueFull

PAYLOAD = b"x" * 100
HERE = Path(__file__).resolve()
CHILD_TIMEOUT_S = 120


def spawn(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, str(HERE), "--child", *args])


def finish(proc: subprocess.Popen[bytes]) -> None:
    try:
        proc.wait(timeout=CHILD_TIMEOUT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# ---------------------------------------------------------------- raw pyzmq


def raw_throughput(n: int) -> float:
    ctx: zmq.Context[Any] = zmq.Context()
    r = ctx.socket(zmq.ROUTER)
    r.setsockopt(zmq.RCVHWM, 10_000)
    r.bind("tcp://127.0.0.1:*")
    ep = r.getsockopt_string(zmq.LAST_ENDPOINT)
    proc = spawn("raw-sender", ep, str(n))
    try:
        r.recv_multipart()  # hello
        r.recv_multipart()
        t0 = time.perf_counter()
        for _ in range(n - 1):
            r.recv_multipart()
        dt = time.perf_counter() - t0
    finally:
        finish(proc)
        r.close(0)
        ctx.term()
    return (n - 1) / dt


def raw_sender(ep: str, n: int) -> None:
    ctx: zmq.Context[Any] = zmq.Context()
    d = ctx.socket(zmq.DEALER)
    d.setsockopt(zmq.SNDHWM, 10_000)
    d.connect(ep)
    d.send(b"hello")
    for _ in range(n):
        d.send(PAYLOAD)
    d.close(linger=-1)
    ctx.term()


def raw_rtt(n: int) -> list[float]:
    ctx: zmq.Context[Any] = zmq.Context()
    r = ctx.socket(zmq.ROUTER)
    r.bind("tcp://127.0.0.1:*")
    ep = r.getsockopt_string(zmq.LAST_ENDPOINT)
    proc = spawn("raw-echo", ep, str(n))
    lat = []
    try:
        rid, _ = r.recv_multipart()
        for _ in range(200):  # warm up
            r.send_multipart([rid, PAYLOAD])
            r.recv_multipart()
        for _ in range(n):
            t0 = time.perf_counter()
            r.send_multipart([rid, PAYLOAD])
            r.recv_multipart()
            lat.append(time.perf_counter() - t0)
        r.send_multipart([rid, b"stop"])
    finally:
        finish(proc)
        r.close(0)
        ctx.term()
    return lat


def raw_echo(ep: str) -> None:
    ctx: zmq.Context[Any] = zmq.Context()
    d = ctx.socket(zmq.DEALER)
    d.connect(ep)
    d.send(b"hello")
    while True:
        m = d.recv()
        if m == b"stop":
            break
        d.send(m)
    d.close(0)
    ctx.term()


# ---------------------------------------------------------------- statesync ports


async def ports_throughput(n: int) -> float:
    listener = ports.listen("tcp://127.0.0.1:*")
    proc = spawn("ports-sender", listener.endpoints[0], str(n))
    try:
        port = await listener.accept()
        done = trio.Event()
        count = 0
        t0 = 0.0

        def on_message(ev: MessageEvent) -> None:
            nonlocal count, t0
            count += 1
            if count == 1:
                t0 = time.perf_counter()
            elif count == n:
                done.set()

        port.on_message = on_message
        with trio.fail_after(CHILD_TIMEOUT_S):
            await done.wait()
        dt = time.perf_counter() - t0
        port.post_message("stop")
        await trio.to_thread.run_sync(finish, proc)
    finally:
        listener.close()
        if proc.poll() is None:
            proc.kill()
    return (n - 1) / dt


async def ports_sender(ep: str, n: int) -> None:
    port = await ports.connect(ep)
    post = port.post_message
    i = 0
    while i < n:
        try:
            post(PAYLOAD)
            i += 1
        except PortQueueFull:
            await port.wait_writable()
    async for _ in port:  # wait for "stop"
        break


async def ports_rtt(n: int, *, use_request: bool) -> list[float]:
    listener = ports.listen("tcp://127.0.0.1:*")
    proc = spawn("ports-echo", listener.endpoints[0])
    lat = []
    try:
        port = await listener.accept()
        it = aiter(port)
        for i in range(200 + n):
            t0 = time.perf_counter()
            if use_request:
                await port.request(PAYLOAD)
            else:
                port.post_message(PAYLOAD)
                await anext(it)
            if i >= 200:
                lat.append(time.perf_counter() - t0)
        port.post_message("stop")
        await trio.to_thread.run_sync(finish, proc)
    finally:
        listener.close()
        if proc.poll() is None:
            proc.kill()
    return lat


async def ports_echo(ep: str) -> None:
    port = await ports.connect(ep)
    stop = trio.Event()

    def on_message(ev: MessageEvent) -> None:
        if ev.data == "stop":
            stop.set()
        else:
            port.post_message(ev.data)

    port.on_message = on_message
    port.set_request_handler(lambda d: d)
    await stop.wait()


# ---------------------------------------------------------------- main


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] * 1e6


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=300_000)
    ap.add_argument("--pings", type=int, default=5_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--child", nargs="+")
    args = ap.parse_args()
    if args.child:
        role, ep, *rest = args.child
        if role == "raw-sender":
            raw_sender(ep, int(rest[0]))
        elif role == "raw-echo":
            raw_echo(ep)
        elif role == "ports-sender":
            trio.run(ports_sender, ep, int(rest[0]))
        elif role == "ports-echo":
            trio.run(ports_echo, ep)
        return

    print(f"ports bench: 100-byte payloads, tcp loopback, {args.runs} runs, medians")
    print(f"  options: {PortOptions()!r}")
    raw_tp, ports_tp = [], []
    raw_p50, raw_p99, pp_p50, pp_p99, rq_p50, rq_p99 = [], [], [], [], [], []
    for run in range(args.runs):
        raw_tp.append(raw_throughput(args.messages))
        ports_tp.append(trio.run(ports_throughput, args.messages))
        lat = raw_rtt(args.pings)
        raw_p50.append(pct(lat, 0.5))
        raw_p99.append(pct(lat, 0.99))
        lat = trio.run(lambda: ports_rtt(args.pings, use_request=False))
        pp_p50.append(pct(lat, 0.5))
        pp_p99.append(pct(lat, 0.99))
        lat = trio.run(lambda: ports_rtt(args.pings, use_request=True))
        rq_p50.append(pct(lat, 0.5))
        rq_p99.append(pct(lat, 0.99))
        print(
            f"  run {run + 1}: raw {raw_tp[-1]:,.0f}/s ports {ports_tp[-1]:,.0f}/s | "
            f"rtt p50 raw {raw_p50[-1]:.0f} us, ping-pong {pp_p50[-1]:.0f} us, request {rq_p50[-1]:.0f} us"
        )
    med = statistics.median

    def ratios(a: list[float], b: list[float]) -> str:
        rs = sorted(y / x for x, y in zip(a, b, strict=True))
        return f"{med(rs):.2f}x (runs {rs[0]:.2f}-{rs[-1]:.2f})"

    print()
    print("| measure | raw blocking pyzmq | statesync ports | ratio, median of runs |")
    print("|---|---|---|---|")
    print(
        f"| one-way messages/s | {med(raw_tp):,.0f} | {med(ports_tp):,.0f} | "
        f"{ratios(raw_tp, ports_tp)}; target >= 0.8x |"
    )
    print(
        f"| round trip p50, ping-pong | {med(raw_p50):.0f} us | {med(pp_p50):.0f} us | "
        f"{ratios(raw_p50, pp_p50)}; target <= 3x |"
    )
    print(
        f"| round trip p99, ping-pong | {med(raw_p99):.0f} us | {med(pp_p99):.0f} us | {ratios(raw_p99, pp_p99)} |"
    )
    print(
        f"| round trip p50, request() | {med(raw_p50):.0f} us | {med(rq_p50):.0f} us | {ratios(raw_p50, rq_p50)} |"
    )
    print(
        f"| round trip p99, request() | {med(raw_p99):.0f} us | {med(rq_p99):.0f} us | {ratios(raw_p99, rq_p99)} |"
    )


if __name__ == "__main__":
    main()
