"""alertd's OKX v5 feed against the local OKX, through ccxt unmodified: the private
websocket's login."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal as D

from alertd.engine.model import Side
from alertd.engine.stops import StopKind
from alertd.feeds.feed import AccountFeed

from .fake_exchange.okx import FakeOKX
from .support.aio import run
from .support.fakes import started
from .support.feeds import BTC, FAST, running
from .support.poll import eventually
from .test_okx_multi_currency import okx_feed


def test_a_login_refused_as_expired_is_sent_again_and_the_account_streams() -> None:
    """OKX refuses a websocket login that arrives more than 30 s after its timestamp ("60006
    Timestamp request expired"; 9 of 1,000 accounts at a start at load 10-13, benchmarks.md
    calm14). ccxt fails the connection's pending watches but keeps the login for sent
    (``subscriptions['authenticated']``), so the retried watches on the still open
    connection never logged in again and waited forever: the account never streamed again,
    feed-down fired and stayed. Now the retry logs in again (as Bybit's refused login,
    :meth:`~alertd.exchanges.bybit.BybitAdapter.refused_login`): a position change pushed
    after the refusal reaches the feed."""

    async def body() -> None:
        async with started(FakeOKX(), [("key-o", "secret-o", "100000")]) as fake:
            fake.set_mark(BTC, "60000")
            fake.open_position("key-o", BTC, "long", "100", "60000")
            fake.late_login("key-o")
            # no staleness within the test: a stale private stream is reconnected, which
            # logs in afresh and hid the hang (in the daemon the reconciles keep a quiet
            # account fresh, so nothing reconnected it: 5 accounts stayed blind for good)
            feed = okx_feed(fake, settings=FAST.model_copy(update={"stale_after_s": 120}))
            async with running(feed):
                key = (BTC, Side.LONG)
                await eventually(lambda: key in feed.state.positions, what="the position")
                refused_then_in = [("key-o", "private", False), ("key-o", "private", True)]
                await eventually(
                    lambda: [x for x in fake.logins if x[1] == "private"] == refused_then_in,
                    what="the private connection's login refused, then sent again",
                )
                fake.open_position("key-o", BTC, "long", "300", "60000")  # pushed
                await eventually(
                    lambda: feed.state.positions[key].contracts == 300,
                    what="the pushed position (the private stream logged in again)",
                )

    run(body(), timeout_s=60)


def test_a_login_refused_twice_after_a_drop_is_connected_again() -> None:
    """As Bybit's (tests/test_feeds_bybit.py), after a drop: the socket opened again (the
    account connected), then its login refused as expired, twice in a row, fails the private
    watches on a socket that stays open, and the retry's login on it is followed by no
    opening. Unlike Bybit, OKX pushes a snapshot of the positions and account channels on
    subscribing (OKX v5 "Positions channel": "Initial snapshot will be pushed"; the local OKX
    does), so the retried watches deliver and the account was connected again before the
    accepted login told it too: this guards that path, and passed before that change."""

    async def body() -> None:
        async with started(FakeOKX(), [("key-o", "secret-o", "100000")]) as fake:
            fake.set_mark(BTC, "60000")
            fake.open_position("key-o", BTC, "long", "100", "60000")
            # no staleness within the test: a stale private stream is reconnected (a new
            # socket, opened): in the daemon the reconciles keep a quiet account fresh
            feed = okx_feed(fake, settings=FAST.model_copy(update={"stale_after_s": 120}))

            def private() -> list[tuple[str, str, bool]]:
                return [x for x in fake.logins if x[1] == "private"]

            async with running(feed):
                await eventually(lambda: private() == [("key-o", "private", True)], what="in")
                await eventually(lambda: feed.state.connected, what="streaming")
                fake.late_login("key-o")
                await fake.drop_connections(kind="private")
                await eventually(lambda: len(private()) == 2, what="the refused login")
                fake.late_login("key-o")  # the retry refused as well
                logins = [("key-o", "private", ok) for ok in (True, False, False, True)]
                await eventually(lambda: private() == logins, what="a fourth login")
                await eventually(
                    lambda: feed.state.connected, what="connected again (its login accepted)"
                )

    run(body(), timeout_s=60)


@asynccontextmanager
async def streaming_a_long_with_algo_advance() -> AsyncIterator[tuple[FakeOKX, AccountFeed]]:
    """A BTC long streaming on the local OKX, its stops read (none) and "algo-advance"
    subscribed: where a trailing stop's push can be watched."""
    async with started(FakeOKX(), [("key-o", "secret-o", "100000")]) as fake:
        fake.set_mark(BTC, "60000")
        fake.open_position("key-o", BTC, "long", "100", "60000")
        feed = okx_feed(fake, settings=FAST.model_copy(update={"stale_after_s": 120}))
        async with running(feed):
            await eventually(lambda: feed.state.stops == (), what="the stops read: none")
            await eventually(lambda: "algo-advance" in fake.subscriptions(), what="algo-advance")
            yield fake, feed


def test_a_trailing_stop_placed_or_cancelled_is_read_at_its_push() -> None:
    """OKX pushes a trailing stop (``move_order_stop``) on the business connection's
    "algo-advance" channel, not on "orders-algo" (www.okx.com/docs-v5/en/#order-book-trading-
    algo-trading-ws-advance-algo-orders-channel: "advance algo orders (including Iceberg order,
    TWAP order, Trailing order)"). Streaming, with no reconcile within the test: a trailing
    stop placed on the long is in the stop view at its push, with its current trigger, and
    gone at its cancellation's push (before: alertd watched "orders-algo" only, and the
    trailing stop stayed unseen until the next reconcile that read the stops)."""

    async def body() -> None:
        async with streaming_a_long_with_algo_advance() as (fake, feed):
            order = fake.add_stop("key-o", BTC, "long", "57000", kind="trailing")
            await eventually(
                lambda: (
                    [(s.kind, s.trigger_price) for s in feed.state.stops or ()]
                    == [(StopKind.TRAILING, D(57000))]
                ),
                what="the trailing stop at its push",
            )
            fake.cancel_stop("key-o", order)
            await eventually(lambda: feed.state.stops == (), what="its cancellation")

    run(body(), timeout_s=60)


def test_a_burst_of_trailing_stop_pushes_is_read_once_not_once_a_push() -> None:
    """Twenty trailing stops placed at once push twenty "algo-advance" frames; a stop read
    queued and not begun yet covers every push before it, so the burst costs a few reads
    (3 requests each: one per algo type; pushes arriving while one is read queue one more),
    not one a push (review of race15: 21 reads, 63 requests, each holding one of the host's
    REST slots before the reconciles'; 4 reads with the queue, at load 16)."""
    count = 20

    def stop_reads(fake: FakeOKX) -> int:
        return sum(p.endswith("/trade/orders-algo-pending") for _, p in fake.requests)

    async def body() -> None:
        async with streaming_a_long_with_algo_advance() as (fake, feed):
            before = stop_reads(fake)
            for i in range(count):
                fake.add_stop("key-o", BTC, "long", str(57000 + i), kind="trailing")
            await eventually(
                lambda: len(feed.state.stops or ()) == count, what="every trailing stop"
            )
            await asyncio.sleep(1.0)  # any read the burst still queued
            assert stop_reads(fake) - before <= 3 * count // 2  # half a read a push

    run(body(), timeout_s=60)
