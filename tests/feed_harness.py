"""Running alertd's feeds against a local fake exchange, with every delay scaled down."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

from alertd.config import AccountConfig, BackoffSettings, Config, FeedSettings, Secret
from alertd.feeds.backoff import Backoff
from alertd.feeds.feed import AccountFeed
from alertd.feeds.manager import FeedManager

# One constant scales the daemon's clock-driven behaviour for tests (websockets' habit).
FAST = FeedSettings(
    reconcile_interval_s=0.5,
    tier_refresh_interval_s=3600,
    listen_key_renew_interval_s=0.3,
    stale_after_s=0.8,
    request_timeout_s=3,
    backoff=BackoffSettings(initial_s=0.05, max_s=0.2, multiplier=2, jitter=0, reset_after_s=1),
)


def account_config(name: str, exchange: str, fake: Any, **extra: Any) -> AccountConfig:
    return AccountConfig(
        name=name,
        exchange=exchange,
        api_key_env="UNUSED_KEY",
        secret_env="UNUSED_SECRET",
        urls=fake.ccxt_urls(),
        options=dict(fake.ccxt_options),
        **extra,
    )


def secrets(api_key: str, secret: str) -> dict[str, Secret]:
    return {"api_key": Secret(api_key), "secret": Secret(secret)}


def fast_backoff() -> Backoff:
    b = FAST.backoff
    return Backoff(b.initial_s, b.max_s, b.multiplier, b.jitter, b.reset_after_s)


def make_feed(config: AccountConfig, api_key: str, secret: str) -> AccountFeed:
    return AccountFeed(config, secrets(api_key, secret), FAST, backoff_factory=fast_backoff)


async def eventually(
    check: Callable[[], Any], timeout_s: float = 10.0, what: str = "condition"
) -> Any:
    """Poll until ``check()`` is truthy; fail with ``what`` after a bounded wait."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def running(feed: AccountFeed) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(feed.run())
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await asyncio.wait_for(task, 5)
        await feed.close()


@contextlib.asynccontextmanager
async def running_manager(
    accounts: list[AccountConfig], keys: dict[str, tuple[str, str]]
) -> AsyncIterator[FeedManager]:
    config = Config(version=1, accounts=accounts, feeds=FAST)
    manager = FeedManager(
        config,
        {name: secrets(*pair) for name, pair in keys.items()},
        backoff_factory=fast_backoff,
    )
    task = asyncio.create_task(manager.run())
    try:
        yield manager
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await asyncio.wait_for(task, 5)


@contextlib.contextmanager
def server_in_thread(fake: Any) -> Iterator[Any]:
    """Run a fake exchange on its own loop in a thread, for tests that start alertd processes."""
    loop = asyncio.new_event_loop()
    started = threading.Event()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(fake.start())
        started.set()
        loop.run_forever()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    if not started.wait(10):
        raise RuntimeError("fake exchange did not start")
    try:
        yield fake
    finally:
        asyncio.run_coroutine_threadsafe(fake.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


def run(coro: Awaitable[Any], timeout_s: float = 30) -> Any:
    """Run one async test body with a hard bound."""

    async def bounded() -> Any:
        return await asyncio.wait_for(coro, timeout_s)

    return asyncio.run(bounded())
