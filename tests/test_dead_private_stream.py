"""A private stream dead while its socket lives must not hide behind the reconciles (issue 11/14).

Session 14 found an OKX account whose login was refused, its connection open and its watches
pending for ever: the 60 s REST reconciles kept it "fresh" and no alert said it was blind to
pushes. Here each local exchange silently stops pushing on the account's private connections
open now (``mute_pushes``: the socket stays open and answers pings) while its REST answers
change; the periodic reconcile (``AccountFeed.reconcile``, which the manager runs every
``feeds.reconcile_interval_s``) must find the change no push told, say it, reopen the private
stream, and end the miss once pushes come again. A quiet account, and one whose pushes come,
must not be called blind however many reconciles run.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest

from alertd.daemon.publisher import stale_streams
from alertd.engine.model import Side
from alertd.feeds.state import MissedChange
from tests.fake_exchange.okx import FakeOKX
from tests.support.aio import async_test
from tests.support.poll import eventually
from tests.test_feed_matrix import (
    FEEDS,
    REPUSH_S,
    TEST_TIMEOUT_S,
    VENUES,
    WAIT_S,
    Venue,
    World,
    every_exchange,
    streaming,
)

D = Decimal
GRACE_S = 0.5  # the push's grace: short, the muted pushes never come


@contextlib.asynccontextmanager
async def live(venue: Venue, grace_s: float = GRACE_S) -> AsyncIterator[World]:
    """``main`` streaming with its private streams subscribed on the exchange, and the
    snapshot that follows their subscribing read (a change it reads is not a reconcile's);
    ``grace_s``: ``feeds.missed_push_grace_s``."""
    async with streaming(venue, feeds={**FEEDS, "missed_push_grace_s": grace_s}) as w:
        await w.private_ready()
        await w.until(lambda: w.feed.snapshots >= 2, "the bootstrap and the settle resync")
        yield w


def missed(w: World) -> str | None:
    """What the status says the account's private stream missed (None)."""
    return None if w.feed.state.missed is None else w.feed.state.missed.describe()


def stale(w: World) -> tuple[str, ...]:
    """The account's stale streams, as the health check and the dead-man's heartbeat judge."""
    return stale_streams(w.feed, w.manager.config.feeds, w.clock())


async def position_pushed(w: World, symbol: str) -> None:
    """Change ``symbol``'s long on the exchange, again at each poll (a push sent before
    ccxt's new watch waits is lost to it), until the feed counts a position push."""
    pushes, sizes = w.feed.position_pushes, itertools.cycle(("3", "2"))

    def pushed() -> bool:
        if w.feed.position_pushes > pushes:
            return True
        w.open(symbol, "long", next(sizes), "3000")
        return False

    await eventually(pushed, WAIT_S, "a position push", interval_s=REPUSH_S)


async def reconcile(w: World) -> None:
    """One periodic reconcile that reads (not one that gives way to bootstraps)."""
    count = w.feed._reconciles
    while w.feed._reconciles == count:
        await w.feed.reconcile()


@pytest.mark.parametrize("venue", every_exchange())
@async_test(TEST_TIMEOUT_S)
async def test_a_dead_private_stream_is_found_by_one_reconcile_reopened_and_ends(
    venue: Venue,
) -> None:
    async with live(venue) as w:
        state = w.feed.state
        connections = w.fake.ws_connections
        w.fake.mute_pushes(venue.key)
        # a position opened on the exchange: its REST answers have it, no push tells it
        w.fake.set_mark(venue.eth, "3000")
        eth = w.open(venue.eth, "long", "2", "3000")
        assert state.connected and missed(w) is None
        await reconcile(w)
        # the reconcile read it (the account's figures have it at once) ...
        assert state.positions[(venue.eth, Side.LONG)].contracts == eth
        # ... and, no push coming within the grace, says the stream missed it: the account
        # is stale in the health line and status, naming what was missed and how late
        said = await w.until(lambda: missed(w), "the miss said")
        assert said.startswith(f"private stream missed {venue.eth} long opened ("), said
        assert said.endswith(" late)"), said
        assert state.missed is not None
        assert state.missed.changes == (MissedChange(venue.eth, Side.LONG, D(0), eth),)
        # the private stream is reopened (its connections dropped, the watches open them
        # again); the new connection pushes
        await w.until(lambda: w.fake.ws_connections > connections, "private stream reopened")
        await w.private_ready()
        # a position push on the new connection ends the miss (a balance push would not: a
        # positions channel may stay dead); counted as the feed receives it, not read off
        # the REST-visible position (the reopen's resync reads that without any push)
        await position_pushed(w, venue.eth)
        await w.until(lambda: not missed(w), "the miss ended")
        assert state.missed is None and state.fatal is None
        assert state.miss_ended == "a position push since it was reopened"


@pytest.mark.parametrize("venue", every_exchange())
@async_test(TEST_TIMEOUT_S)
async def test_no_miss_on_a_quiet_account_nor_one_whose_pushes_come(venue: Venue) -> None:
    async with live(venue) as w:
        state = w.feed.state
        for _ in range(5):  # quiet: nothing changes, nothing is pushed
            await reconcile(w)
        # a change the stream pushes, then reconciles: it told it, nothing missed
        w.fake.set_mark(venue.eth, "3000")
        w.open(venue.eth, "long", "2", "3000")
        await w.until(lambda: (venue.eth, Side.LONG) in state.positions, "ETH pushed")
        for _ in range(3):
            await reconcile(w)
        await asyncio.sleep(3 * GRACE_S)  # past every grace those reconciles gave
        assert missed(w) is None
        assert w.feed.reconnects == 0


@pytest.mark.parametrize(
    "venue", [VENUES["binanceusdm"], VENUES["bybit"]], ids=["binance", "bybit"]
)
@async_test(TEST_TIMEOUT_S)
async def test_a_push_that_comes_after_the_rest_answer_within_the_grace_is_no_miss(
    venue: Venue,
) -> None:
    """The exchange's push of a fill is slower than the reconcile's REST answer (which holds
    the fill already): it comes within ``feeds.missed_push_grace_s``, so nothing was missed.
    Only the local Binance and Bybit can hold an account's pushes and send them late."""
    async with live(venue, grace_s=3.0) as w:
        state = w.feed.state
        w.fake.delay_pushes(venue.key)
        w.fake.set_mark(venue.eth, "3000")
        eth = w.open(venue.eth, "long", "2", "3000")
        await reconcile(w)
        assert state.positions[(venue.eth, Side.LONG)].contracts == eth  # read over REST
        pushes = w.feed.position_pushes
        w.fake.release_pushes(venue.key)  # the push, late but within the grace
        await w.until(lambda: w.feed.position_pushes > pushes, "the late push")
        await asyncio.sleep(2 * 3.0)  # past the grace
        assert missed(w) is None and w.feed.reconnects == 0


@async_test(TEST_TIMEOUT_S)
async def test_a_dead_positions_channel_is_found_though_balance_pushes_go_on() -> None:
    """OKX's ``positions`` channel stops on the open connection while its ``account`` channel
    (the wallet) goes on pushing, one push within the grace: the position change is missed
    all the same (only position pushes say the positions stream lives)."""
    venue = VENUES["okx"]
    async with live(venue, grace_s=3.0) as w:
        state = w.feed.state
        w.fake.mute_pushes(venue.key, channels=["positions"])
        w.fake.set_mark(venue.eth, "3000")
        w.open(venue.eth, "long", "2", "3000")
        await reconcile(w)
        w.fake.set_balance(venue.key, "12345")  # pushed on the account channel, in the grace
        await w.until(lambda: state.wallet_balance == D(12345), "the balance push")
        said = await w.until(lambda: missed(w), "the miss said")
        assert said.startswith(f"private stream missed {venue.eth} long opened ("), said


@pytest.mark.parametrize("venue", [VENUES["bybit"]], ids=["bybit"])
@async_test(TEST_TIMEOUT_S)
async def test_a_miss_is_said_but_leaves_the_account_fresh(venue: Venue) -> None:
    """The reconcile that found the miss applied its snapshot and the stream is reopened: the
    account's data is current. The miss is said (the warning, the status, the health line)
    but the account is not stale: /healthz does not fail, the dead-man's heartbeat goes on."""
    async with live(venue) as w:
        w.fake.mute_pushes(venue.key)
        w.fake.set_mark(venue.eth, "3000")
        w.open(venue.eth, "long", "2", "3000")
        await reconcile(w)
        await w.until(lambda: missed(w), "the miss said")
        assert stale(w) == ()


@pytest.mark.parametrize("venue", every_exchange())
@async_test(TEST_TIMEOUT_S)
async def test_a_pushed_position_in_a_new_listing_is_no_miss(venue: Venue) -> None:
    """A market listed after the catalogue was loaded: its position's push names it by the
    exchange's raw id (ccxt cannot map it), the reconcile that reloads the catalogue reads it
    under its unified symbol. One position under two names, pushed: nothing missed."""
    async with live(venue) as w:
        doge = "DOGE/USDT:USDT" if venue.settle == "USDT" else "DOGE/USDC:USDC"
        w.fake.add_symbol(doge, "0.2")
        pushes = w.feed.position_pushes
        w.fake.open_position(venue.key, doge, "long", "1000", "0.2")
        await w.until(lambda: w.feed.position_pushes > pushes, "its push")
        await reconcile(w)
        await asyncio.sleep(3 * GRACE_S)  # past the grace that reconcile gave
        assert missed(w) is None and w.feed.reconnects == 0


@pytest.mark.parametrize("venue", [VENUES["bybit"]], ids=["bybit"])
@async_test(TEST_TIMEOUT_S)
async def test_a_change_made_while_the_socket_was_down_is_no_miss(venue: Venue) -> None:
    """The private socket drops while a reconcile reads, a position opens while no socket
    is up (nothing can push it: Bybit sends no snapshot on subscribing), the socket is back
    before the reconcile ends: the change is feed-down's business, read by the resync after
    the reopen, not a dead stream's miss."""
    async with live(venue) as w:
        state, fake = w.feed.state, w.fake
        fake.hold_rest("/v5/account/info")  # the reconcile's first read waits
        task = asyncio.get_running_loop().create_task(reconcile(w))
        await w.until(lambda: fake.held_answers() >= 1, "the reconcile reading")
        fake.cap_ws_openings(0, 600)  # the network down: no socket opens
        await fake.drop_connections(kind="private")
        await w.until(lambda: not state.connected, "the socket lost")
        w.fake.set_mark(venue.eth, "3000")
        w.open(venue.eth, "long", "2", "3000")  # no socket: nothing can push it
        fake.ws_openings_cap = None  # the network back
        await w.until(lambda: state.connected, "the socket back")
        fake.release_rest()
        await task
        await asyncio.sleep(3 * GRACE_S)  # past the grace that reconcile gave
        assert missed(w) is None


@pytest.mark.parametrize(
    "venue", [VENUES["binanceusdm"], VENUES["bybit"]], ids=["binance", "bybit"]
)
@async_test(TEST_TIMEOUT_S)
async def test_a_change_after_an_earlier_push_of_its_symbol_is_found(venue: Venue) -> None:
    """ETH opened and pushed; the stream dies; later a stop fills (ETH closed, never pushed).
    The push of ETH, long before the reconcile's read, does not explain the close: missed."""
    async with live(venue) as w:
        state = w.feed.state
        w.fake.set_mark(venue.eth, "3000")
        w.open(venue.eth, "long", "2", "3000")
        await w.until(lambda: (venue.eth, Side.LONG) in state.positions, "ETH pushed")
        w.fake.mute_pushes(venue.key)  # the stream dies
        await asyncio.sleep(2 * GRACE_S)  # the stop fills later than the grace
        w.fake.close_position(venue.key, venue.eth)
        await reconcile(w)
        assert (venue.eth, Side.LONG) not in state.positions  # the reconcile read it
        said = await w.until(lambda: missed(w), "the miss said")
        assert said.startswith(f"private stream missed {venue.eth} long closed ("), said


@async_test(TEST_TIMEOUT_S)
async def test_a_balance_push_after_the_reopen_does_not_end_a_positions_miss() -> None:
    """OKX's ``positions`` channel pushes nothing on any connection, the reopened one too,
    while its ``account`` channel pushes: the miss stands through the reopen and a balance
    push (the positions still reach alertd only at a reconcile), and ends at a reconcile
    since the reopen that misses nothing, saying so."""
    venue = VENUES["okx"]
    async with live(venue) as w:
        state, fake = w.feed.state, w.fake
        assert isinstance(fake, FakeOKX)
        fake.dead_channels = frozenset({"positions"})
        fake.set_mark(venue.eth, "3000")
        w.open(venue.eth, "long", "2", "3000")
        await reconcile(w)
        await w.until(lambda: missed(w), "the miss said")
        connections = fake.ws_connections
        await w.until(lambda: fake.ws_connections > connections, "private stream reopened")
        await w.private_ready()
        fake.set_balance(venue.key, "12345")
        await w.until(lambda: state.wallet_balance == D(12345), "the balance push")
        assert missed(w) is not None, "ended by a balance push, the positions still dead"
        await reconcile(w)  # nothing changed since: it misses nothing
        await w.until(lambda: not missed(w), "the miss ended")
        assert state.miss_ended == "a reconcile since it was reopened missed nothing"


@async_test(TEST_TIMEOUT_S)
async def test_detection_switched_off_says_and_reopens_nothing() -> None:
    """``feeds.detect_missed_pushes: false``: a change the muted stream never pushed is read
    by the reconcile, and nothing is said nor reopened."""
    venue = VENUES["bybit"]
    feeds = {**FEEDS, "missed_push_grace_s": GRACE_S, "detect_missed_pushes": False}
    async with streaming(venue, feeds=feeds) as w:
        await w.private_ready()
        await w.until(lambda: w.feed.snapshots >= 2, "the bootstrap and the settle resync")
        w.fake.mute_pushes(venue.key)
        w.fake.set_mark(venue.eth, "3000")
        w.open(venue.eth, "long", "2", "3000")
        await reconcile(w)
        assert (venue.eth, Side.LONG) in w.feed.state.positions
        await asyncio.sleep(3 * GRACE_S)  # past the grace that reconcile gave
        assert missed(w) is None and w.feed.reconnects == 0
