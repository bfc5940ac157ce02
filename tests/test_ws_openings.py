"""Websocket openings paced per exchange IP (issue 14): OKX opens 3 a second per IP, Binance
300 and Bybit 500 in 5 minutes, and each refuses openings past that (docs/scaling.md,
"Websocket openings per IP").

The pacer on a clock the test moves; then accounts started at once against the local
exchanges refusing openings over their cap (ccxt unmodified): none refused, at a start and
after every connection dropped at once; an account queued for its turn is not down.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any, ClassVar

import ccxt
import pytest
from aiohttp import web

from alertd.config import AccountConfig, Config, Secret
from alertd.daemon.evaluation import Alerting
from alertd.daemon.publisher import Publisher
from alertd.exchanges.okx import ALGO_TYPES
from alertd.exchanges.registry import get_spec
from alertd.feeds.ccxt_exchange import (
    OPENING_CAP_SHARE,
    IpBudget,
    OpeningPacer,
    _paced_open,
    drop_connection,
    make_exchange,
)
from alertd.feeds.feed import AccountFeed
from alertd.feeds.manager import FeedManager
from alertd.feeds.options import FeedOptions
from tests.fake_exchange.binance import FakeBinanceUSDM
from tests.fake_exchange.okx import FakeOKX
from tests.support.aio import background, run
from tests.support.clock import VirtualTime
from tests.support.fakes import FAKES, started
from tests.support.feeds import FAST, account_config, fast_backoff, secrets
from tests.support.poll import eventually
from tests.test_shared_exchange import (
    SETTINGS,
    Built,
    alerting_for,
    manager_for,
    production_backoff,
)

# a cap small enough for a test to pass it with a few accounts where the real one takes
# hundreds (Binance's 300, Bybit's 500 in 5 minutes): given to the local exchange and to
# alertd's budget alike
SMALL_CAP = (3, 1.0)


async def drain() -> None:
    """Let every ready task run (the pacer hands turns over through futures)."""
    for _ in range(20):
        await asyncio.sleep(0)


# ---- the pacer -------------------------------------------------------------------------------


def test_at_most_count_openings_a_window_each_counted_until_a_window_after_it_ended() -> None:
    """Three a second: the fourth waits until a window has passed since the first *ended*
    (not since its turn: a slow handshake arrives late in the window the exchange counts)."""

    async def body() -> None:
        time = VirtualTime()
        pacer = OpeningPacer(3, 1.0, time, time.sleep)
        first = [await pacer.turn() for _ in range(3)]
        fourth = asyncio.create_task(pacer.turn())
        await drain()
        assert not fourth.done() and pacer.waiting() == 1
        await time.advance_to(5.0)  # the three are still opening: nothing frees
        await drain()
        assert not fourth.done()
        first[0].ended()  # ended at 5 s: its place frees at 6 s
        await time.advance_to(5.9)
        await drain()
        assert not fourth.done()
        await time.advance_to(6.0)
        got = await asyncio.wait_for(fourth, 1)
        assert got.turn_at == 6.0 and pacer.turns == 4 and pacer.waiting() == 0

    run(body())


async def order_of_turns(asks: list[tuple[str, bool]], cancelled: str | None = None) -> list[str]:
    """The order in which ``asks`` (name, asked first), asked in that order while the one
    place is held, get their turns, the ``cancelled`` one cancelled while it waits; one a
    second."""
    time = VirtualTime()
    pacer = OpeningPacer(1, 1.0, time, time.sleep)
    held = await pacer.turn()
    order: list[str] = []

    async def ask(name: str, first: bool) -> None:
        opening = await pacer.turn(first=first)
        order.append(name)
        opening.ended()

    tasks = {}
    for name, first in asks:
        tasks[name] = asyncio.create_task(ask(name, first))
        await drain()
    assert pacer.waiting() == len(asks)
    if cancelled is not None:
        tasks[cancelled].cancel()
    held.ended()
    for t in range(1, len(asks) + 1):
        await time.advance_to(float(t))
        await drain()
    assert pacer.waiting() == 0
    return order


def test_turns_go_in_order_of_asking_and_a_cancelled_waiter_gives_its_place_on() -> None:
    async def body() -> None:
        asks = [("a", False), ("b", False), ("c", False)]
        assert await order_of_turns(asks, cancelled="b") == ["a", "c"]

    run(body())


def test_a_turn_asked_first_takes_the_next_place_ahead_of_the_queued_ones() -> None:
    """The mark hubs' turns (:meth:`MarkHub._opening_turn`), in order of asking among them."""

    async def body() -> None:
        asks = [("a", False), ("hub1", True), ("b", False), ("hub2", True)]
        assert await order_of_turns(asks) == ["hub1", "hub2", "a", "b"]
        assert await order_of_turns(asks, cancelled="hub1") == ["hub2", "a", "b"]

    run(body())


