"""Running asyncio code from plain test functions (the suite runs pytest-trio in trio mode,
which only takes ``async def`` tests: these are sync functions calling :func:`run`)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run(main: Callable[[], Coroutine[Any, Any, T]], timeout_s: float = 60.0) -> T:
    """``asyncio.run(main())``, bounded by ``timeout_s``."""

    async def bounded() -> T:
        return await asyncio.wait_for(main(), timeout_s)

    return asyncio.run(bounded())


async def until(cond: Callable[[], Awaitable[bool]], timeout_s: float = 10.0, what: str = "the condition") -> None:
    """The one bounded wait: until ``await cond()`` is true, checked every 10 ms."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not await cond():
        assert loop.time() < deadline, f"timed out after {timeout_s} s waiting for {what}"
        await asyncio.sleep(0.01)
