"""Running alertd's feeds against a local fake exchange, with every delay scaled down."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from typing import Any

from alertd.config import AccountConfig, BackoffSettings, Config, FeedSettings, Secret
from alertd.feeds.backoff import Backoff
from alertd.feeds.feed import AccountFeed
from alertd.feeds.manager import FeedManager
from alertd.feeds.options import FeedOptions
from tests.support.aio import background
from tests.support.poll import eventually

BTC = "BTC/USDT:USDT"

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


def btc_long(fake: Any, api_key: str) -> None:
    """The account holds 0.5 BTC long at 62,000, the mark at 60,000."""
    fake.set_mark(BTC, "60000")
    fake.open_position(api_key, BTC, "long", "0.5", "62000")


def secrets(api_key: str, secret: str) -> dict[str, Secret]:
    return {"api_key": Secret(api_key), "secret": Secret(secret)}


def fast_backoff() -> Backoff:
    return Backoff.configured(FAST.backoff)


FAST_OPTIONS = FeedOptions(backoff=fast_backoff)


def make_feed(config: AccountConfig, api_key: str, secret: str) -> AccountFeed:
    return AccountFeed(config, secrets(api_key, secret), FAST, FAST_OPTIONS)


async def bootstrapped(feed: AccountFeed) -> AccountFeed:
    """The feed after one bootstrap (its REST reads only), its exchange client closed."""
    try:
        await feed.bootstrap()
    finally:
        await feed.close()
    return feed


@contextlib.asynccontextmanager
async def kept_open(feed: AccountFeed) -> AsyncIterator[AccountFeed]:
    """The feed after its bootstrap, its exchange client open for resyncs and reconciles until
    the block ends, then closed (a resync after ``bootstrapped`` reopens ccxt's session, which
    nothing would close)."""
    try:
        await feed.bootstrap()
        yield feed
    finally:
        await feed.close()


@contextlib.asynccontextmanager
async def running(feed: AccountFeed) -> AsyncIterator[asyncio.Task[None]]:
    try:
        async with background(feed.run()) as task:
            yield task
    finally:
        await feed.close()


@contextlib.asynccontextmanager
async def streaming(feed: AccountFeed) -> AsyncIterator[asyncio.Task[None]]:
    """``running``, once the feed's streams are up."""
    async with running(feed) as task:
        await eventually(lambda: feed.state.connected, what="streams up")
        yield task


async def counted_reconciles(
    feed: AccountFeed, count: Callable[[], int], reconciles: int
) -> tuple[int, list[int]]:
    """Once a streaming feed's start resync is done (a net snapshot: it reads the stops),
    ``reconciles`` reconciles: ``count()`` then, and after each reconcile how many more."""
    await eventually(lambda: feed.state.stops is not None, what="the start's resync")
    first = count()
    seen = []
    for _ in range(reconciles):
        await feed.reconcile()
        seen.append(count() - first)
    return first, seen


async def mark_arrives(fake: Any, feed: AccountFeed, price: str, what: str = "mark") -> None:
    """Move BTC's mark on the exchange and wait until the feed has it."""
    fake.set_mark(BTC, price)
    await eventually(lambda: feed.state.marks.get(BTC) == Decimal(price), what=what)


@contextlib.asynccontextmanager
async def good_and_bad_accounts(
    fake: Any, exchange: str, api_key: str, secret: str
) -> AsyncIterator[FeedManager]:
    """One manager for two accounts on ``fake``: "good" (``api_key``, holding the BTC long) and
    "bad" (a key the exchange does not know); yields once "bad" is fatal and "good" is up."""
    btc_long(fake, api_key)
    accounts = [account_config(name, exchange, fake) for name in ("good", "bad")]
    keys = {"good": (api_key, secret), "bad": ("key-unknown", "nope")}
    async with running_manager(accounts, keys) as manager:
        await eventually(lambda: manager.feeds["bad"].state.fatal, what="fatal")
        await eventually(lambda: manager.feeds["good"].state.connected, what="good up")
        yield manager


@contextlib.asynccontextmanager
async def running_manager(
    accounts: list[AccountConfig], keys: dict[str, tuple[str, str]]
) -> AsyncIterator[FeedManager]:
    config = Config(version=1, accounts=accounts, feeds=FAST)
    manager = FeedManager(
        config,
        {name: secrets(*pair) for name, pair in keys.items()},
        FAST_OPTIONS,
    )
    async with background(manager.run()):
        yield manager