def test_an_opening_nothing_ends_holds_its_place_a_bounded_time() -> None:
    async def body() -> None:
        time = VirtualTime()
        pacer = OpeningPacer(1, 1.0, time, time.sleep, held_at_most_s=30.0)
        await pacer.turn()  # never ended (a watch that neither opened nor failed)
        second = asyncio.create_task(pacer.turn())
        await time.advance_to(30.5)
        await drain()
        assert not second.done()
        await time.advance_to(31.0)  # held 30 s, then a window
        assert (await asyncio.wait_for(second, 1)).turn_at == 31.0

    run(body())


def test_the_budget_paces_at_a_share_of_the_exchange_s_documented_cap() -> None:
    okx = IpBudget.of(get_spec("okx").capabilities)
    assert okx.openings is not None
    assert (okx.openings.count, okx.openings.window_s) == (int(3 * OPENING_CAP_SHARE), 1.0)
    binance = IpBudget.of(get_spec("binanceusdm").capabilities).openings
    bybit = IpBudget.of(get_spec("bybit").capabilities).openings
    assert binance is not None and (binance.count, binance.window_s) == (240, 300.0)
    assert bybit is not None and (bybit.count, bybit.window_s) == (400, 300.0)
    assert IpBudget.of(get_spec("gate").capabilities).openings is None


# ---- against the local exchanges ----------------------------------------------------------


def capped(fake: Any, exchange: str, manager: FeedManager) -> None:
    """The local exchange refusing openings past OKX's real cap, or past ``SMALL_CAP`` where
    the real one would take hundreds of accounts (Binance, Bybit): alertd's budget too."""
    if exchange == "okx":
        fake.cap_ws_openings()
        return
    fake.cap_ws_openings(*SMALL_CAP)
    options = manager.options
    for shared in manager.shared.values():
        shared.ip_budget.openings = OpeningPacer.of(SMALL_CAP, options.clock, options.sleep)


@pytest.mark.parametrize("exchange", ["okx", "binanceusdm", "bybit"])
def test_accounts_started_at_once_open_within_the_exchange_s_cap_and_none_is_refused(
    exchange: str,
) -> None:
    """Six accounts started at once (OKX: twelve private openings, 3 a second allowed): before,
    every one opened at once and most were refused (HTTP 429), their streams retrying; now
    none is refused, at the start and after every connection dropped at once (a reconnect
    storm), and every account streams."""

    async def body() -> None:
        fake = FAKES[exchange](mark_interval_s=0.2)  # marks fresh: the hub stays connected
        async with started(fake):
            manager = manager_for(fake, exchange, Built(), 6)
            capped(fake, exchange, manager)
            feeds = list(manager.feeds.values())
            async with background(manager.run()):
                await eventually(
                    lambda: all(f.state.connected for f in feeds),
                    what="all streaming",
                    timeout_s=90,
                )
                assert fake.ws_refused == 0
                opened = sum(len(at) for at in fake.ws_openings.values())
                await fake.drop_connections()
                await eventually(
                    lambda: sum(len(at) for at in fake.ws_openings.values()) >= 2 * opened,
                    what="every connection opened again",
                    timeout_s=90,
                )
                await eventually(
                    lambda: all(f.state.connected for f in feeds),
                    what="all streaming",
                    timeout_s=90,
                )
                assert fake.ws_refused == 0
                count, window_s = fake.ws_openings_cap
                assert fake.most_openings_in(window_s) <= count

    run(body(), timeout_s=240)


def publisher_for(manager: FeedManager, alerting: Alerting, time: VirtualTime) -> Publisher:
    """The daemon's health line over ``manager``'s feeds, on the feeds' clock."""
    return Publisher(
        manager.feeds,
        manager.config.feeds,
        alerting,
        alerting.store,
        alerting.deliverer,
        clock=time,
        wall_clock=lambda: 0.0,
    )


