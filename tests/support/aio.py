"""Running async test bodies: one fresh loop per test, always bounded."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

TEST_TIMEOUT_S = 30.0


def run(body: Awaitable[T] | Callable[[], Awaitable[T]], timeout_s: float = TEST_TIMEOUT_S) -> T:
    """Run one async test body (an awaitable, or a function that returns one) in a fresh loop,
    cancelled after ``timeout_s``."""

    async def bounded() -> T:
        return await asyncio.wait_for(body() if callable(body) else body, timeout_s)

    return asyncio.run(bounded())


def async_test(
    timeout_s: float = TEST_TIMEOUT_S,
) -> Callable[[Callable[..., Coroutine[Any, Any, T]]], Callable[..., T]]:
    """``run`` as a decorator: ``@async_test()`` over ``async def test_x(...)``."""

    def decorate(fn: Callable[..., Coroutine[Any, Any, T]]) -> Callable[..., T]:
        @functools.wraps(fn)
        def test(*args: Any, **kwargs: Any) -> T:
            return run(fn(*args, **kwargs), timeout_s)

        return test

    return decorate


async def settle(future: Awaitable[T], timeout_s: float = 3.0) -> T:
    """Await a future with a bound, without cancelling it on timeout: ccxt shares one watch
    future between callers, and a cancelled one would break the next watch."""
    return await asyncio.wait_for(asyncio.shield(future), timeout_s)


def spawn(coro: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
    """Start a watch in the background; a failure nobody awaited (a watch rejected when the
    client closes at teardown) does not warn "exception was never retrieved"."""
    task = asyncio.ensure_future(coro)
    task.add_done_callback(lambda t: t.cancelled() or t.exception())
    return task


@contextlib.asynccontextmanager
async def background(
    coro: Coroutine[Any, Any, T], stop_timeout_s: float = 5.0
) -> AsyncIterator[asyncio.Task[T]]:
    """Run ``coro`` as a task for the block; cancel it afterwards and wait (bounded) for it to
    end, whatever it raised."""
    task = asyncio.create_task(coro)
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await asyncio.wait_for(task, stop_timeout_s)