def test_an_account_queued_for_its_turn_to_open_a_websocket_is_not_down() -> None:
    """Its host's turns one a 100 s window (its own two connections take 100 s at that pace),
    the one turn taken (by the test, standing for the accounts before it in a start of 1,000):
    the account, bootstrapped, waits for its turn 100 s, nothing failed. It is not down, and the
    health line says why it is not live; once it has its turn it opens and streams. The clock
    and the sleep are one virtual time: the pacer's wake-ups follow the clock the test moves."""

    async def body() -> None:
        fake = FAKES["okx"](mark_interval_s=0.2)
        fake.cap_ws_openings()
        async with started(fake):
            time = VirtualTime()
            options = FeedOptions(backoff=fast_backoff, clock=time, sleep=time.sleep)
            manager = manager_for(fake, "okx", Built(), 1, options=options)
            (feed,) = manager.feeds.values()
            (budget,) = {s.ip_budget for s in manager.shared.values()}
            pacer = budget.openings = OpeningPacer(1, 100.0, time, time.sleep)
            taken = await pacer.turn()
            alerting = alerting_for(manager.config)
            publisher = publisher_for(manager, alerting, time)
            async with background(manager.run()):
                await eventually(feed.waiting_for_opening_turn, 30, "queued for its turn")
                assert feed.state.bootstrapped and not feed.state.connected
                assert alerting.feed_status(feed, 0).down_s == 0
                await time.advance_to(100.0)
                await drain()
                # queued 100 s behind the others' openings: not down (was 100 s down)
                assert feed.waiting_for_opening_turn()
                assert alerting.feed_status(feed, 100).down_s == 0
                assert publisher.health().not_live == (
                    f"{feed.config.name} waiting for its turn to open a websocket",
                )
                taken.ended()  # its place frees a window later
                await time.advance_to(200.0)
                # the mark hub's public connection first (every account's marks), opened
                await eventually(lambda: pacer.turns == 2 and not pacer._open, 30, "hub open")
                assert feed.waiting_for_opening_turn()
                await time.advance_to(300.0)
                await eventually(lambda: feed.state.connected, 30, "streaming")
                assert alerting.feed_status(feed, 300).down_s == 0
                assert fake.ws_refused == 0

    run(body(), timeout_s=90)


def test_the_start_s_pace_counts_the_websocket_openings(caplog: pytest.LogCaptureFixture) -> None:
    """1,000 OKX accounts open 2,000 private websockets, 2 a second (3 per IP, at alertd's
    share): all live after about 999 s, said at start, the grace of feed-down with it (before:
    nothing said, no grace: OKX spends no per-IP REST weight). Bybit's 1,000 open 400 each 5
    minutes: the third turn after 600 s."""

    async def body() -> None:
        accounts = [
            AccountConfig(name=f"{exchange}{i}", exchange=exchange, api_key_env="K", **extra)
            for exchange, extra in (
                ("okx", {"secret_env": "S", "password_env": "P"}),
                ("bybit", {"secret_env": "S"}),
            )
            for i in range(1000)
        ]
        manager = FeedManager(Config(version=1, accounts=accounts), {})
        try:
            with caplog.at_level(logging.INFO, logger="alertd.feeds.manager"):
                manager.schedule()
            paces = sorted(r.getMessage() for r in caplog.records if "go live at" in r.message)
            assert len(paces) == 2
            assert paces[0].startswith(
                "1000 Bybit accounts go live at their per-IP budget's pace: all after at least 600 "
                "s (1000 websocket openings, 400 every 300 s); the health line counts"
            ), paces[0]
            assert paces[1].startswith(
                "1000 OKX accounts go live at their per-IP budget's pace: all after at least 999 s "
                "(2000 websocket openings, 2 every 1 s); the health line counts"
            ), paces[1]
            assert manager.feeds["okx7"].paced_start_s == 999
            assert manager.feeds["bybit7"].paced_start_s == 600
        finally:
            await manager.close()

    run(body(), timeout_s=60)


def dropped_account_with_a_crowd(
    fake: Any, time: VirtualTime, crowd: int
) -> tuple[FeedManager, Any, list[asyncio.Task[None]]]:
    """One OKX account that streamed, then dropped, and ``crowd`` others on its host each
    taking a turn a minute (their openings failing too: an outage, a ban, 429s at the
    handshake): the host's queue long. Scheduled (the start's pace set) but not run."""
    options = FeedOptions(backoff=production_backoff, clock=time, sleep=time.sleep)
    manager = manager_for(fake, "okx", Built(), 1, options=options)
    manager.schedule()
    (feed,) = manager.feeds.values()
    pacer = feed.shared.ip_budget.openings
    assert pacer is not None
    feed.state.bootstrapped = True
    feed.on_open("wss://private")  # it streamed
    feed.state.connected = False  # and dropped

    async def other_account() -> None:
        while True:
            (await pacer.turn()).ended()
            await time.sleep(60.0)

    return manager, feed, [asyncio.create_task(other_account()) for _ in range(crowd)]


async def stopped(manager: FeedManager, tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await manager.close()


def test_an_account_whose_reopenings_fail_is_down_however_long_the_host_s_queue() -> None:
    """Every reopening fails (429 at the handshake) while 300 other accounts retry on its host:
    the time it queued for those turns is not a wait through no failure. It counts down from
    the drop, as without the pace (before: the waits of every failed retry were credited, 1,000
    retrying held feed-down off 3,000 s, reviewer's probe_waited)."""

    async def body() -> None:
        fake = FAKES["okx"]()
        async with started(fake):
            time = VirtualTime()
            manager, feed, crowd = dropped_account_with_a_crowd(fake, time, 300)
            alerting = alerting_for(manager.config)
            alerting.feed_status(feed, 0.0)
            attempts = [0]

            async def refused_opening() -> None:
                attempts[0] += 1
                raise ccxt.NetworkError("429 at the handshake")

            loop = asyncio.create_task(feed._loop("positions", refused_opening))
            for t in range(1, 601):
                await time.advance_to(float(t))
                await drain()
            assert attempts[0] > 2 and not feed.state.connected
            assert alerting.feed_status(feed, 600.0).down_s == 600
            await stopped(manager, [*crowd, loop])

    run(body(), timeout_s=120)


def test_the_wait_for_turns_credited_is_at_most_the_host_s_own_pace() -> None:
    """Dropped, its reopening queued behind 300 others (nothing failed): not down for as long
    as its host's own accounts' openings take at its pace (one account, two connections, two
    a second: no wait at all), past that it is (before: any wait credited)."""

    async def body() -> None:
        fake = FAKES["okx"]()
        async with started(fake):
            time = VirtualTime()
            manager, feed, crowd = dropped_account_with_a_crowd(fake, time, 300)
            alerting = alerting_for(manager.config)
            alerting.feed_status(feed, 0.0)
            opened = asyncio.Event()

            async def opening() -> None:
                await opened.wait()

            loop = asyncio.create_task(feed._loop("positions", opening))
            for t in range(1, 61):
                await time.advance_to(float(t))
                await drain()
            assert feed.waiting_for_opening_turn()
            assert alerting.feed_status(feed, 60.0).down_s == 60
            await stopped(manager, [*crowd, loop])

    run(body(), timeout_s=120)


class OpeningsByPath(FakeOKX):
    """The local OKX counting the openings it accepted by path (private, business, public)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.by_path: collections.Counter[str] = collections.Counter()

    def _refuses_opening(self, request: web.Request) -> bool:
        refused = super()._refuses_opening(request)
        if not refused:
            self.by_path[request.path] += 1
        return refused


def one_okx_account(fake: OpeningsByPath) -> tuple[FeedManager, AccountFeed, OpeningPacer]:
    """One account on the local OKX, its marks fresh and a long stale allowance (no stream
    reopened but by a drop), and its host's pacer."""
    settings = SETTINGS.model_copy(update={"stale_after_s": 30.0})
    manager = manager_for(fake, "okx", Built(), 1, settings)
    (feed,) = manager.feeds.values()
    pacer = feed.shared.ip_budget.openings
    assert pacer is not None
    return manager, feed, pacer


def test_a_connection_closed_while_its_stream_reads_over_rest_reopens_in_its_turn() -> None:
    """OKX's algo orders stream (the business connection) is in its REST read of the stops when
    every connection drops: its watch never failed, but ccxt's next one opens the business
    connection again, and that opening takes its turn as every other private one (before: it
    opened with none, and its open ended another connection's opening early; reviewer's
    probe_unpaced)."""

    async def body() -> None:
        fake = OpeningsByPath(mark_interval_s=0.2)
        async with started(fake):
            manager, feed, pacer = one_okx_account(fake)
            private = ("/ws/v5/private", "/ws/v5/business")

            def reads(suffix: str) -> int:
                return sum(path.endswith(suffix) for _, path in fake.requests)

            async with background(manager.run()):
                await eventually(
                    lambda: feed.state.connected and fake.by_path[private[1]] == 1, 30, "live"
                )
                # the bootstrap's and the start's resync's reads of the stops done (one a type
                # each, ALGO_TYPES): the next read of them is the orders stream's, after a push
                stops_reads = 2 * len(ALGO_TYPES)
                await eventually(lambda: reads("orders-algo-pending") >= stops_reads, 30, "read")
                fake.hold_rest("orders-algo-pending")
                fake.add_stop("key0", "BTC/USDT:USDT", "long", 20000)
                await eventually(lambda: fake.held_answers() == 1, 30, "stops read held")
                await fake.drop_connections()
                await eventually(lambda: fake.by_path[private[0]] == 2, 30, "private reopened")
                fake.release_rest()
                await eventually(lambda: fake.by_path[private[1]] == 2, 30, "business reopened")
                assert sum(fake.by_path[p] for p in private) == 4
                assert pacer.turns == sum(fake.by_path.values())  # the mark hub's too

    run(body(), timeout_s=90)


def test_a_streaming_account_with_a_stale_mark_is_stale_while_a_connection_waits_its_turn() -> None:
    """OKX: one connection opened in its turn (the account streams), the other queued for its
    own, and the account's mark not seen for 500 s: the health line calls it stale, not
    waiting for its turn (before: the wait masked the staleness; reviewer's
    probe_health_mask)."""

    async def body() -> None:
        fake = FAKES["okx"]()  # no mark pushed after the snapshot's
        async with started(fake):
            time = VirtualTime()
            options = FeedOptions(backoff=fast_backoff, clock=time, sleep=time.sleep)
            manager = manager_for(fake, "okx", Built(), 1, options=options)
            (feed,) = manager.feeds.values()
            (budget,) = {s.ip_budget for s in manager.shared.values()}
            budget.openings = OpeningPacer(1, 1000.0, time, time.sleep)  # one, then none
            alerting = alerting_for(manager.config)
            publisher = publisher_for(manager, alerting, time)
            async with background(manager.run()):
                await eventually(
                    lambda: feed.state.connected and feed.waiting_for_opening_turn(),
                    30,
                    "one connection open, the other queued",
                )
                await time.advance_to(500.0)
                await drain()
                assert feed.waiting_for_opening_turn()
                assert publisher.health().stale == (feed.config.name,)
                assert publisher.health().not_live == ()

    run(body(), timeout_s=90)


def test_a_business_connection_closed_takes_no_turn_for_the_private_connection_s_streams() -> None:
    """OKX: only the business connection (the algo orders) drops and reopens in its turn; the
    private connection stays open, and its streams' next steps take no turn (before: the close
    was counted per feed, and the positions' or balance's next step took a turn for a
    connection that never closed, a place in the host's pace wasted)."""

    async def body() -> None:
        fake = OpeningsByPath(mark_interval_s=0.2)
        async with started(fake):
            manager, feed, _ = one_okx_account(fake)
            private, business = "/ws/v5/private", "/ws/v5/business"
            async with background(manager.run()):
                await eventually(
                    lambda: feed.state.connected and fake.by_path[business] == 1, 30, "live"
                )
                await fake.drop_connections(kind="business")
                await eventually(lambda: fake.by_path[business] == 2, 30, "business reopened")
                fake.set_balance("key0", 123_456)  # the balance stream's next step
                await eventually(lambda: feed.state.wallet_balance == 123_456, 30, "balance pushed")
                await drain()
                assert fake.by_path[private] == 1
                assert not feed.waiting_for_opening_turn()
                # the private connection's one turn, its opening's (the pacer's count alone
                # told nothing: a wasted private turn and an unpaced hub opening cancelled out)
                assert feed._turns.get("private") == 1
                assert feed._turns.get("business") == 2

    run(body(), timeout_s=90)


def test_a_failed_opening_is_seen_though_another_connection_opened_meanwhile() -> None:
    """OKX: the business connection's turn taken, then the private one's, and the private
    socket opens; then the business handshake fails (a 429). Its later waits for turns, queued
    behind 300 others, are not credited: the account counts down from the drop (before: the
    private socket's open ended the oldest opening, the business one's, and its failure was
    missed: the waits were credited, the account not down)."""

    async def body() -> None:
        fake = FAKES["okx"]()
        async with started(fake):
            time = VirtualTime()
            manager, feed, crowd = dropped_account_with_a_crowd(fake, time, 300)
            feed.openings_paced_s = 999.0  # its host's start of 1,000 accounts
            alerting = alerting_for(manager.config)
            alerting.feed_status(feed, 0.0)
            refused = asyncio.Event()
            attempts = [0]

            async def business_refused() -> None:
                attempts[0] += 1
                await refused.wait()
                if attempts[0] == 1:  # the first, refused; the retry opens (no end seen)
                    raise ccxt.NetworkError("429 at the handshake")
                await asyncio.Event().wait()

            async def until(done: Callable[[], bool]) -> None:
                for _ in range(1000):  # bounded: the queue serves two a second
                    await drain()
                    if done():
                        return
                    await time.advance_to(time() + 1.0)
                raise AssertionError("never given its turn")

            loop = asyncio.create_task(feed._loop("orders", business_refused))
            await until(lambda: feed.opening_turn_at is not None)  # the business one's turn
            private = asyncio.create_task(feed._opening_turn("private", 0))
            await until(private.done)
            assert private.result() is not None
            feed.on_open("wss://ws.okx.com:8443/ws/v5/private")
            assert alerting.feed_status(feed, time()).down_s == 0  # it streams
            refused.set()
            await drain()
            failed_at = time()
            assert alerting.feed_status(feed, failed_at).down_s == 0  # down from here
            for t in range(int(failed_at) + 1, int(failed_at) + 61):
                await time.advance_to(float(t))
                await drain()
            assert not feed.state.connected and feed.waiting_for_opening_turn()
            assert alerting.feed_status(feed, time()).down_s == 60
            await stopped(manager, [*crowd, loop, private])

    run(body(), timeout_s=120)


def test_the_mark_hub_s_public_openings_take_turns_in_the_same_pace() -> None:
    """OKX counts every websocket opening of the IP, public ones too (3 a second): the mark
    hub's public connection takes its turn in the host's pace beside the accounts' private
    ones, at the start and after every connection dropped (before: it opened unpaced, the
    pace blind to it in a reconnect storm of hubs)."""

    async def body() -> None:
        fake = OpeningsByPath(mark_interval_s=0.2)
        async with started(fake):
            manager, feed, pacer = one_okx_account(fake)
            paths = ("/ws/v5/public", "/ws/v5/private", "/ws/v5/business")

            def opened() -> int:
                return sum(fake.by_path[p] for p in paths)

            async with background(manager.run()):
                await eventually(
                    lambda: feed.state.connected and opened() == 3, 30, "every connection open"
                )
                assert pacer.turns == 3
                await fake.drop_connections()
                await eventually(lambda: opened() == 6, 30, "every connection opened again")
                await eventually(lambda: feed.state.connected, 30, "streaming")
                await drain()
                assert fake.by_path[paths[0]] == 2 and pacer.turns == 6

    run(body(), timeout_s=90)


OKX = get_spec("okx")


def okx_openings() -> tuple[VirtualTime, IpBudget, OpeningPacer]:
    """A virtual time, and OKX's budget and openings' pacer on it."""
    time = VirtualTime()
    budget = IpBudget.of(OKX.capabilities, "okx", time, time.sleep)
    assert budget.openings is not None
    return time, budget, budget.openings


def test_the_mark_hub_s_opening_goes_ahead_of_a_storm_of_private_openings() -> None:
    """The mark hub's public sockets carry every account's marks: in a reconnect storm of 200
    OKX accounts (400 private openings queued, 2 a second) its dial takes the next place,
    not the last (before the ws12 review: it waited 200 s behind them, every account
    without marks)."""

    async def body() -> None:
        time, _, pacer = okx_openings()
        dials: list[float] = []

        async def dial(session: object, backoff_delay: float = 0) -> None:
            dials.append(time())

        async def account_opening() -> None:
            (await pacer.turn()).ended()  # a fast handshake

        accounts = [asyncio.create_task(account_opening()) for _ in range(400)]
        await drain()
        client: Any = SimpleNamespace(open=dial)
        hub_dial = asyncio.create_task(_paced_open(client, pacer)(None))
        await drain()
        while not hub_dial.done() and time() < 300:  # bounded: 400 turns take 200 s
            await time.advance_to(time() + 0.5)
            await drain()
        assert hub_dial.done() and dials and dials[0] <= 1.0
        for account in accounts:
            account.cancel()
        await asyncio.gather(*accounts, return_exceptions=True)

    run(body(), timeout_s=120)


def test_a_public_socket_takes_a_turn_at_its_dial_only() -> None:
    """The hub's exchange dials each public socket in a turn (``alertd_public_openings``),
    held until the dial ends: a mark subscription refused or a REST error on an open socket
    dials nothing and takes no turn (before the ws12 review: each retry took one, no socket
    opened to end it); a socket closed and dialled again takes one."""

    async def body() -> None:
        time, _, pacer = okx_openings()
        exchange = make_exchange(account_config("m", "okx", _NoUrls()), {}, FAST)
        exchange.alertd_public_openings = pacer
        dialled: list[str] = []
        ready = asyncio.Event()

        async def dial(session: object, backoff_delay: float = 0) -> None:
            assert pacer._open  # in its turn, its place held while it dials
            dialled.append("dial")
            await ready.wait()

        try:
            url = "wss://ws.okx.com:8443/ws/v5/public"
            client = exchange.client(url)
            assert client.open.__qualname__.startswith("_paced_open")  # the guard wrapped it
            # ccxt's own open; the test's dial stands for the network's
            client.open = dial
            client.open = _paced_open(client, pacer)
            task = asyncio.create_task(client.open(None))
            await drain()
            assert dialled == ["dial"] and pacer.turns == 1 and pacer._open
            ready.set()
            await task
            assert not pacer._open  # the dial ended: its place counts a window from here
            assert exchange.client(url) is client and pacer.turns == 1  # no dial, no turn
            # a socket dropped while it waits for its turn (a stale stream's reconnect) never
            # dials: its place goes to the next
            held = [await pacer.turn() for _ in range(pacer.count - 1)]  # the first: a window
            other = exchange.client(url + "?2")
            other_dials: list[float] = []

            async def other_dial(session: object, backoff_delay: float = 0) -> None:
                other_dials.append(time())

            other.open = other_dial
            other.open = _paced_open(other, pacer)
            waiting = asyncio.create_task(other.open(None))
            await drain()
            assert pacer.waiting() == 1
            await drop_connection(exchange, url + "?2", "stale")
            await drain()
            assert waiting.cancelled() and pacer.waiting() == 0 and not other_dials
            # nor one waiting when its exchange closes
            last = exchange.client(url + "?3")
            last.open = other_dial
            last.open = _paced_open(last, pacer)
            waiting = asyncio.create_task(last.open(None))
            await drain()
            assert pacer.waiting() == 1
            await exchange.close()
            await drain()
            assert waiting.cancelled() and pacer.waiting() == 0 and not other_dials
            for opening in held:
                opening.ended()
        finally:
            await exchange.close()

    run(body(), timeout_s=60)


def test_a_public_socket_sleeps_its_dial_backoff_before_its_turn() -> None:
    """ccxt 4.5's ``WsClient.open`` sleeps the URL's dial backoff first (after a failed dial
    up to 30 s, or the handshake's Retry-After): a hub socket dialled again sleeps it before
    its turn, the host's other openings going on meanwhile, then dials in a turn with no
    backoff left, its place held through the dial (before: the turn taken first, the place
    held through the sleep, the account's opening waiting behind it, and past
    ``held_at_most_s`` the real dial came outside any place: review of ws13,
    backoff_probe.py). Dropped in its backoff, it never dials."""

    async def body() -> None:
        time = VirtualTime()
        pacer = OpeningPacer(1, 0.1, time, time.sleep, held_at_most_s=1.0)
        dials: list[tuple[float, float, bool]] = []

        async def dial(session: object, backoff_delay: float = 0) -> None:
            dials.append((time(), backoff_delay, bool(pacer._open)))

        client: Any = SimpleNamespace(open=dial)
        hub = asyncio.create_task(_paced_open(client, pacer)(None, 2.0))
        await drain()
        assert not pacer._open and client.alertd_turn_wait is hub  # sleeping, no place held
        other = await asyncio.wait_for(pacer.turn(), 1)  # an account's opening: at once
        assert other.turn_at == 0.0
        other.ended()
        await time.advance_to(2.0)
        await asyncio.wait_for(hub, 1)
        assert dials == [(2.0, 0, True)]  # in a turn of its own, nothing left to sleep
        assert not pacer._open and pacer.turns == 2
        # a socket dropped in its backoff (the hub's stale stream) never dials, holds nothing
        dropped: Any = SimpleNamespace(open=dial)
        waiting = asyncio.create_task(_paced_open(dropped, pacer)(None, 5.0))
        await drain()
        dropped.alertd_turn_wait.cancel()  # as drop_connection and the exchange's close do
        await asyncio.gather(waiting, return_exceptions=True)
        await time.advance_to(10.0)
        await drain()
        assert waiting.cancelled() and len(dials) == 1 and pacer.turns == 2

    run(body(), timeout_s=60)


def test_an_account_s_opening_sleeps_ccxt_s_dial_backoff_before_its_turn() -> None:
    """An account's turn comes before its watch (ccxt signs the login after the wait), and
    ccxt's watch sleeps the URL's dial backoff in ``WsClient.open``: a failed dial's backoff
    (ccxt's ``ws_dial_backoff``, as its ``on_error`` leaves it) is slept first, the place
    taken after it, so that ccxt's open has nothing left to sleep in the turn on the real
    clock (before: the place held through it: review of ws13). Another connection's backoff
    is not this one's."""

    async def body() -> None:
        fake = FAKES["okx"]()
        async with started(fake):
            time = VirtualTime()
            manager, feed, _ = dropped_account_with_a_crowd(fake, time, 0)
            pacer = feed.shared.ip_budget.openings
            exchange = feed._exchange()
            url = "wss://ws.okx.com:8443/ws/v5/private"
            now_ms = exchange.milliseconds()
            exchange.ws_dial_backoff = {
                url: {"attempts": 3, "until": now_ms + 5_000},
                url.replace("private", "business"): {"attempts": 9, "until": now_ms + 30_000},
            }
            turns = pacer.turns
            private = asyncio.create_task(feed._opening_turn("private", 0))
            await drain()
            assert not private.done() and pacer.turns == turns and not pacer._open
            await time.advance_to(5.0)
            opening = await asyncio.wait_for(private, 1)
            assert opening is not None and pacer.turns == turns + 1
            opening.ended()
            await stopped(manager, [])

    run(body(), timeout_s=60)


class _Sink:
    def __init__(self) -> None:
        self.closed: list[tuple[str, bool]] = []

    def on_frame(self, message: object) -> None: ...
    def on_malformed(self, kind: str, detail: str) -> None: ...
    def on_open(self, url: str) -> None: ...
    def on_login(self, url: str) -> None: ...
    def on_closed(self, url: str, opening_failed: bool) -> None:
        self.closed.append((url, opening_failed))


class _NoUrls:
    """No local exchange: the exchange's own URLs, never dialled."""

    ccxt_options: ClassVar[dict[str, object]] = {}

    def ccxt_urls(self) -> dict[str, object]:
        return {}


def test_a_dropped_socket_s_failed_dial_is_not_the_new_socket_s_opening() -> None:
    """A socket alertd dropped while it dialled (drop_connection) whose dial then fails (a 429
    at the handshake) is not told as a failed opening of its URL, whose new socket, in a newer
    turn, is dialling (before: the feed ended the new socket's opening and took it for
    failed). The drop itself is told, once, as a close."""

    async def body() -> None:
        keys = secrets("k", "s")
        keys["password"] = Secret("p")
        sink = _Sink()
        exchange = make_exchange(account_config("a", "okx", _NoUrls()), keys, FAST, sink=sink)
        url = "wss://ws.okx.com:8443/ws/v5/private"
        try:
            old = exchange.client(url)  # dialling (``connected`` not resolved)
            await drop_connection(exchange, url, "stale")
            new = exchange.client(url)  # the stream's next watch: a new socket
            assert new is not old and exchange.clients[url] is new
            old.on_error(ccxt.NetworkError("429 at the handshake"))  # ccxt's WsClient.open
            assert (url, True) not in sink.closed
            assert sink.closed == [(url, False)]  # the drop's
            new.on_error(ccxt.NetworkError("429 at the handshake"))  # the current one's: told
            assert sink.closed == [(url, False), (url, True)]
        finally:
            await exchange.close()

    run(body(), timeout_s=30)


def test_an_account_stream_failing_with_its_socket_open_takes_no_turn() -> None:
    """An account's stream whose step fails with its private socket open (an error frame the
    exchange answers a subscription with, a REST read after a push failing) retries without a
    turn, as the mark hub's (before: each retry took one, no socket opened to end it, and it
    held one of OKX's 2 places a second for 30 s). A close of the socket takes one; so does
    an opening that failed before its socket opened (Binance's listen key refused)."""

    async def body() -> None:
        time = VirtualTime()
        account = AccountConfig(name="a", exchange="okx", api_key_env="K", secret_env="S")
        config = Config(version=1, accounts=[account], feeds=SETTINGS)
        options = FeedOptions(
            exchange_factory=Built(), backoff=production_backoff, clock=time, sleep=time.sleep
        )
        manager = FeedManager(config, {}, options)
        (feed,) = manager.feeds.values()
        pacer = feed.shared.ip_budget.openings
        assert pacer is not None
        url = "wss://ws.okx.com:8443/ws/v5/private"
        connection = feed.adapter.stream_connection("positions")
        assert feed.adapter.socket_connection(url) == connection
        fail_before_open = False

        async def step() -> None:
            if fail_before_open:
                raise ccxt.ExchangeNotAvailable("refused before the socket opened")
            if not feed._closes.get(connection) and pacer.turns == 1 and pacer._open:
                feed.on_open(url)  # its socket opened, in its first turn
            raise ccxt.ExchangeError("okx 60012 invalid request")

        task = asyncio.create_task(feed._loop("positions", step))
        for t in range(1, 121):  # two minutes of retries, 1 s x2 up to 60 s
            await time.advance_to(float(t))
            await drain()
        assert pacer.turns == 1 and not pacer._open
        feed.on_closed(url, False)  # the socket closed: the next retry opens it, in a turn
        await time.advance_to(200.0)
        await drain()
        assert pacer.turns == 2
        fail_before_open = True  # no socket opened for that turn: the retry takes another
        await time.advance_to(300.0)
        await drain()
        assert pacer.turns >= 3
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    run(body(), timeout_s=60)


def test_every_public_socket_of_the_mark_hub_opens_in_a_turn() -> None:
    """ccxt's Binance gives each market subscription a connection of its own until 50 are
    open (``streamLimits``): an account holding three symbols has its hub open three public
    sockets, each one more opening of the IP (Binance: 300 in 5 minutes). Each takes a turn in
    the host's pace, not only the hub's first (before: the others opened unpaced, refused
    past the cap)."""

    async def body() -> None:
        fake = FakeBinanceUSDM(mark_interval_s=0.2)
        async with started(fake):
            manager = manager_for(fake, "binanceusdm", Built(), 1)
            for symbol, mark in (("ETH/USDT:USDT", "3400"), ("SOL/USDT:USDT", "180")):
                fake.set_mark(symbol, mark)
                fake.open_position("key0", symbol, "long", "1", mark)
            capped(fake, "binanceusdm", manager)
            (feed,) = manager.feeds.values()
            pacer = feed.shared.ip_budget.openings
            assert pacer is not None

            def opened() -> int:
                return sum(len(at) for at in fake.ws_openings.values())

            async with background(manager.run()):
                # the private socket and one public socket a symbol
                await eventually(lambda: feed.state.connected and opened() >= 4, 60, "open")
                await drain()
                assert fake.ws_refused == 0
                assert pacer.turns == opened()

    run(body(), timeout_s=120)
